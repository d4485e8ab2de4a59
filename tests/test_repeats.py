"""Invalid answers (display misses, hidden tab, lost focus): stored invalid with a reason by
the server, repeated at the end of the main block once per answer, and judged by one rule in
the dashboard, the export and `percept human`. On SQLite and PostgreSQL (db_url)."""

from __future__ import annotations

import csv
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from participants import answer, auth, export_and_human_exclusions, join, session
from sqlalchemy import func, select, update

from percept.rules import planned_frames
from study_server import dashboard, exclusions
from study_server.db import db
from study_server.export import write_export
from study_server.models import Participant, Response, Trial
from study_server.studies import find_study
from study_server.withdrawal import delete_participant

# 60 Hz as the runner sends it: the default 500 ms exposure is 30 frames.
FRAME = 16.667
ON_TARGET = {"frames": 30, "frame_ms": FRAME, "displayed_ms": 500.0}
# A busy computer held the image for 34 frames instead of 30.
STALLED = {"frames": 34, "frame_ms": FRAME, "displayed_ms": 566.68}


def main_trials(client, token) -> list[dict]:
    return [t for t in session(client, token)["trials"] if t["block"] == "main"]


def stored(app, trial_id: int) -> tuple:
    with app.app_context():
        row = db.session.execute(
            select(Response.valid, Response.invalid_reason).where(Response.trial_id == trial_id)
        ).one()
        db.session.remove()
    return tuple(row)


def repeats_of(app) -> dict[int, list[int]]:
    """{trial id: ids of the trials repeating it}."""
    with app.app_context():
        rows = db.session.execute(
            select(Trial.repeat_of, Trial.id).where(Trial.repeat_of.is_not(None))
        ).all()
        db.session.remove()
    out: dict[int, list[int]] = {}
    for original, repeat in rows:
        out.setdefault(original, []).append(repeat)
    return out


def expected(app) -> dict[int, str]:
    with app.app_context():
        out = dict(db.session.execute(select(Trial.id, Trial.expected)).all())
        db.session.remove()
    return out


def test_planned_frames_round_halves_up_as_the_runner_does():
    assert planned_frames(500, FRAME) == 30
    assert planned_frames(25, 10) == 3  # JS Math.round(2.5) is 3 (Python's round says 2)
    assert planned_frames(1, 100) == 1  # at least one frame


def test_a_frame_miss_is_invalid_and_its_image_comes_again_at_the_end(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="stalls").json["token"]
    trials = session(client, token)["trials"]
    practice = [t for t in trials if t["block"] == "practice"]
    main = [t for t in trials if t["block"] == "main"]
    last_position = trials[-1]["position"]

    # A practice miss is invalid but not repeated (practice is not analysed).
    r = answer(client, token, practice[0]["id"], **STALLED)
    assert r.status_code == 200 and r.json["repeat"] is False
    assert stored(app, practice[0]["id"]) == (False, "frames")

    replies = {
        "on target": answer(client, token, main[0]["id"], **ON_TARGET),
        # The runner also flags the miss itself; the server's verdict is the same.
        "stalled": answer(client, token, main[1]["id"], **STALLED),
        "flagged": answer(
            client, token, main[2]["id"], **STALLED, valid=False, invalid_reason="frames"
        ),
        "hidden": answer(
            client, token, main[3]["id"], **ON_TARGET, valid=False, invalid_reason="hidden"
        ),
        # A hidden tab during a stall: the browser's reason stands.
        "blur and stalled": answer(
            client, token, main[4]["id"], **STALLED, valid=False, invalid_reason="blur"
        ),
        # No frame count reported: nothing to judge the display by.
        "not reported": answer(client, token, main[5]["id"], frame_ms=FRAME),
    }
    assert {k: r.status_code for k, r in replies.items()} == dict.fromkeys(replies, 200)
    assert {k: r.json["repeat"] for k, r in replies.items()} == {
        "on target": False,
        "stalled": True,
        "flagged": True,
        "hidden": True,
        "blur and stalled": True,
        "not reported": False,
    }
    assert [stored(app, t["id"]) for t in main[:6]] == [
        (True, None),
        (False, "frames"),
        (False, "frames"),
        (False, "hidden"),
        (False, "blur"),
        (True, None),
    ]

    # Each repeat is a new main trial after every planned one, in the order of the misses:
    # the same image, exposure and instruction, linked to the trial it repeats.
    now = session(client, token)["trials"]
    added = [t for t in now if t["position"] > last_position]
    assert [t["position"] for t in added] == list(range(last_position + 1, last_position + 5))
    assert all(t["block"] == "main" and not t["answered"] for t in added)
    for original, repeat in zip(main[1:5], added, strict=True):
        for key in ("image", "exposure_ms", "instruction", "adaptive"):
            assert repeat[key] == original[key], key
    assert repeats_of(app) == {o["id"]: [a["id"]] for o, a in zip(main[1:5], added, strict=True)}
    with app.app_context():
        kinds = dict(db.session.execute(select(Trial.id, Trial.kind)).all())
        db.session.remove()
    assert [kinds[t["id"]] for t in added] == [kinds[t["id"]] for t in main[1:5]]

    # The session completes only once the repeats are answered too.
    labels = expected(app)
    for t in main[6:]:
        assert answer(client, token, t["id"], labels[t["id"]], **ON_TARGET).status_code == 200
    done = client.post("/api/v1/session/complete", headers=auth(token))
    assert done.status_code == 409 and done.json["error"] == "incomplete"
    for t in added:
        assert answer(client, token, t["id"], labels[t["id"]], **ON_TARGET).json["repeat"] is False
    assert client.post("/api/v1/session/complete", headers=auth(token)).status_code == 200


