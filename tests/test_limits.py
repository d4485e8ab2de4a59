"""Abuse limits: sign-up floods, admin password guessing, places held without answers."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from participants import answer, auth, join, session
from sqlalchemy import func, select

from study_server.db import db
from study_server.models import Participant, Response, Trial

PASSWORD = "secret-admin"


@pytest.fixture
def limited(app, db_url):
    """A second app on the same database, with the abuse limits on (the `app` fixture has
    them off) and a small sign-up limit."""
    from study_server import create_app

    limited = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "ADMIN_PASSWORD": PASSWORD,
            "TESTING": True,
            "SIGNUP_LIMIT": "10 per minute;50 per hour",
        }
    )
    yield limited
    with limited.app_context():
        db.engine.dispose()


def sign_up(client, address: str, client_id: str, slug: str = "t", **headers):
    return client.post(
        f"/api/v1/studies/{slug}/participants",
        json={"consent": True, "client_id": client_id},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def count(app, model) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
    return n


def test_a_flood_from_one_address_gets_429_and_newcomers_still_get_places(
    limited, make_study, caplog
):
    make_study(target=100)
    client = limited.test_client()
    with caplog.at_level(logging.WARNING):
        flood = [sign_up(client, "203.0.113.7", f"bot-{i}") for i in range(40)]
    statuses = [r.status_code for r in flood]
    assert statuses == [201] * 10 + [429] * 30
    refused = flood[-1]
    assert refused.is_json and refused.json["error"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) > 0
    assert "sign-up rate limit" in caplog.text and "203.0.113.7" in caplog.text
    # A refused sign-up stores nothing; real newcomers elsewhere still get places.
    assert count(limited, Participant) == 10
    for n in range(5):
        r = sign_up(client, f"198.51.100.{n}", f"person-{n}")
        assert r.status_code == 201, r.json
    assert count(limited, Participant) == 15


def test_the_client_address_comes_from_trusted_proxies_only(app, db_url, make_study):
    from study_server import create_app

    make_study(target=100)
    config = {
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SECRET_KEY": app.config["SECRET_KEY"],
        "TESTING": True,
        "SIGNUP_LIMIT": "2 per minute",
    }
    # Without a trusted proxy, X-Forwarded-For is the client's own say: ignored.
    direct = create_app(config).test_client()
    spoofed = [
        sign_up(direct, "192.0.2.1", f"d-{i}", **{"X-Forwarded-For": f"10.0.0.{i}"})
        for i in range(3)
    ]
    assert [r.status_code for r in spoofed] == [201, 201, 429]
    # Behind nginx (TRUSTED_PROXIES = 1) the proxy's last entry names the client; an
    # entry the client wrote before it changes nothing.
    proxied = create_app({**config, "TRUSTED_PROXIES": 1}).test_client()
    behind = [
        sign_up(proxied, "127.0.0.1", f"p-{i}", **{"X-Forwarded-For": f"10.9.9.{i}, 192.0.2.50"})
        for i in range(3)
    ]
    assert [r.status_code for r in behind] == [201, 201, 429]
    other = [
        sign_up(proxied, "127.0.0.1", f"q-{i}", **{"X-Forwarded-For": "192.0.2.51"}).status_code
        for i in range(2)
    ]
    assert other == [201, 201]


def test_a_study_takes_at_most_its_cap_of_newcomers_a_minute(limited, make_study):
    make_study(target=100, extra="max_signups_per_minute = 3")
    client = limited.test_client()
    statuses = [sign_up(client, f"198.51.100.{n}", f"p-{n}").status_code for n in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    r = sign_up(client, "198.51.100.9", "p-9")
    assert r.json["error"] == "busy" and int(r.headers["Retry-After"]) > 0
    # Someone already in goes on; a minute later newcomers are taken again.
    assert sign_up(client, "198.51.100.0", "p-0").status_code == 200
    with limited.app_context():
        for p in db.session.scalars(select(Participant)):
            p.created_at -= timedelta(minutes=1, seconds=1)
        db.session.commit()
    assert sign_up(client, "198.51.100.9", "p-9").status_code == 201


def wrong_login(client, address: str, password: str = "not-it"):
    page = client.get("/admin/login", environ_base={"REMOTE_ADDR": address}).text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client.post(
        "/admin/login",
        data={"csrf_token": token, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_wrong_admin_passwords_lock_an_address_out(limited, caplog):
    client = limited.test_client()
    # Right passwords (each in a browser of its own) do not count towards the lockout.
    for _ in range(6):
        assert wrong_login(limited.test_client(), "203.0.113.9", PASSWORD).status_code == 302
    with caplog.at_level(logging.WARNING):
        statuses = [wrong_login(client, "203.0.113.9").status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert "wrong password from 203.0.113.9" in caplog.text
    assert "admin login locked out for 203.0.113.9" in caplog.text
    # Locked out: even the right password waits (no hash is checked meanwhile) ...
    assert wrong_login(client, "203.0.113.9", PASSWORD).status_code == 429
    # ... but only for that address.
    assert wrong_login(limited.test_client(), "198.51.100.1", PASSWORD).status_code == 302


def test_only_answers_keep_a_place(app, make_study):
    make_study(target=1)
    client = app.test_client()
    idle = join(client, client_id="idle").json["token"]
    trials = session(client, idle)["trials"]

    def last_seen() -> tuple[str, object]:
        with app.app_context():
            (p,) = db.session.execute(
                select(Participant.state, Participant.last_seen_at).where(
                    Participant.platform_pid == "idle"
                )
            ).all()
            return p.state, p.last_seen_at

    with app.app_context():
        for p in db.session.scalars(select(Participant)):
            p.last_seen_at -= timedelta(minutes=61)
        db.session.commit()
    before = last_seen()
    # Pinging the session or signing up again holds nothing.
    for _ in range(3):
        session(client, idle)
        assert join(client, client_id="idle").status_code == 200
    assert last_seen() == before
    assert join(client, client_id="newcomer").status_code == 201
    assert last_seen()[0] == "abandoned"
    # Reading the session changes nothing, and shows what the next answer makes it.
    assert session(client, idle)["state"] == "consented"
    assert last_seen()[0] == "abandoned"
    # An answer takes the session back.
    assert answer(client, idle, trials[0]["id"]).status_code == 200
    state, seen = last_seen()
    assert state == "practice" and seen > before[1]


def test_trial_rows_exist_only_while_they_can_be_answered(app, make_study):
    make_study(target=100)
    client = app.test_client()
    # Sign-up then return, in a loop: no trial rows pile up.
    for n in range(5):
        token = join(client, client_id=f"loop-{n}").json["token"]
        assert client.post("/api/v1/session/return", headers=auth(token)).status_code == 200
    assert count(app, Trial) == 0
    # A returned session keeps its answers (for the export) and loses the rest.
    token = join(client, client_id="real").json["token"]
    trials = session(client, token)["trials"]
    assert len(trials) == 27 and count(app, Trial) == 27
    for t in trials[:3]:
        assert answer(client, token, t["id"], "fake").status_code == 200
    assert client.post("/api/v1/session/return", headers=auth(token)).status_code == 200
    assert count(app, Trial) == 3 and count(app, Response) == 3
    assert client.get("/api/v1/session", headers=auth(token)).json["state"] == "returned"
    # Completing needs the trial list: a session never read cannot complete empty.
    fresh = join(client, client_id="fresh").json["token"]
    r = client.post("/api/v1/session/complete", headers=auth(fresh))
    assert r.status_code == 409 and r.json["error"] == "incomplete"


@pytest.mark.parametrize(
    ("platform", "good", "bad"),
    [
        ("prolific", {"prolific_pid": "5f1a2b3c4d5e6f7a8b9c0d1e"}, {"prolific_pid": "PID-1"}),
        ("mturk", {"worker_id": "A1B2C3D4E5F6G7"}, {"worker_id": "a1b2c3d4e5f6g7"}),
        ("mturk", {"worker_id": "A3K9ZQ0R1XYZ2W"}, {"worker_id": "A1B2C3"}),
    ],
)
def test_platform_ids_must_look_like_the_platforms_own(app, make_study, platform, good, bad):
    code = 'completion_code = "C-1"' if platform == "prolific" else ""
    make_study(platform=platform, target=100, extra=code)
    client = app.test_client()
    mturk = {
        "assignment_id": "ASG1",
        "hit_id": "H1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }
    extra = mturk if platform == "mturk" else {}
    r = join(client, **bad, **extra)
    assert r.status_code == 400 and r.json["error"] == "bad_field", r.json
    assert join(client, **good, **extra).status_code == 201


def test_platform_id_checks_can_be_switched_off(app, make_study):
    make_study(platform="prolific", extra='completion_code = "C-1"\ncheck_platform_ids = false')
    assert join(app.test_client(), prolific_pid="PID-1").status_code == 201
