"""A study's life: draft -> open -> paused -> open -> closed, from the CLI and the dashboard.

Every test runs on SQLite and PostgreSQL (the db_url fixture). Newcomers of a study that
is not open get a JSON 409 naming its state; sessions in progress follow `on_pause`.
"""

from __future__ import annotations

import re

from click.testing import CliRunner
from conftest import write_study_config
from participants import answer, auth, join, session
from sqlalchemy import func, select

from percept.cli import cli
from study_server.db import db
from study_server.models import AuditEntry, Participant, Study

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
    return re.search(r"\[\w+, (\w+), \w+\]", line).group(1)


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


# --- Withdrawal: percept participant show / delete ---------------------------------------------


def table_counts(app) -> dict[str, int]:
    """Rows in every table of the schema."""
    with app.app_context():
        counts = {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
    return counts


def test_participant_delete_removes_every_row_and_logs_only_a_hash(app, make_study, tmp_path):
    import json

    from study_server.export import hash_platform_id, write_export

    make_study(platform="prolific", extra='completion_code = "DONE1"\ncheck_platform_ids = false')
    client = app.test_client()
    ids = {"withdrawn": "5f0c" + "a" * 20, "stays": "5f0c" + "b" * 20}
    tokens = {}
    for name, pid in ids.items():
        r = join(client, prolific_pid=pid, study_id="S", session_id=f"sess-{name}")
        assert r.status_code == 201, r.json
        tokens[name] = r.json["token"]
    # A second sign-up of the same id (another tab): a second token row to delete.
    assert join(client, prolific_pid=ids["withdrawn"], study_id="S").status_code == 200
    for token in tokens.values():
        finish(client, token)
    with app.app_context():
        number = db.session.scalar(
            select(Participant.id).where(Participant.platform_pid == ids["withdrawn"])
        )
        salt = db.session.scalar(select(Study.salt).where(Study.slug == "t"))
        db.session.remove()

    shown = percept(app, "participant", "show", "--study", "t", "--platform-id", ids["withdrawn"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["participant"]["platform_pid"] == ids["withdrawn"]
    assert data["participant"]["id"] == number and data["study"] == "t"
    answered = sum(t["response"] is not None for t in data["trials"])
    assert answered == len(data["trials"]) > 0
    assert len(data["models"]) == 1 and len(data["tokens"]) == 2
    assert "token_hash" not in shown.output
    mine = {
        "response": answered,
        "trial": len(data["trials"]),
        "participant_generator": len(data["models"]),
        "token": len(data["tokens"]),
        "participant": 1,
    }

    before = table_counts(app)
    refused = percept(app, "participant", "delete", "--study", "t", "--participant", str(number))
    assert refused.exit_code == 1 and "Aborted" in refused.output  # no confirmation given
    assert table_counts(app) == before
    both = percept(
        app, "participant", "delete", "--study", "t", "--participant", "1", "--platform-id", "x"
    )
    assert both.exit_code == 2 and "exactly one of --platform-id or --participant" in both.output

    done = percept(
        app, "participant", "delete", "--study", "t", "--platform-id", ids["withdrawn"], "--yes"
    )
    assert done.exit_code == 0, done.output
    assert ids["withdrawn"] not in done.output
    after = table_counts(app)
    expected = {name: n - mine.get(name, 0) for name, n in before.items()}
    expected["audit_log"] += 1
    assert after == expected

    # Nothing of theirs is left in any table that references a participant or a trial.
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for fk in table.foreign_keys:
                if fk.column.table.name == "participant":
                    left = db.session.scalar(
                        select(func.count()).select_from(table).where(fk.parent == number)
                    )
                    assert left == 0, table.name
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "participant_delete")
        ).one()
        line = f"{entry.at} {entry.who} {entry.study_id} {entry.action} {entry.detail}"
        db.session.remove()
    assert entry.who == "cli"
    assert ids["withdrawn"] not in line and ids["withdrawn"][4:] not in line
    assert hash_platform_id(salt, ids["withdrawn"]) in entry.detail

    # The next export no longer has them; the other participant is untouched.
    with app.app_context():
        write_export(tmp_path / "export", slug="t")
        db.session.remove()
    people = (tmp_path / "export" / "participants.csv").read_text()
    trials = (tmp_path / "export" / "trials.csv").read_text().splitlines()
    assert hash_platform_id(salt, ids["withdrawn"]) not in people
    assert hash_platform_id(salt, ids["stays"]) in people
    assert people.count("\n") == 2  # header + the one who stays
    assert len(trials) - 1 == before["trial"] - mine["trial"]
    # Their tokens are gone: the session is closed to them.
    r = client.get("/api/v1/session", headers=auth(tokens["withdrawn"]))
    assert r.status_code == 401
    assert client.get("/api/v1/session", headers=auth(tokens["stays"])).status_code == 200
    again = percept(app, "participant", "show", "--study", "t", "--participant", str(number))
    assert again.exit_code == 2 and f"no participant with number {number}" in again.output


def test_dashboard_withdrawal_asks_then_deletes(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="leaving").json["token"]
    session(client, token)  # makes the trial list
    assert join(client, client_id="staying").status_code == 201
    with app.app_context():
        number = db.session.scalar(
            select(Participant.id).where(Participant.platform_pid == "leaving")
        )
        db.session.remove()
    admin = admin_client(app)
    before = table_counts(app)
    page = admin.get("/admin/studies/t").text
    form = {"csrf_token": csrf_token(page), "participant": str(number)}
    assert (
        admin.post("/admin/studies/t/withdraw", data={"participant": str(number)}).status_code
        == 400
    )
    asked = admin.post("/admin/studies/t/withdraw", data=form)
    assert asked.status_code == 200 and f"Delete participant {number}" in asked.text
    assert table_counts(app) == before, "the confirmation page deleted something"
    missing = admin.post("/admin/studies/t/withdraw", data={**form, "participant": "999999"})
    assert missing.status_code == 404
    done = admin.post("/admin/studies/t/withdraw", data={**form, "confirm": "yes"})
    assert done.status_code == 302
    after = table_counts(app)
    assert after["participant"] == before["participant"] - 1
    assert after["token"] == before["token"] - 1 and after["trial"] < before["trial"]
    log = audit(app)
    assert log[-1][1] == "participant_delete" and log[-1][0].startswith("admin ")
    assert "leaving" not in log[-1][2]
    assert client.get("/api/v1/session", headers=auth(token)).status_code == 401