def test_unlimited_exposure_is_never_a_frame_miss(app, make_study):
    make_study(extra='[timing]\nmode = "unlimited"\n')
    client = app.test_client()
    token = join(client, client_id="unlimited").json["token"]
    trial = main_trials(client, token)[0]
    r = answer(client, token, trial["id"], frames=97, frame_ms=FRAME, displayed_ms=1616.9)
    assert r.json["repeat"] is False and stored(app, trial["id"]) == (True, None)


def test_repeats_stop_at_max_repeats_and_can_be_switched_off(app, make_study):
    make_study(extra="[timing]\nmax_repeats = 2\n")
    client = app.test_client()
    token = join(client, client_id="keeps-stalling").json["token"]
    trial = main_trials(client, token)[0]
    shown = [trial["id"]]
    # A display that stalls every time: the original and two repeats, then no more.
    for want in (True, True, False):
        r = answer(client, token, shown[-1], **STALLED)
        assert r.json["repeat"] is want
        if want:
            (new,) = repeats_of(app)[shown[-1]]
            shown.append(new)
    assert len(shown) == 3 and all(stored(app, t) == (False, "frames") for t in shown)
    images = {t["image"] for t in session(client, token)["trials"] if t["id"] in shown}
    assert images == {trial["image"]}

    make_study(slug="off", extra="[timing]\nrepeat_invalid = false\n")
    token = join(client, "off", client_id="no-repeats").json["token"]
    before = len(session(client, token)["trials"])
    trial = main_trials(client, token)[0]
    r = answer(client, token, trial["id"], **STALLED)
    assert r.json["repeat"] is False and stored(app, trial["id"]) == (False, "frames")
    assert len(session(client, token)["trials"]) == before


def test_a_retried_answer_adds_no_second_repeat(app, make_study, live_server):
    make_study()
    client = app.test_client()
    token = join(client, client_id="retries").json["token"]
    main = main_trials(client, token)
    first = answer(client, token, main[0]["id"], **STALLED)
    again = answer(client, token, main[0]["id"], **STALLED)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json and first.json["repeat"] is True
    conflict = answer(client, token, main[0]["id"], **ON_TARGET)
    assert conflict.status_code == 409
    assert len(repeats_of(app)[main[0]["id"]]) == 1

    # Eight copies of one answer at the same moment (an outbox retrying while a second tab
    # sends it): one answer, one repeat, the same reply for all.
    barrier = threading.Barrier(8)

    def put(trial_id: int) -> tuple[int, dict]:
        barrier.wait()
        r = requests.put(
            f"{live_server}/api/v1/trials/{trial_id}/response",
            json={"choice": "real", "rt_ms": 612.5, **STALLED},
            headers=auth(token),
            timeout=60,
        )
        return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(put, [main[1]["id"]] * 8))
    assert {status for status, _ in replies} == {200}
    assert all(reply == replies[0][1] for _, reply in replies) and replies[0][1]["repeat"]
    assert len(repeats_of(app)[main[1]["id"]]) == 1

    # Misses on different trials at the same moment: each gets its own place at the end.
    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(put, [t["id"] for t in main[2:6]]))
    assert [(status, reply["repeat"]) for status, reply in replies] == [(200, True)] * 4
    repeats = repeats_of(app)
    assert all(len(repeats[t["id"]]) == 1 for t in main[:6])
    positions = [t["position"] for t in session(client, token)["trials"]]
    assert positions == list(range(len(positions)))


def answer_session(app, client, token, misses: set[int]) -> None:
    """Answer every main trial right (repeats too), the main trials at `misses` (indexes
    of the planned list) with a display stall; then complete."""
    main = main_trials(client, token)
    labels = expected(app)
    for i, t in enumerate(main):
        timing = STALLED if i in misses else ON_TARGET
        assert answer(client, token, t["id"], labels[t["id"]], **timing).status_code == 200
    left = [t for t in main_trials(client, token) if not t["answered"]]
    labels = expected(app)
    for t in left:
        assert answer(client, token, t["id"], labels[t["id"]], **ON_TARGET).status_code == 200
    assert client.post("/api/v1/session/complete", headers=auth(token)).status_code == 200


