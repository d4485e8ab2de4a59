"""Before anyone signs up: eligibility (told before consent, stores nothing), the favicon,
links with a trailing slash and what `percept serve` prints. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from participants import auth, join
from sqlalchemy import func, select

from percept.cli import cli
from study_server.db import db
from study_server.models import Participant, Response, Token, Trial

PID = "5f1a2b3c4d5e6f7a8b9c0d1e"


def row_counts(app) -> dict[str, int]:
    with app.app_context():
        counts = {
            model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Participant, Trial, Response, Token)
        }
        db.session.remove()
    return counts


def eligibility(client, slug="t", **params):
    r = client.get(f"/api/v1/studies/{slug}/eligibility", query_string=params)
    assert r.status_code == 200, r.json
    return r.json


def test_eligibility_tells_each_refusal_and_stores_nothing(app, make_study):
    make_study(target=1)  # two models, one place each
    client = app.test_client()
    before = row_counts(app)
    assert eligibility(client, client_id="a-1", width=1280, height=800) == {
        "eligible": True,
        "reason": None,
        "message": None,
    }
    small = eligibility(client, client_id="a-1", width=390, height=844)
    assert small["reason"] == "screen_too_small" and "800 x 600" in small["message"]
    assert eligibility(client, client_id="a-1", width=1280, height=599)["reason"] == (
        "screen_too_small"
    )
    # A touch-only device may take a study that allows it (the default).
    assert eligibility(client, client_id="a-1", touch_only="true")["eligible"] is True
    r = client.get("/api/v1/studies/t/eligibility?touch_only=yes")
    assert (r.status_code, r.json["error"]) == (400, "bad_field")
    assert row_counts(app) == before  # asking stores nothing

    first = join(client, client_id="a-1").json["token"]
    join(client, client_id="a-2")
    assert eligibility(client, client_id="a-3")["reason"] == "study_full"
    # Whoever holds a place may go on: the study is not full for them.
    assert eligibility(client, client_id="a-1")["eligible"] is True
    # A returned place is free at once, and the returner is told they cannot go on.
    assert client.post("/api/v1/session/return", headers=auth(first)).status_code == 200
    assert eligibility(client, client_id="a-3")["eligible"] is True
    assert eligibility(client, client_id="a-1")["reason"] == "returned"
    # An idle session's place counts as free, as the next sign-up would count it;
    # asking marks nobody abandoned.
    join(client, client_id="a-3")
    assert eligibility(client, client_id="a-4")["reason"] == "study_full"
    with app.app_context():
        for p in db.session.scalars(select(Participant)):
            p.last_seen_at -= timedelta(hours=2)
        db.session.commit()
        states = sorted(db.session.scalars(select(Participant.state)))
        db.session.remove()
    assert eligibility(client, client_id="a-4")["eligible"] is True
    with app.app_context():
        assert sorted(db.session.scalars(select(Participant.state))) == states
        db.session.remove()
    # The sign-up agrees with what eligibility said.
    assert join(client, client_id="a-4").status_code == 201


def test_eligibility_of_a_completed_prolific_id(app, make_study):
    make_study(platform="prolific", target=5, extra='completion_code = "PERCEPT-1"\n')
    client = app.test_client()
    token = join(client, prolific_pid=PID).json["token"]
    data = client.get("/api/v1/session", headers=auth(token)).json
    for trial in data["trials"]:
        r = client.put(
            f"/api/v1/trials/{trial['id']}/response",
            json={"choice": "real", "rt_ms": 600.0},
            headers=auth(token),
        )
        assert r.status_code == 200
    assert client.post("/api/v1/session/complete", headers=auth(token)).status_code == 200
    before = row_counts(app)
    assert eligibility(client, prolific_pid=PID)["reason"] == "already_completed"
    assert eligibility(client, prolific_pid="6f1a2b3c4d5e6f7a8b9c0d1e")["eligible"] is True
    assert row_counts(app) == before
    # An id the sign-up would refuse is refused here too, before consent.
    r = client.get("/api/v1/studies/t/eligibility?prolific_pid=not-a-prolific-id")
    assert (r.status_code, r.json["error"]) == (400, "bad_field")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("client_id=x&prolific_pid=y", 400, "unknown_field"),  # another platform's id
        ("width=0", 400, "bad_field"),
        ("width=-5", 400, "bad_field"),
        ("width=1e3", 400, "bad_field"),
        ("width=%201280", 400, "bad_field"),
        ("height=%D9%A1%D9%A2", 400, "bad_field"),  # Arabic-Indic digits
        ("height=9999999", 400, "bad_field"),
        ("client_id=a%00b", 400, "bad_field"),
        ("client_id=", 400, "bad_field"),
        ("x=1", 400, "unknown_field"),
    ],
)
def test_bad_eligibility_questions_are_refused(app, make_study, query, status, code):
    make_study()
    r = app.test_client().get(f"/api/v1/studies/t/eligibility?{query}")
    assert (r.status_code, r.json["error"]) == (status, code)
    r = app.test_client().get("/api/v1/studies/nope/eligibility")
    assert (r.status_code, r.json["error"]) == (404, "unknown_study")


def test_favicon_and_trailing_slash(app, make_study):
    make_study()
    client = app.test_client()
    r = client.get("/favicon.ico")
    assert r.status_code == 204 and r.data == b""
    page = client.get("/s/t").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.data.startswith(b"<svg")
    # A pasted link with a trailing slash keeps its platform parameters.
    query = f"PROLIFIC_PID={PID}&STUDY_ID=s%201&SESSION_ID=x"
    r = client.get(f"/s/t/?{query}")
    assert r.status_code == 308 and r.headers["Location"] == f"/s/t?{query}"
    r = client.get("/s/t/")
    assert r.status_code == 308 and r.headers["Location"] == "/s/t"
    assert client.get("/s/t/", follow_redirects=True).status_code == 200
    assert client.get("/s/nope/", follow_redirects=True).status_code == 404


def test_serve_prints_the_admin_and_each_studys_participant_url(
    app, make_study, db_url, monkeypatch
):
    make_study(slug="first")
    make_study(slug="second")
    served = []
    monkeypatch.setattr("werkzeug.serving.run_simple", lambda *a, **k: served.append(a[:2]))
    result = CliRunner().invoke(cli, ["serve", "--db", db_url, "--port", "5055"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "Admin: http://127.0.0.1:5055/admin/",
        "Participants of first: http://127.0.0.1:5055/s/first",
        "Participants of second: http://127.0.0.1:5055/s/second",
        "Serving on http://127.0.0.1:5055 (Ctrl-C stops)",
    ]
    assert served == [("127.0.0.1", 5055)]
