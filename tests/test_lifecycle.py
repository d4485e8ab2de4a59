"""A study's life: draft -> open -> paused -> open -> closed, from the CLI and the dashboard.

Every test runs on SQLite and PostgreSQL (the db_url fixture). Newcomers of a study that
is not open get a JSON 409 naming its state; sessions in progress follow `on_pause`.
"""

from __future__ import annotations

import re

from click.testing import CliRunner
from conftest import write_study_config
from participants import answer, auth, join, session
from sqlalchemy import select

from percept.cli import cli
from study_server.db import db
from study_server.models import AuditEntry, Study

PASSWORD = "secret-admin"  # set by the app fixture


def percept(app, *args):
    """Run `percept ARGS --db URL` on the app's database and image store."""
    env = {"PERCEPT_IMAGE_STORE": app.config["IMAGE_STORE"]}
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return CliRunner().invoke(cli, [*args, "--db", url], env=env)


def finish(client, token) -> dict:
    """Answer every open trial of the session, then complete it; the completion JSON."""
    for trial in session(client, token)["trials"]:
        if not trial["answered"]:
            r = answer(client, token, trial["id"])
            assert r.status_code == 200, r.json
    r = client.post("/api/v1/session/complete", headers=auth(token))
    assert r.status_code == 200, r.json
    return r.json


def listed_state(app, slug="t") -> str:
    result = percept(app, "study", "list")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith(f"{slug} "))
    return re.search(r"\[\w+, (\w+)\]", line).group(1)


def audit(app, slug="t") -> list[tuple[str, str, str]]:
    with app.app_context():
        study_id = db.session.scalar(select(Study.id).where(Study.slug == slug))
        rows = db.session.scalars(
            select(AuditEntry).where(AuditEntry.study_id == study_id).order_by(AuditEntry.id)
        ).all()
        out = [(r.who, r.action, r.detail) for r in rows]
        assert all(r.at is not None for r in rows)
        db.session.remove()
    return out


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def admin_client(app):
    client = app.test_client()
    token = csrf_token(client.get("/admin/login").text)
    r = client.post("/admin/login", data={"csrf_token": token, "password": PASSWORD})
    assert r.status_code == 302
    return client


def test_a_study_walks_from_draft_to_closed(app, demo_stimuli, tmp_path):
    config = write_study_config(tmp_path, demo_stimuli, target=5)
    created = percept(app, "study", "create", str(config), "--draft")
    assert created.exit_code == 0, created.output
    assert "percept study open t" in created.output
    assert listed_state(app) == "draft"
    client = app.test_client()

    r = join(client, client_id="early")
    assert r.status_code == 409 and r.json["error"] == "study_draft", r.json

    opened = percept(app, "study", "open", "t")
    assert opened.exit_code == 0 and "is open" in opened.output, opened.output
    assert listed_state(app) == "open"
    active = join(client, client_id="active")
    assert active.status_code == 201, active.json
    token = active.json["token"]
    first = session(client, token)["trials"][0]
    assert answer(client, token, first["id"]).status_code == 200

    paused = percept(app, "study", "pause", "t")
    assert paused.exit_code == 0, paused.output
    assert listed_state(app) == "paused"
    r = join(client, client_id="newcomer")
    assert r.status_code == 409 and r.json["error"] == "study_paused", r.json
    assert "paused" in r.json["message"]
    # The active participant goes on (on_pause = "finish" by default), even signing in again.
    again = join(client, client_id="active")
    assert again.status_code == 200 and again.json["resumed"] is True, again.json
    done = finish(client, token)
    assert done["completion_code"]
    # A pause of a paused study is refused with the way out; nothing is logged.
    twice = percept(app, "study", "pause", "t")
    assert twice.exit_code == 2
    assert twice.output.strip() == (
        "Error: study 't' is paused, so it cannot pause; it can: resume or close"
    )

    # The dashboard's buttons: resume, then close (CSRF-protected).
    admin = admin_client(app)
    page = admin.get("/admin/studies/t").text
    assert 'value="resume"' in page and 'value="close"' in page and 'value="pause"' not in page
    forged = admin.post("/admin/studies/t/state", data={"action": "resume"})
    assert forged.status_code == 400 and listed_state(app) == "paused"
    r = admin.post(
        "/admin/studies/t/state", data={"csrf_token": csrf_token(page), "action": "resume"}
    )
    assert r.status_code == 302 and listed_state(app) == "open"
    assert join(client, client_id="later").status_code == 201

    page = admin.get("/admin/studies/t").text
    r = admin.post(
        "/admin/studies/t/state", data={"csrf_token": csrf_token(page), "action": "close"}
    )
    assert r.status_code == 302 and listed_state(app) == "closed"
    r = join(client, client_id="too-late")
    assert r.status_code == 409 and r.json["error"] == "study_closed", r.json
    page = admin.get("/admin/studies/t").text
    assert "closed" in page and 'value="open"' in page
    wrong = admin.post(
        "/admin/studies/t/state", data={"csrf_token": csrf_token(page), "action": "pause"}
    )
    assert wrong.status_code == 409 and listed_state(app) == "closed"

    log = audit(app)
    assert [(action, detail) for _, action, detail in log] == [
        ("create", "draft"),
        ("open", "draft -> open"),
        ("pause", "open -> paused"),
        ("resume", "paused -> open"),
        ("close", "open -> closed"),
    ]
    whos = [who for who, _, _ in log]
    assert whos[:3] == ["cli", "cli", "cli"]
    assert re.fullmatch(r"admin [0-9a-f]{12}", whos[3]) and whos[4] == whos[3]
    # The dashboard shows the log too.
    assert "paused -&gt; open" in page or "paused -> open" in page


def test_on_pause_stop_refuses_answers_of_sessions_in_progress(app, make_study):
    make_study(extra='on_pause = "stop"')
    client = app.test_client()
    token = join(client, client_id="active").json["token"]
    trials = session(client, token)["trials"]
    assert answer(client, token, trials[0]["id"]).status_code == 200
    with app.app_context():
        from study_server.lifecycle import change_state
        from study_server.studies import find_study

        change_state(find_study("t"), "pause", "cli")
        db.session.remove()
    r = answer(client, token, trials[1]["id"])
    assert r.status_code == 409 and r.json["error"] == "study_paused", r.json
    # The answer already stored is still the same answer (idempotent replay).
    assert answer(client, token, trials[0]["id"]).status_code == 200
    r = join(client, client_id="active")
    assert r.status_code == 409 and r.json["error"] == "study_paused"
    assert percept(app, "study", "resume", "t").exit_code == 0
    assert answer(client, token, trials[1]["id"]).status_code == 200


def test_existing_studies_are_open_and_new_ones_open_unless_draft(app, make_study):
    make_study()
    assert listed_state(app) == "open"
    assert join(app.test_client(), client_id="x").status_code == 201
    assert audit(app) == [("cli", "create", "open")]


def test_unknown_study_and_unknown_action_are_clear(app, make_study):
    make_study()
    r = percept(app, "study", "close", "nope")
    assert r.exit_code == 2 and "no study 'nope' in this database (studies: t)" in r.output
    admin = admin_client(app)
    page = admin.get("/admin/studies/t").text
    r = admin.post("/admin/studies/t/state", data={"csrf_token": csrf_token(page), "action": "x"})
    assert r.status_code == 400 and listed_state(app) == "open"