def test_dashboard_export_and_percept_human_agree_on_who_is_excluded(app, make_study, tmp_path):
    # 23 main trials; at most 10% may be invalid.
    make_study(exclusions="max_answers_per_second = 0\nmax_invalid_fraction = 0.1")
    client = app.test_client()
    tokens = {name: join(client, client_id=name).json["token"] for name in ("a", "b", "c")}
    for token in tokens.values():
        session(client, token)
    # a: 3 misses, all repeated: 3 / 26 invalid, excluded. b: 1 miss: 1 / 24, kept.
    answer_session(app, client, tokens["a"], {2, 9, 17})
    answer_session(app, client, tokens["b"], {5})
    # c: 3 misses stored as valid, as answers were before the server checked frames: the
    # rule checks the frames again, everywhere.
    answer_session(app, client, tokens["c"], {1, 4, 8})
    with app.app_context():
        a, b, c = db.session.scalars(select(Participant.id).order_by(Participant.id)).all()
        db.session.execute(
            update(Response)
            .where(Response.trial_id.in_(select(Trial.id).where(Trial.participant_id == c)))
            .values(valid=True, invalid_reason=None)
        )
        db.session.commit()
        study = find_study("t")
        board = exclusions.excluded_ids(study)
        rows, _ = dashboard.participants(study)
        write_export(tmp_path / "export", slug="t")
        db.session.remove()
    people, table = export_and_human_exclusions(tmp_path)
    human = table[table["level"] == "participant"]

    reason = "12% of main trials invalid (max 10%)"  # 3 / 26 and 3 / 26
    assert {pid: reasons for pid, reasons in board.items()} == {a: [reason], c: [reason]}
    assert {r.id: r.excluded for r in rows} == {a: True, b: False, c: True}
    assert {pid: (p["excluded"], p["exclusion_reasons"]) for pid, p in people.items()} == {
        a: ("true", reason),
        b: ("false", ""),
        c: ("true", reason),
    }
    assert [int(people[p]["invalid_trials"]) for p in (a, b, c)] == [3, 1, 3]
    assert dict(zip(human["participant_id"], human["reason"], strict=True)) == {
        a: reason,
        c: reason,
    }
    assert set(human["rule"]) == {"invalid_display"}
    # Every invalid trial is dropped, and every planned image is judged once validly.
    dropped = table[table["level"] == "trial"]
    assert dropped.groupby("participant_id").size().to_dict() == {a: 3, b: 1, c: 3}
    with open(tmp_path / "export" / "trials.csv", newline="") as f:
        trials = [t for t in csv.DictReader(f) if t["block"] == "main"]
    out = {str(int(t)) for t in dropped["trial_id"]}
    for pid in (a, b, c):
        mine = [t for t in trials if int(t["participant_id"]) == pid]
        planned = [t["image_id"] for t in mine if t["repeat_of"] == ""]
        kept = [t["image_id"] for t in mine if t["trial_id"] not in out]
        assert len(mine) == len(planned) + len(dropped[dropped["participant_id"] == pid])
        assert sorted(kept) == sorted(planned)


def test_returning_or_deleting_a_participant_with_repeats(app, make_study):
    make_study()
    client = app.test_client()
    tokens = [join(client, client_id=f"leaves-{i}").json["token"] for i in range(2)]
    for token in tokens:
        main = main_trials(client, token)
        for t in main[:3]:
            assert answer(client, token, t["id"], **STALLED).json["repeat"] is True
        # A repeat answered invalid again: a repeat of a repeat.
        first = repeats_of(app)[main[0]["id"]][0]
        assert answer(client, token, first, **STALLED).json["repeat"] is True
    # Returning deletes the unanswered trials, repeats included; the answered ones stay.
    assert client.post("/api/v1/session/return", headers=auth(tokens[0])).status_code == 200
    with app.app_context():
        ids = db.session.scalars(select(Participant.id).order_by(Participant.id)).all()
        left = db.session.scalars(
            select(Trial.repeat_of).where(Trial.participant_id == ids[0])
        ).all()
        assert sorted(r for r in left if r is not None) == [main_of(ids[0], 0)]
        # Deleting a participant (withdrawal) deletes repeats and what they repeat at once.
        for pid in ids:
            delete_participant(db.session.get(Participant, pid), "cli")
        assert db.session.scalar(select(func.count()).select_from(Trial)) == 0
        db.session.remove()


def main_of(participant_id: int, index: int) -> int:
    """The id of the participant's `index`-th main trial."""
    return db.session.scalars(
        select(Trial.id)
        .where(Trial.participant_id == participant_id, Trial.block == "main")
        .order_by(Trial.position)
    ).all()[index]
