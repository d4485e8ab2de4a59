"""Display misses in Debian's Chromium (Playwright): main-thread stalls injected while the
image is up make trials invalid with reason `frames`; each is shown again at the end of the
main block; the export has every planned image validly judged once; and the dashboard, the
export's `excluded` column and `percept human` agree on who is excluded.
"""

from __future__ import annotations

import csv
import json

import pytest
import test_runner
from participants import export_and_human_exclusions
from sqlalchemy import select
from test_runner import answer_trials, start, wait_screen

from study_server import exclusions
from study_server.db import db
from study_server.export import write_export
from study_server.models import Image, Participant, Response, Trial
from study_server.studies import find_study

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The browser tests' fixtures: a SQLite database and a 1280 x 720 page.
db_url = test_runner.db_url
page = test_runner.page

# 5 real + 5 fake + 2 catch + 1 instructed main trials after 4 practice trials, 150 ms
# (9 frames at 60 Hz) each; at most 10% of a participant's main trials may be invalid.
STUDY = {
    "real": 5,
    "fake": 5,
    "extra": "[timing]\nfixation_ms = 100\nexposure_ms = 150\n",
    "exclusions": "max_answers_per_second = 0\nmax_invalid_fraction = 0.1",
}
# Busy-loops the page's main thread for 150 ms, from a random moment 0-40 ms after the
# image appears, on the showings listed (1-based, practice included): the animation frame
# that should hide the image comes late, so the display runs over its 9 frames.
STALLS = """
(() => {
  const stallOn = new Set(%s);
  let shown = 0;
  new MutationObserver((records) => {
    for (const record of records) {
      const el = record.target;
      if (!el.matches("[data-stimulus]") || el.style.visibility !== "visible") continue;
      shown += 1;
      if (!stallOn.has(shown)) continue;
      setTimeout(() => {
        const end = performance.now() + 150;
        while (performance.now() < end);
      }, Math.random() * 40);
    }
  }).observe(document, { attributes: true, attributeFilter: ["style"], subtree: true });
})();
"""


def labels(app) -> dict[str, str]:
    """The right answer per image URL id (catch images are fakes)."""
    with app.app_context():
        rows = db.session.execute(select(Image.public_id, Image.source, Image.role)).all()
        db.session.remove()
    return {pid: "fake" if role == "catch" else source for pid, source, role in rows}


def take_part(page, url: str, stalls: list[int], right: dict[str, str]) -> int:
    """One whole session with stalls on the given showings, every answer right."""
    page.add_init_script(STALLS % json.dumps(stalls))
    start(page, url)

    def choose(n: int, instruction: str | None) -> str:
        src = page.get_attribute("[data-stimulus]", "src") or ""
        return instruction or right[src.rsplit("/", 1)[-1].removesuffix(".png")]

    # Answers after 200 ms, as a person would (no median-RT exclusion).
    answered = answer_trials(page, choose=choose, delay_ms=200)
    wait_screen(page, "done", timeout=30_000)
    return answered


def test_stalled_displays_are_repeated_and_everyone_agrees_who_is_out(
    app, make_study, live_server, page, browser, tmp_path
):
    make_study(**STUDY)
    right = labels(app)
    # a: 3 of 13 main trials stalled (showings 4 + 2, 4 + 5, 4 + 8), 3 / 16 invalid, out;
    # b: 1 stalled, 1 / 14, kept (unless the machine drops frames of its own).
    answered_a = take_part(page, f"{live_server}/s/t", [6, 9, 12], right)
    other = browser.new_context(viewport={"width": 1280, "height": 720})
    answered_b = take_part(other.new_page(), f"{live_server}/s/t", [8], right)
    other.close()

    with app.app_context():
        a, b = db.session.scalars(select(Participant.id).order_by(Participant.id)).all()
        rows = db.session.execute(
            select(
                Trial.participant_id,
                Trial.id,
                Trial.image_id,
                Trial.repeat_of,
                Response.valid,
                Response.invalid_reason,
            )
            .join(Response)
            .where(Trial.block == "main")
        ).all()
        states = set(db.session.scalars(select(Participant.state)))
        study = find_study("t")
        board = exclusions.excluded_ids(study)
        write_export(tmp_path / "export", slug="t")
        db.session.remove()
    assert states == {"completed"}
    # Every trial shown was answered once: 4 practice + 13 main + one per repeat.
    repeats = {
        p: sum(r.participant_id == p and r.repeat_of is not None for r in rows) for p in (a, b)
    }
    assert (answered_a, answered_b) == (17 + repeats[a], 17 + repeats[b])
    reasons = {
        p: [r.invalid_reason for r in rows if r.participant_id == p and not r.valid] for p in (a, b)
    }
    print(f"invalid main trials: {reasons}; repeats {repeats}")
    frames = [r for r in rows if r.participant_id == a and r.invalid_reason == "frames"]
    assert len(frames) >= 2, rows  # three stalls (a timer the load delays may miss one)
    # Every invalid answer was repeated once, at the end of the main block (none here can
    # reach max_repeats = 2 unless the machine itself stalls twice on one image).
    repeated = {r.repeat_of for r in rows if r.repeat_of is not None}
    assert {r.id for r in rows if not r.valid} == repeated

    with open(tmp_path / "export" / "trials.csv", newline="") as f:
        trials = [t for t in csv.DictReader(f) if t["block"] == "main"]
    for pid in (a, b):
        mine = [t for t in trials if int(t["participant_id"]) == pid]
        planned = sorted(t["image_id"] for t in mine if not t["repeat_of"])
        valid = sorted(t["image_id"] for t in mine if t["valid"] == "true")
        assert len(planned) == 13 and valid == planned, pid
        assert all(
            t["invalid_reason"] in ("frames", "hidden", "blur")
            for t in mine
            if t["valid"] == "false"
        )

    people, excluded = export_and_human_exclusions(tmp_path)
    human = set(excluded.loc[excluded["level"] == "participant", "participant_id"])
    exported = {pid for pid, p in people.items() if p["excluded"] == "true"}
    assert a in set(board) and "of main trials invalid" in board[a][0], board
    assert set(board) == exported == human, (board, exported, human)
