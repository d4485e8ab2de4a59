"""Targets that mean usable data: `[recruitment] replace_excluded`.

A completed participant whom the study's exclusion rules drop frees their place for
the next newcomer (the default); with `replace_excluded = false` they keep it. Every
test runs on SQLite and PostgreSQL (the db_url fixture).
"""

from __future__ import annotations

import csv

import pytest
from conftest import write_study_config
from participants import answer, auth, join, session
from sqlalchemy import select
from test_lifecycle import admin_client, finish

from study_server.db import db
from study_server.models import Participant, Trial
from study_server.studies import create_study, find_study
from study_server.studyconfig import load_config


def one_model_study(app, demo_stimuli, tmp_path, extra: str = "") -> None:
    """Study `t`: one model with a target of one participant; attention checks count."""
    path = write_study_config(
        tmp_path,
        demo_stimuli,
        models='["scenes/memoriser"]',
        target=1,
        extra=extra,
        exclusions="max_answers_per_second = 0\nmax_attention_failures = 0",
    )
    # One model has a single fake practice image in the demo set.
    path.write_text(path.read_text().replace("[practice]\ntrials = 4", "[practice]\ntrials = 2"))
    with app.app_context():
        create_study(load_config(path))
        db.session.remove()


def finish_correctly(app, client, token) -> None:
    """Answer every trial right (the test reads the answers from the database), complete."""
    trials = session(client, token)["trials"]
    with app.app_context():
        expected = dict(
            db.session.execute(
                select(Trial.id, Trial.expected).where(Trial.id.in_([t["id"] for t in trials]))
            ).all()
        )
        db.session.remove()
    for trial in trials:
        assert answer(client, token, trial["id"], expected[trial["id"]]).status_code == 200
    r = client.post("/api/v1/session/complete", headers=auth(token))
    assert r.status_code == 200, r.json


def eligible(client) -> str | None:
    """The eligibility check's refusal code for a newcomer, or None."""
    r = client.get("/api/v1/studies/t/eligibility", query_string={"client_id": "asking"})
    assert r.status_code == 200, r.json
    return r.json["reason"]


def model_row(app):
    from study_server.dashboard import summarise
    from study_server.exclusions import usable_counts

    with app.app_context():
        study = find_study("t")
        row = summarise(study).models[0]
        usable = usable_counts(study)
        db.session.remove()
    return row, usable


def test_an_excluded_participant_frees_their_place(app, demo_stimuli, tmp_path):
    one_model_study(app, demo_stimuli, tmp_path)
    client = app.test_client()
    first = join(client, client_id="first")
    assert first.status_code == 201, first.json
    refused = join(client, client_id="second")
    assert refused.status_code == 409 and refused.json["error"] == "study_full", refused.json
    assert eligible(client) == "study_full"

    # Every answer "real": the catch trials (unmistakable fakes) fail, so the rules drop them.
    finish(client, first.json["token"])
    row, usable = model_row(app)
    assert (row.completed, row.excluded, row.usable) == (1, 1, 0)
    assert usable == {}
    assert eligible(client) is None
    second = join(client, client_id="second")
    assert second.status_code == 201, second.json
    # The newcomer holds the place now; nobody else gets in.
    assert join(client, client_id="third").json["error"] == "study_full"

    # The dashboard shows usable < completed; the export still names the excluded person.
    page = admin_client(app).get("/admin/studies/t").text
    assert '<th class="num">Usable</th>' in page
    with app.app_context():
        from study_server.export import write_export

        write_export(tmp_path / "export", slug="t")
        db.session.remove()
    with open(tmp_path / "export" / "participants.csv", newline="") as f:
        people = {p["platform_pid"]: p for p in csv.DictReader(f)}
    assert len(people) == 2
    gone = next(p for p in people.values() if p["state"] == "completed")
    assert gone["excluded"] == "true" and "attention checks" in gone["exclusion_reasons"]


def test_a_kept_participant_keeps_their_place(app, demo_stimuli, tmp_path):
    one_model_study(app, demo_stimuli, tmp_path)
    client = app.test_client()
    first = join(client, client_id="first")
    finish_correctly(app, client, first.json["token"])
    row, usable = model_row(app)
    assert (row.completed, row.excluded, row.usable) == (1, 0, 1)
    assert list(usable.values()) == [1]
    r = join(client, client_id="second")
    assert r.status_code == 409 and r.json["error"] == "study_full", r.json


def test_replace_excluded_false_keeps_the_place_taken(app, demo_stimuli, tmp_path):
    one_model_study(app, demo_stimuli, tmp_path, extra="replace_excluded = false")
    client = app.test_client()
    first = join(client, client_id="first")
    finish(client, first.json["token"])
    row, _ = model_row(app)
    assert (row.completed, row.excluded, row.usable) == (1, 1, 0)
    r = join(client, client_id="second")
    assert r.status_code == 409 and r.json["error"] == "study_full", r.json
    assert eligible(client) == "study_full"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_withdrawn_participant_is_judged_afresh_under_a_reused_id(app, demo_stimuli, tmp_path):
    """Exclusions are remembered per completed participant (id and completion time) in
    each server process. SQLite gives a deleted last row's id to the next participant:
    a process that last looked before the withdrawal still judges them anew."""
    from study_server import exclusions
    from study_server.withdrawal import delete_participant

    one_model_study(app, demo_stimuli, tmp_path)
    client = app.test_client()
    first = join(client, client_id="first")
    finish(client, first.json["token"])  # excluded: the place is free
    assert model_row(app)[0].excluded == 1
    other_process = {key: dict(judged) for key, judged in exclusions._judged.items()}
    with app.app_context():
        person = db.session.scalars(select(Participant).where(Participant.platform_pid == "first"))
        number = person.one().id
        delete_participant(db.session.get(Participant, number), "cli")
        db.session.remove()
    second = join(client, client_id="second")
    assert second.status_code == 201
    finish_correctly(app, client, second.json["token"])
    with app.app_context():
        reused = db.session.scalar(
            select(Participant.id).where(Participant.platform_pid == "second")
        )
        db.session.remove()
    assert reused == number

    exclusions._judged.clear()
    exclusions._judged.update(other_process)
    row, usable = model_row(app)
    assert (row.completed, row.excluded, row.usable) == (1, 0, 1)
    assert list(usable.values()) == [1]
    assert join(client, client_id="third").json["error"] == "study_full"
