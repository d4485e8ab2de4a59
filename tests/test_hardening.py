"""The small holes of issue 18, each closed: every test here failed before its fix."""

from __future__ import annotations

import re

import psycopg
import pytest
from participants import answer, auth, join, session
from sqlalchemy import event, select
from test_admin import login

from study_server.db import db
from study_server.headers import MTURK_FRAMERS
from study_server.models import Participant, Response

JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [1000, 5000, 8000])
def test_deeply_nested_json_is_a_400(app, make_study, depth):
    make_study()
    client = app.test_client()
    assert len(nested(depth)) <= app.config["MAX_CONTENT_LENGTH"]
    r = client.post("/api/v1/studies/t/participants", data=nested(depth), headers=JSON)
    assert (r.status_code, r.json["error"]) == (400, "bad_request")
    token = join(client, client_id="nest-1").json["token"]
    trial = session(client, token)["trials"][0]["id"]
    body = b'{"choice": "real", "rt_ms": 5, "input": ' + nested(depth) + b"}"
    body = body if len(body) <= app.config["MAX_CONTENT_LENGTH"] else nested(depth)
    r = client.put(f"/api/v1/trials/{trial}/response", data=body, headers={**auth(token), **JSON})
    assert (r.status_code, r.json["error"]) == (400, "bad_request" if depth > 900 else "bad_field")
    with app.app_context():
        assert db.session.scalar(select(Response.id)) is None


@pytest.mark.parametrize(
    "target",
    [
        "/admin/\r\nSet-Cookie: admin=1",
        "/admin/studies/t\rX-Injected: 1",
        "/admin/studies/t\nx",
        "/admin/\x00",
        "/admin/\x7f",
        "/admin/studies/t x",
    ],
)
def test_control_characters_in_next_are_ignored_after_login(app, target):
    client = app.test_client()
    r = login(client, next=target)
    assert r.status_code == 302
    assert r.headers["Location"] == "/admin/"
    assert "X-Injected" not in r.headers and "admin=1" not in r.headers.get("Set-Cookie", "")
    # Logged in already: the GET form redirects the same way.
    r = client.get("/admin/login", query_string={"next": target})
    assert (r.status_code, r.headers["Location"]) == (302, "/admin/")
    # A plain admin path still works.
    r = client.get("/admin/login", query_string={"next": "/admin/studies/t?x=1"})
    assert r.headers["Location"] == "/admin/studies/t?x=1"


def test_a_null_optional_field_is_the_same_answer_as_leaving_it_out(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="null-1").json["token"]
    first, second = session(client, token)["trials"][:2]
    assert answer(client, token, first["id"], rt_ms=500).status_code == 200
    again = answer(client, token, first["id"], rt_ms=500, onset_ms=None, input=None)
    assert again.status_code == 200, again.json
    # And the other way round: stored with nulls, retried without them.
    assert answer(client, token, second["id"], onset_ms=None, frames=None).status_code == 200
    assert answer(client, token, second["id"]).status_code == 200
    # A value that differs is still a conflict.
    assert answer(client, token, second["id"], onset_ms=12.5).status_code == 409
    with app.app_context():
        assert db.session.scalar(select(Response.onset_ms).where(Response.id == 1)) is None


def test_participant_pages_send_a_strict_policy(app, make_study):
    make_study()
    client = app.test_client()
    page = client.get("/s/t")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'"):
        assert directive in csp
    assert "frame-ancestors 'none'" in csp and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    # Nothing inline for the policy to block: scripts and styles come from /static only.
    html = page.text
    assert "style=" not in html and "<style" not in html
    for tag in html.split("<script")[1:]:
        head = tag.split(">", 1)[0]
        assert 'src="/static/' in head or 'type="application/json"' in head, head
    for url in ("/s/nope", "/api/v1/openapi.json", "/static/runner/main.js"):
        r = client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff", url
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], url


def test_only_an_mturk_study_may_be_framed_and_only_by_mturk(app, make_study):
    make_study(platform="mturk")
    r = app.test_client().get("/s/t")
    csp = dict(
        part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";")
    )
    assert csp["frame-ancestors"] == MTURK_FRAMERS
    assert "https://www.mturk.com" in csp["form-action"]
    assert "https://workersandbox.mturk.com" in csp["form-action"]
    assert "X-Frame-Options" not in r.headers


def test_admin_pages_send_a_policy(app):
    client = app.test_client()
    for r in (client.get("/admin/login"), client.get("/admin/")):
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
    assert login(client).status_code == 302
    page = client.get("/admin/")
    assert page.status_code == 200 and "style=" not in page.text
    # Scripts come from /static only: every <script> has a src and no body.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="/static/' in attrs and not body for attrs, body in scripts)


