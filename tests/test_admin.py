"""Admin pages: login, CSRF, dashboard numbers, no secrets on screen, the export download.

Every test runs on SQLite and PostgreSQL (see the db_url fixture). CSRF stays on, as in
production: tests read the token from the rendered form.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from datetime import timedelta
from html import unescape

import participants
import pytest
from participants import auth, join, session
from sqlalchemy import select

from study_server.db import db
from study_server.models import AdminSession, Participant, Study, Trial

PASSWORD = "secret-admin"  # set by the app fixture
ADMIN_PAGES = ["/admin/", "/admin/studies/t", "/admin/studies/t/export.zip"]


# --- Participant API helpers (copied from test_api.py: test modules are not imported) --------


def answer(client, token, trial_id, choice="real"):
    r = participants.answer(client, token, trial_id, choice)
    assert r.status_code == 200, r.json
    return r


# --- Admin helpers ----------------------------------------------------------------------------


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def login(client, password=PASSWORD, **extra):
    token = csrf_token(client.get("/admin/login").text)
    return client.post("/admin/login", data={"csrf_token": token, "password": password, **extra})


def logged_in_client(app):
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def table_rows(html: str, css_class: str) -> list[list[str]]:
    """The body rows of the first table with this class, as lists of cell texts."""
    table = re.search(rf'<table class="{css_class}">(.*?)</table>', html, re.S)
    assert table, f"no table {css_class}"
    body = table.group(1).split("<tbody>")[1]
    return [
        [cell_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def cell_text(html: str) -> str:
    """What a cell says in words: tags dropped, a progress bar (svg) by its words beside it."""
    html = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))).strip()


# --- Login, logout, CSRF ----------------------------------------------------------------------


def test_wrong_password_is_refused_and_the_right_one_logs_in(app, make_study):
    make_study()
    client = app.test_client()
    r = client.get("/admin/")
    assert r.status_code == 302 and r.location.startswith("/admin/login")

    wrong = login(client, "secret-admin ")
    assert wrong.status_code == 401
    assert "Wrong password." in wrong.text and "secret-admin" not in wrong.text
    assert client.get("/admin/").status_code == 302

    right = login(client, next="/admin/studies/t")
    assert right.status_code == 302 and right.location == "/admin/studies/t"
    assert client.get("/admin/").status_code == 200

    page = client.get("/admin/").text
    r = client.post("/admin/logout", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and r.location == "/admin/login"
    assert client.get("/admin/").status_code == 302


def test_login_never_redirects_to_another_site(app):
    for target in ("//evil.example/admin/", "https://evil.example/", "/admin/\\evil"):
        client = app.test_client()
        r = login(client, next=target)
        assert r.status_code == 302 and r.location == "/admin/", target


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_need_login(app, make_study, path):
    make_study()
    r = app.test_client().get(path)
    assert r.status_code == 302
    assert r.location == "/admin/login?next=" + path


def test_posts_without_a_csrf_token_are_refused(app):
    client = app.test_client()
    client.get("/admin/login")
    r = client.post("/admin/login", data={"password": PASSWORD})
    assert r.status_code == 400 and "CSRF" in r.text
    assert client.get("/admin/").status_code == 302, "logged in without a CSRF token"

    assert login(client).status_code == 302
    r = client.post("/admin/logout")
    assert r.status_code == 400
    r = client.post("/admin/logout", data={"csrf_token": "forged"})
    assert r.status_code == 400
    assert client.get("/admin/").status_code == 200, "logged out without a CSRF token"


def test_admin_is_disabled_without_a_password(db_url, monkeypatch, tmp_path):
    from study_server import create_app

    monkeypatch.delenv("PERCEPT_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("PERCEPT_ADMIN_PASSWORD_HASH", raising=False)
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": db_url, "SECRET_KEY": "test-secret-key-0", "TESTING": True},
        instance_path=str(tmp_path),  # no instance/config.py with a password in it
    )
    assert app.config["ADMIN_PASSWORD_HASH"] is None
    client = app.test_client()
    page = client.get("/admin/login")
    assert page.status_code == 200
    text = page.text
    assert "Admin is disabled" in text
    assert "PERCEPT_ADMIN_PASSWORD" in text and "ADMIN_PASSWORD_HASH" in text
    assert 'type="password"' not in text
    # Nothing logs in: the form is not there, and a hand-made post is refused.
    r = client.post("/admin/login", data={"password": ""})
    assert r.status_code in (400, 403)
    assert client.get("/admin/").status_code == 302


def test_a_login_holds_across_workers_and_expires(app, db_url):
    from study_server import admin, create_app

    # Each gunicorn worker hashes the plain password with its own salt.
    other = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "ADMIN_PASSWORD": PASSWORD,
            "TESTING": True,
        }
    )
    assert other.config["ADMIN_PASSWORD_HASH"] != app.config["ADMIN_PASSWORD_HASH"]
    client = logged_in_client(app)
    elsewhere = other.test_client()
    elsewhere.set_cookie("session", client.get_cookie("session").value)
    assert elsewhere.get("/admin/").status_code == 200

    with app.app_context():
        (row,) = db.session.scalars(select(AdminSession)).all()
        row.created_at -= timedelta(seconds=admin.SESSION_SECONDS + 1)
        db.session.commit()
    assert client.get("/admin/").status_code == 302
    assert elsewhere.get("/admin/").status_code == 302


def test_logout_ends_every_copy_of_the_cookie(app):
    client = logged_in_client(app)
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/admin/").status_code == 200
    other = logged_in_client(app)  # another login, in another browser
    token = csrf_token(client.get("/admin/").text)
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302
    assert copy.get("/admin/").status_code == 302, "a copied cookie outlived the logout"
    assert other.get("/admin/").status_code == 200, "logout ends this login only"
    with app.app_context():
        ended = db.session.scalars(select(AdminSession.ended_at)).all()
    assert sum(e is not None for e in ended) == 1


def test_a_new_password_ends_every_older_login(app, db_url):
    from study_server import create_app

    client = logged_in_client(app)
    cookie = client.get_cookie("session").value
    changed = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "ADMIN_PASSWORD": "a-brand-new-password",
            "TESTING": True,
        }
    )
    after = changed.test_client()
    after.set_cookie("session", cookie)
    assert after.get("/admin/").status_code == 302, "a login outlived the password change"
    assert login(after, "a-brand-new-password").status_code == 302
    assert after.get("/admin/").status_code == 200


def test_the_password_hash_is_kept_and_the_plain_password_dropped(app):
    assert app.config["ADMIN_PASSWORD"] is None
    assert app.config["ADMIN_PASSWORD_HASH"].startswith(("scrypt:", "pbkdf2:"))


# --- Dashboard numbers ------------------------------------------------------------------------


def kinds(app) -> dict[int, tuple[str, str]]:
    """(kind, expected answer) of every trial: only the server knows them."""
    with app.app_context():
        rows = db.session.execute(select(Trial.id, Trial.kind, Trial.expected)).all()
        db.session.remove()
    return {trial_id: (kind, expected) for trial_id, kind, expected in rows}


def take_part(client, app, token, *, checks_wrong=0, main=None, complete=True):
    """Answer main trials (all, or the first `main`), failing `checks_wrong` attention checks.

    Returns (answered checks, failed checks).
    """
    trials = [t for t in session(client, token)["trials"] if t["block"] == "main"]
    truth = kinds(app)  # after the session: the trial list is made when first read
    answered = failed = 0
    for t in trials[:main]:
        kind, expected = truth[t["id"]]
        choice = expected
        if kind != "stimulus":
            answered += 1
            if failed < checks_wrong:
                choice = "real" if expected == "fake" else "fake"
                failed += 1
        answer(client, token, t["id"], choice)
    if complete:
        r = client.post("/api/v1/session/complete", headers=auth(token))
        assert r.status_code == 200, r.json
    return answered, failed


@pytest.fixture
def crowd(app, make_study):
    """Five participants of study 't' (two models, one each, target 3) in every state.

    Returns what the dashboard must show: {token: (client id, status, checks answered,
    checks failed, excluded)} plus each participant's model, read back from the database.
    """
    make_study(target=3)
    client = app.test_client()
    people = {}
    plan = [
        # client id, final status, attention checks to fail, main trials, complete
        ("good-1", "completed", 0, None, True),
        ("sloppy-2", "completed", 1, None, True),
        ("busy-3", "active", 2, -1, False),
        ("gone-4", "idle", 0, 0, False),
        ("quit-5", "returned", 0, 3, False),
    ]
    for client_id, status, wrong, main, done in plan:
        token = join(client, client_id=client_id).json["token"]
        answered, failed = take_part(
            client, app, token, checks_wrong=wrong, main=main, complete=done
        )
        if status == "returned":
            assert client.post("/api/v1/session/return", headers=auth(token)).status_code == 200
        people[token] = {
            "client_id": client_id,
            # What the database keeps of a token: its sha256.
            "token_hash": hashlib.sha256(token.encode()).hexdigest(),
            "status": status,
            "answered": answered,
            "failed": failed,
            "excluded": status == "completed" and failed > 0,
        }
    with app.app_context():
        for p in db.session.scalars(select(Participant)):
            person = next(v for v in people.values() if v["client_id"] == p.platform_pid)
            person["id"] = p.id
            person["model"] = p.generators[0].name
            if person["status"] == "idle":
                # Idle past the study's timeout (60 minutes), not yet marked abandoned.
                p.last_seen_at -= timedelta(hours=2)
        db.session.commit()
        db.session.remove()
    return people


def expected_models(people) -> dict[str, list[str]]:
    out = {}
    for model in ("scenes/memoriser", "scenes/pca-gauss"):
        mine = [p for p in people.values() if p["model"] == model]
        answered = sum(p["answered"] for p in mine)
        failed = sum(p["failed"] for p in mine)
        rate = (
            f"{failed} of {answered} ({100 * failed / answered:.1f}%)"
            if answered
            else "none answered yet"
        )
        completed = sum(p["status"] == "completed" for p in mine)
        excluded = sum(p["excluded"] for p in mine)
        out[model] = [
            model,
            f"{completed - excluded} of 3 usable",
            "3",
            str(completed - excluded),
            str(completed),
            str(excluded),
            str(sum(p["status"] == "active" for p in mine)),
            rate,
        ]
    return out


def test_dashboard_counts_each_model(app, crowd):
    client = logged_in_client(app)
    html = client.get("/admin/").text
    rows = table_rows(html, "admin-models")
    assert {row[0]: row for row in rows} == expected_models(crowd)
    # Every participant answered at least one attention check except the idle one.
    failed = sum(p["failed"] for p in crowd.values())
    answered = sum(p["answered"] for p in crowd.values())
    totals = re.sub(r"\s+", " ", re.search(r'<p class="admin-totals">(.*?)</p>', html, re.S)[1])
    assert totals.strip() == (
        "Study totals: 5 participants: 1 active, 1 idle, 2 completed (1 excluded), "
        f"0 abandoned, 1 returned. Attention checks failed: "
        f"{failed} of {answered} ({100 * failed / answered:.1f}%)."
    )
    assert 'href="/admin/studies/t"' in html


def test_study_page_lists_participants_without_secrets(app, crowd):
    client = logged_in_client(app)
    html = client.get("/admin/studies/t").text
    assert table_rows(html, "admin-models") == list(expected_models(crowd).values())
    rows = {int(row[0]): row for row in table_rows(html, "admin-participants")}
    assert len(rows) == 5
    for p in crowd.values():
        row = rows[p["id"]]
        state = {"active": "main", "idle": "consented (idle)"}.get(p["status"], p["status"])
        assert row[1] == state
        assert row[2] == p["model"]
        assert row[6] == f"{p['failed']}/{p['answered']}"
    by_name = {p["client_id"]: rows[p["id"]] for p in crowd.values()}
    assert by_name["good-1"][5] == "23/23" and by_name["good-1"][7] == "no"
    assert by_name["sloppy-2"][7] == "yes: failed 1 attention checks (max 0)"
    assert by_name["busy-3"][5] == "22/23"
    assert by_name["busy-3"][7] == "- (so far: failed 2 attention checks (max 0))"
    assert by_name["gone-4"][5] == "0/23" and by_name["gone-4"][7] == "-"

    # No token, token hash or platform id on any admin page.
    with app.app_context():
        salt = db.session.scalar(select(Study.salt))
    secrets = [salt]
    for token, p in crowd.items():
        secrets += [token, p["token_hash"], p["client_id"]]
    for path in ("/admin/", "/admin/studies/t", "/admin/login"):
        page = client.get(path, follow_redirects=True).text
        leaked = [s for s in secrets if s in page]
        assert not leaked, (path, leaked)


def test_study_page_caps_the_participant_list(app, crowd, monkeypatch):
    from study_server import dashboard

    monkeypatch.setattr(dashboard, "PARTICIPANT_ROWS", 2)
    html = logged_in_client(app).get("/admin/studies/t").text
    assert "Showing the newest 2 of 5 participants" in html
    ids = [int(row[0]) for row in table_rows(html, "admin-participants")]
    newest = sorted((p["id"] for p in crowd.values()), reverse=True)[:2]
    assert ids == newest


def test_empty_dashboard_and_unknown_study(app):
    client = logged_in_client(app)
    assert "No studies yet" in client.get("/admin/").text
    assert client.get("/admin/studies/nope").status_code == 404
    assert client.get("/admin/studies/nope/export.zip").status_code == 404


# --- Export download --------------------------------------------------------------------------


def test_export_download_is_a_zip_with_hashed_platform_ids(app, crowd):
    client = logged_in_client(app)
    r = client.get("/admin/studies/t/export.zip")
    assert r.status_code == 200
    assert r.mimetype == "application/zip"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=t-")
    assert r.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(r.data)) as z:
        names = {name.rsplit("/", 1)[-1] for name in z.namelist()}
        assert {"trials.csv", "participants.csv", "images.csv", "data_dictionary.md"} <= names
        everything = b"".join(z.read(name) for name in z.namelist()).decode()
    for token, p in crowd.items():
        assert token not in everything and p["token_hash"] not in everything
        assert p["client_id"] not in everything, "a raw platform id in the web export"


@pytest.mark.parametrize("slug", ["nope", "%00", "..%2f..", "x" * 300])
def test_unknown_or_impossible_study_slugs_are_404(app, make_study, slug):
    # A NUL in the slug used to reach PostgreSQL, which refuses it with a 500.
    client = logged_in_client(app)
    assert client.get(f"/admin/studies/{slug}").status_code == 404
    assert client.get(f"/admin/studies/{slug}/export.zip").status_code == 404