# --- MTurk: a sign-up with another worker's id changes nothing of theirs ----------------------

WORKER = {
    "worker_id": "A1B2C3D4E5F6G7",
    "assignment_id": "ASG1",
    "hit_id": "H1",
    "turk_submit_to": "https://workersandbox.mturk.com",
}


def finish(client, token) -> dict:
    for t in session(client, token)["trials"]:
        if t["block"] == "main" and not t["answered"]:
            answer(client, token, t["id"])
    return client.post("/api/v1/session/complete", headers=auth(token)).json


def test_a_sign_up_with_another_workers_id_keeps_their_assignment(app, make_study):
    make_study(platform="mturk")
    client = app.test_client()
    victim = join(client, **WORKER).json["token"]
    # Someone who knows the worker id, on an assignment (and site) of their own.
    other = {**WORKER, "assignment_id": "ASG-OTHER", "turk_submit_to": "https://www.mturk.com"}
    impostor = join(client, **other)
    assert impostor.status_code == 200 and impostor.json["resumed"] is True
    done = finish(client, victim)
    assert done["mturk_submit"] == {
        "action": "https://workersandbox.mturk.com/mturk/externalSubmit",
        "assignmentId": "ASG1",
    }
    # What the session shows the first browser says the same; the export keeps ASG1.
    assert session(client, victim)["completion"]["mturk_submit"]["assignmentId"] == "ASG1"
    with app.app_context():
        stored = db.session.execute(
            select(Participant.assignment_id, Participant.turk_submit_to)
        ).one()
    assert tuple(stored) == ("ASG1", "https://workersandbox.mturk.com")
    # The other browser's form names the assignment it came with, never the worker's.
    theirs = session(client, impostor.json["token"])["completion"]["mturk_submit"]
    assert theirs["assignmentId"] == "ASG-OTHER"


# --- A dropped database connection ------------------------------------------------------------


def kill_backends(db_url: str) -> int:
    """Terminate every server process of this database but ours; how many there were."""
    name = db_url.rsplit("/", 1)[1]
    admin = db_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


@pytest.fixture
def postgres_app(app, db_url):
    assert db_url.startswith("postgresql")
    return app


# Killing the server's connections needs a database server: these run on PostgreSQL only.
ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@ON_POSTGRES
def test_a_connection_dropped_while_idle_is_replaced(postgres_app, db_url, make_study):
    app = postgres_app
    make_study()
    client = app.test_client()
    token = join(client, client_id="drop-1").json["token"]
    image = session(client, token)["trials"][0]["image"]
    assert kill_backends(db_url) >= 1  # the pooled connection of the requests above
    assert client.get(image).status_code == 200
    assert client.get("/api/v1/session", headers=auth(token)).status_code == 200


@ON_POSTGRES
def test_a_read_whose_connection_drops_midway_is_retried(postgres_app, db_url, make_study):
    app = postgres_app
    make_study()
    client = app.test_client()
    token = join(client, client_id="drop-2").json["token"]
    image = session(client, token)["trials"][0]["image"]
    kills = []

    def kill_once(conn, cursor, statement, parameters, context, executemany):
        # The first query of the request: its connection dies under it.
        if not kills and "image" in statement:
            kills.append(conn.connection.dbapi_connection.info.backend_pid)
            kill_backends(db_url)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", kill_once)
    try:
        r = client.get(image)
    finally:
        event.remove(engine, "before_cursor_execute", kill_once)
    assert kills and r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    # A write is not retried by the server: the client sends it again (it is idempotent).
    trial = session(client, token)["trials"][0]["id"]
    assert answer(client, token, trial).status_code == 200


@ON_POSTGRES
def test_an_answer_racing_a_return_is_a_409_not_a_500(postgres_app, make_study):
    from sqlalchemy import delete, update

    from study_server.models import Trial

    app = postgres_app
    make_study()
    client = app.test_client()
    token = join(client, client_id="race-1").json["token"]
    trial_id = session(client, token)["trials"][0]["id"]

    raced: list[bool] = []

    def return_meanwhile(_session) -> None:
        # The return commits on another connection after the answer was checked, before it
        # is written: it deletes the unanswered trial the answer is about to reference.
        if raced:
            return
        raced.append(True)
        with db.engine.begin() as other:
            other.execute(delete(Trial.__table__).where(Trial.id == trial_id))
            other.execute(update(Participant.__table__).values(state="returned"))

    with app.app_context():
        event.listen(db.session, "before_commit", return_meanwhile)
        try:
            r = answer(client, token, trial_id)
        finally:
            event.remove(db.session, "before_commit", return_meanwhile)
    assert raced and (r.status_code, r.json["error"]) == (409, "session_closed")
