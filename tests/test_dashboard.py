"""The study dashboard read at a glance, and targets set from the CLI and the dashboard.

Per model a bar of usable / completed / active against the target; the study's settings;
the participant URL for its platform; who is in a session and at which stage; exclusions
by rule; plurals; the admin guide as a link. Then `percept study set-target` and its
dashboard form, both audit-logged. Every database test runs on SQLite and PostgreSQL (the
db_url fixture); the browser test makes docs/screens/dashboard.png at 1280x800.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner
from participants import answer, auth, join, session
from sqlalchemy import event, select
from test_admin import PASSWORD, csrf_token, kinds, logged_in_client, table_rows

from percept.cli import cli
from study_server.db import db
from study_server.models import AuditEntry, Generator, Participant, Study

SCREENS = Path(__file__).resolve().parent.parent / "docs" / "screens"
MODELS = ["scenes/memoriser", "scenes/pca-gauss"]
PROLIFIC_PID = "5f1a2b3c4d5e6f7a8b9c0d{:02x}"
# Main trials of the test study: 10 real + 10 fake + 2 catch + 1 instructed; 4 practice.
MAIN, PRACTICE = 23, 4


def percept(app, *args):
    """Run `percept ARGS --db URL` on the app's database."""
    env = {"PERCEPT_IMAGE_STORE": app.config["IMAGE_STORE"]}
    return CliRunner().invoke(cli, [*args, "--db", app.config["SQLALCHEMY_DATABASE_URI"]], env=env)


def answer_block(client, app, token, block, count=None, wrong_checks=0):
    """Answer the first `count` trials of a block (all when None), failing `wrong_checks`
    attention checks; answers are right otherwise."""
    trials = [t for t in session(client, token)["trials"] if t["block"] == block]
    truth = kinds(app)
    for t in trials[:count]:
        kind, expected = truth[t["id"]]
        choice = expected
        if kind != "stimulus" and wrong_checks:
            choice, wrong_checks = ("real" if expected == "fake" else "fake"), wrong_checks - 1
        r = answer(client, token, t["id"], choice)
        assert r.status_code == 200, r.json


def complete(client, token):
    r = client.post("/api/v1/session/complete", headers=auth(token))
    assert r.status_code == 200, r.json


def shift(app, pid: str, **changes: timedelta):
    """Move a participant's times back (last_seen_at=timedelta(hours=2), ...)."""
    with app.app_context():
        p = db.session.scalar(select(Participant).where(Participant.platform_pid == pid))
        for name, delta in changes.items():
            setattr(p, name, getattr(p, name) - delta)
        db.session.commit()
        db.session.remove()


SCREEN = {"width": 1280, "height": 800, "device_pixel_ratio": 2}


@pytest.fixture
def lively(app, make_study):
    """Study 't' on Prolific (two models, target 4) with participants at every stage.

    Returns {name: platform id}. Completed: done-1, done-2 (1 check failed: excluded),
    old-3 (completed 2 h ago); in a session: main-4 (5 of 23 main answered), practice-5
    (2 of 4 practice), consent-6 (signed up only), idle-7 (3 main answered, 2 h ago);
    returned-8.
    """
    make_study(platform="prolific", target=4, extra='completion_code = "DONE-1"\n')
    client = app.test_client()
    names = ["done-1", "done-2", "old-3", "main-4", "practice-5", "consent-6", "idle-7"]
    names.append("returned-8")
    people = {name: PROLIFIC_PID.format(i) for i, name in enumerate(names, 1)}

    def signup(name, screen=None):
        body = {"prolific_pid": people[name], "study_id": "s", "session_id": name}
        if screen:
            body["screen"] = screen
        r = join(client, **body)
        assert r.status_code == 201, r.json
        return r.json["token"]

    for name in ("done-1", "done-2", "old-3"):
        token = signup(name, SCREEN)
        answer_block(client, app, token, "main", wrong_checks=name == "done-2")
        complete(client, token)
    answer_block(client, app, signup("main-4", SCREEN), "main", 5)
    answer_block(client, app, signup("practice-5"), "practice", 2)
    signup("consent-6", {"width": 390, "height": 844, "device_pixel_ratio": 3})
    answer_block(client, app, signup("idle-7", SCREEN), "main", 3)
    token = signup("returned-8")
    assert client.post("/api/v1/session/return", headers=auth(token)).status_code == 200
    shift(app, people["old-3"], completed_at=timedelta(hours=2), last_seen_at=timedelta(hours=2))
    shift(app, people["idle-7"], last_seen_at=timedelta(hours=2))
    return people


def ids_by_name(app, people) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(select(Participant.platform_pid, Participant.id)).all()
        db.session.remove()
    pids = dict(rows)
    return {name: pids[pid] for name, pid in people.items()}


def model_rows(app) -> dict[str, dict]:
    """Per model from the database: target, completed, active (in a session, not idle)."""
    with app.app_context():
        out = {}
        for g in db.session.scalars(select(Generator).order_by(Generator.id)):
            mine = [p for p in db.session.scalars(select(Participant)) if g in p.generators]
            out[g.name] = {
                "target": g.target,
                "completed": sum(p.state == "completed" for p in mine),
                "active": sum(
                    p.state in ("consented", "practice", "main")
                    and p.last_seen_at > datetime.utcnow() - timedelta(hours=1)
                    for p in mine
                ),
                "excluded": sum(p.platform_pid == PROLIFIC_PID.format(2) for p in mine),
            }
        db.session.remove()
    return out


# --- The study page ---------------------------------------------------------------------------


def test_bars_show_usable_completed_and_active_against_the_target(app, lively):
    html = logged_in_client(app).get("/admin/studies/t").text
    expected = model_rows(app)
    assert sum(m["excluded"] for m in expected.values()) == 1
    rows = {row[0]: row for row in table_rows(html, "admin-models")}
    labels = dict(
        zip(
            [row[0] for row in table_rows(html, "admin-models")],
            re.findall(r'<svg class="admin-bar"[^>]*aria-label="([^"]+)"', html),
            strict=True,
        )
    )
    for name, m in expected.items():
        usable = m["completed"] - m["excluded"]
        assert rows[name][1:7] == [
            f"{usable} of 4 usable",
            "4",
            str(usable),
            str(m["completed"]),
            str(m["excluded"]),
            str(m["active"]),
        ]
        assert unescape(labels[name]) == (
            f"{usable} usable of target 4; {m['completed']} completed "
            f"({m['excluded']} excluded); {m['active']} active"
        )
    # The bar's parts are in proportion: usable, then excluded, then active, of the target.
    bar = re.search(r'<svg class="admin-bar".*?</svg>', html, re.S)[0]
    first = expected[MODELS[0]]
    widths = dict(re.findall(r'class="admin-bar-(\w+)" x="[\d.]+" y="0" width="([\d.]+)"', bar))
    scale = max(4, first["completed"] + first["active"])
    usable = first["completed"] - first["excluded"]
    for kind, n in (
        ("usable", usable),
        ("excluded", first["excluded"]),
        ("active", first["active"]),
    ):
        if n:
            assert float(widths[kind]) == pytest.approx(100 * n / scale, abs=0.01)
        else:
            assert kind not in widths
    assert f'x1="{100 * 4 / scale:.2f}"' in bar


def test_active_participants_show_stage_last_activity_and_screen(app, lively):
    html = logged_in_client(app).get("/admin/studies/t").text
    ids = ids_by_name(app, lively)
    rows = {int(row[0]): row for row in table_rows(html, "admin-active")}
    expected = {
        "done-1": ("done", "under a minute ago", "1280x800 @2x"),
        "done-2": ("done", "under a minute ago", "1280x800 @2x"),
        "main-4": (f"main 5/{MAIN}", "under a minute ago", "1280x800 @2x"),
        "practice-5": (f"practice 2/{PRACTICE}", "under a minute ago", "unknown"),
        "consent-6": ("consent", "under a minute ago", "390x844 @3x"),
        "idle-7": (f"main 3/{MAIN} (idle)", "2 h ago", "1280x800 @2x"),
    }
    assert set(rows) == {ids[name] for name in expected}, "old-3 and returned-8 are not active"
    for name, (stage, seen, screen) in expected.items():
        row = rows[ids[name]]
        assert (row[1], row[3], row[4]) == (stage, seen, screen), name
    # Most recently seen first: the idle one last.
    assert int(table_rows(html, "admin-active")[-1][0]) == ids["idle-7"]


def test_active_participants_take_a_fixed_number_of_queries(app, lively, make_study):
    """No query per participant: a study has hundreds of them."""
    from study_server import dashboard
    from study_server.studies import find_study

    with app.app_context():
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            rows, total = dashboard.active_participants(find_study("t"))
            few = len(statements)
            statements.clear()
            rows_one, _ = dashboard.active_participants(find_study("t"), limit=1)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        db.session.remove()
    assert len(rows) == total == 6 and len(rows_one) == 1
    assert few == len(statements) <= 5, statements


def test_participant_url_per_platform(app, make_study):
    make_study(slug="pro", platform="prolific", extra='completion_code = "C-1"\n')
    make_study(slug="turk", platform="mturk")
    make_study(slug="plain", platform="link")
    client = logged_in_client(app)

    def url_field(slug):
        html = client.get(f"/admin/studies/{slug}").text
        value = re.search(r"<textarea id=\"participant-url\"[^>]*>(.*?)</textarea>", html, re.S)[1]
        return html, unescape(value)

    html, url = url_field("pro")
    assert url == (
        "http://localhost/s/pro?PROLIFIC_PID={{%PROLIFIC_PID%}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert 'data-copy="participant-url"' in html and "ExternalQuestion" not in html
    # The test client's host is this machine's own: the page says participants cannot reach it.
    assert "This address is localhost, which participants cannot reach" in html

    html, url = url_field("turk")
    assert url == "http://localhost/s/turk"
    xml = unescape(
        re.search(r'<textarea id="external-question"[^>]*>(.*?)</textarea>', html, re.S)[1]
    )
    assert "<ExternalURL>http://localhost/s/turk</ExternalURL>" in xml
    assert xml.startswith("<ExternalQuestion xmlns=") and 'data-copy="external-question"' in html

    html, url = url_field("plain")
    assert url == "http://localhost/s/plain" and "ExternalQuestion" not in html

    # PUBLIC_URL, when configured, is the base (and nothing warns).
    app.config["PUBLIC_URL"] = "https://study.example.org"
    html, url = url_field("turk")
    assert url == "https://study.example.org/s/turk" and "cannot reach" not in html


def test_public_url_must_be_an_address(db_url):
    from percept.errors import PerceptError
    from study_server import create_app

    for bad in ("study.example.org", "https://x.org/?a=1", "ftp://x.org", "https://x y"):
        with pytest.raises(PerceptError, match="PUBLIC_URL"):
            create_app({"SQLALCHEMY_DATABASE_URI": db_url, "PUBLIC_URL": bad})
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "PUBLIC_URL": "https://x.org/study"})
    assert app.config["PUBLIC_URL"] == "https://x.org/study"


def test_settings_exclusions_by_rule_and_plurals(app, make_study):
    # The derived pacing rule on: a test client answers at once, faster than trials show.
    make_study(target=2, exclusions="", extra="idle_timeout_minutes = 1\n")
    client = app.test_client()
    token = join(client, client_id="only-1").json["token"]
    answer_block(client, app, token, "main", wrong_checks=1)
    complete(client, token)
    admin = logged_in_client(app)
    html = admin.get("/admin/studies/t").text
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))

    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html))
    assert facts == {
        "Platform": "plain link",
        "Design": "one model per participant; 10 real and 10 fake main trials, "
        "3 attention checks (2 catch, 1 instructed), 4 practice trials",
        "Timing mode": "fixed",
        "Exposure": "500 ms; fixation 500 ms, no mask",
        "When paused": "newcomers are refused; sessions in progress finish (<code>on_pause</code>)",
    }
    rules = {row[0]: row[1:] for row in table_rows(html, "admin-rules")}
    assert rules == {
        "Attention checks": ["more than 0 attention checks failed", "1"],
        "Invalid trials": ["more than 20% of answered main trials invalid", "0"],
        "Median response time": ["median response time under 150 ms", "0"],
        "Pacing": ["answers faster than the trials can be shown", "1"],
    }
    assert "1 of 1 completed participant excluded" in text
    assert "Study totals: 1 participant: 0 active" in text
    assert "idle after 1 minute without" in text and "Study totals: 1 participant:" in text
    assert "Audit log (1 entry)" in text
    # A model nobody judged yet: no attention checks answered, said in words.
    rates = [row[-1] for row in table_rows(html, "admin-models")]
    assert sorted(rates) == ["1 of 3 (33.3%)", "none answered yet"]
    assert " - " not in text.split("Participants")[0]
    # The admin guide is a link, and the link opens docs/admin.md, escaped.
    assert '<a href="/admin/help">the admin guide</a>' in html
    guide = admin.get("/admin/help")
    assert guide.status_code == 200 and "## The dashboard" in unescape(guide.text)
    assert "<pre" in guide.text and "<table" not in guide.text
    # Both pages reload themselves (static/admin.js) and carry no inline script or style.
    for page in (html, admin.get("/admin/").text):
        assert '<meta name="percept-refresh" content="30">' in page
        assert re.findall(r"<script[^>]*>(.*?)</script>", page, re.S) == [""]
        assert 'src="/static/admin.js"' in page and "style=" not in page


def test_unit_words():
    from study_server.dashboard import ago, plural, screen_text

    now = datetime(2025, 1, 1, 12, 0)
    assert [plural(n, "participant") for n in (0, 1, 2)] == [
        "0 participants",
        "1 participant",
        "2 participants",
    ]
    assert (
        plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"
    )
    assert [ago(now - timedelta(seconds=s), now) for s in (5, 60, 180, 3600, 3900, 86400 * 2)] == [
        "under a minute ago",
        "1 min ago",
        "3 min ago",
        "1 h ago",
        "1 h 5 min ago",
        "2 days ago",
    ]
    assert ago(now - timedelta(days=1), now) == "1 day ago"
    assert screen_text(None, None, None) == "unknown" and screen_text(800, 600, 1.0) == "800x600"


# --- Targets ----------------------------------------------------------------------------------


def targets(app, slug="t") -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            select(Generator.dataset, Generator.model, Generator.target)
            .join(Study)
            .where(Study.slug == slug)
            .order_by(Generator.id)
        ).all()
        db.session.remove()
    return {f"{d}/{m}": t for d, m, t in rows}


def audit(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        out = [(r.who, r.action, r.detail) for r in rows if r.action == "set_target"]
        db.session.remove()
    return out


def test_set_target_from_the_cli(app, make_study):
    make_study(target=3)
    r = percept(app, "study", "set-target", "t", "5")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (
        "study 't': target scenes/memoriser: 3 -> 5; scenes/pca-gauss: 3 -> 5 "
        "(logged in its audit log)"
    )
    assert targets(app) == {MODELS[0]: 5, MODELS[1]: 5}
    r = percept(app, "study", "set-target", "t", "--model", MODELS[1], "0")
    assert r.exit_code == 0, r.output
    assert targets(app) == {MODELS[0]: 5, MODELS[1]: 0}
    assert audit(app) == [
        ("cli", "set_target", "scenes/memoriser: 3 -> 5; scenes/pca-gauss: 3 -> 5"),
        ("cli", "set_target", "scenes/pca-gauss: 5 -> 0"),
    ]
    # Mistakes: one clear line each, exit 2, nothing changed or logged.
    mistakes = {
        ("t", "-1"): "the target must be a whole number from 0 to 100000, got '-1'",
        ("t", "2.5"): "the target must be a whole number from 0 to 100000, got '2.5'",
        ("t", "100001"): "the target must be a whole number from 0 to 100000, got '100001'",
        ("t", "--model", "scenes/nope", "4"): "study 't' has no model 'scenes/nope'; "
        "its models: scenes/memoriser, scenes/pca-gauss",
        ("nope", "4"): "no study 'nope' in this database (studies: t)",
    }
    for args, message in mistakes.items():
        r = percept(app, "study", "set-target", *args)
        assert (r.exit_code, r.output.strip()) == (2, f"Error: {message}"), args
    assert targets(app) == {MODELS[0]: 5, MODELS[1]: 0} and len(audit(app)) == 2


def test_a_model_at_target_zero_takes_no_newcomers(app, make_study):
    make_study(target=3)
    assert percept(app, "study", "set-target", "t", "--model", MODELS[0], "0").exit_code == 0
    client = app.test_client()
    for i in range(3):
        assert join(client, client_id=f"p-{i}").status_code == 201
    with app.app_context():
        assigned = {p.generators[0].name for p in db.session.scalars(select(Participant))}
        db.session.remove()
    assert assigned == {MODELS[1]}
    r = join(client, client_id="p-3")
    assert r.status_code == 409 and r.json["error"] == "study_full", r.json


def test_set_target_from_the_dashboard(app, make_study):
    make_study(target=3)
    admin = logged_in_client(app)
    page = admin.get("/admin/studies/t").text
    assert 'action="/admin/studies/t/target"' in page
    options = re.findall(r'<option value="([^"]*)">', page)
    assert options == ["", *MODELS]

    # Without a CSRF token (another site's form): refused, nothing changes.
    forged = admin.post("/admin/studies/t/target", data={"model": "", "target": "9"})
    assert forged.status_code == 400 and targets(app) == {MODELS[0]: 3, MODELS[1]: 3}
    token = csrf_token(page)
    r = admin.post(
        "/admin/studies/t/target", data={"csrf_token": token, "model": "", "target": "7"}
    )
    assert r.status_code == 302 and r.location == "/admin/studies/t"
    r = admin.post(
        "/admin/studies/t/target", data={"csrf_token": token, "model": MODELS[0], "target": "2"}
    )
    assert r.status_code == 302
    assert targets(app) == {MODELS[0]: 2, MODELS[1]: 7}
    (first, second) = audit(app)
    assert first[0].startswith("admin ") and first[0] == second[0]
    assert first[2] == "scenes/memoriser: 3 -> 7; scenes/pca-gauss: 3 -> 7"
    assert second[2] == "scenes/memoriser: 7 -> 2"
    page = admin.get("/admin/studies/t").text
    assert "<td>set_target</td><td>scenes/memoriser: 7 -&gt; 2</td>" in page
    assert [row[2] for row in table_rows(page, "admin-models")] == ["2", "7"]

    for data, status, message in (
        ({"model": "", "target": "-3"}, 400, "whole number from 0 to 100000, got &#39;-3&#39;"),
        ({"model": "", "target": ""}, 400, "whole number"),
        ({"model": "x/y", "target": "3"}, 400, "has no model &#39;x/y&#39;; its models:"),
    ):
        r = admin.post("/admin/studies/t/target", data={"csrf_token": token, **data})
        assert r.status_code == status and message in r.text, (data, r.text)
    assert targets(app) == {MODELS[0]: 2, MODELS[1]: 7} and len(audit(app)) == 2
    assert app.test_client().post("/admin/studies/t/target").status_code in (302, 400)


# --- In Chromium: the screenshot, the copy button, the refresh that keeps the scroll ---------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dashboard_in_chromium(app, lively, live_server, browser, monkeypatch):
    from study_server import admin

    # As on a server behind nginx: the URL to paste names the public address.
    app.config["PUBLIC_URL"] = "https://study.example.org"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{live_server}/admin/studies/t")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_selector("table.admin-active")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENS / "dashboard.png")

    page.click('button[data-copy="participant-url"]')
    page.wait_for_selector(".admin-copied:has-text('Copied.')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "https://study.example.org/s/t?PROLIFIC_PID={{%PROLIFIC_PID%}}" + (
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )

    # The page reloads itself and keeps where the reader was: once after 3 s here (the
    # page it reloads to waits 30 s again, so nothing reloads under the checks below).
    monkeypatch.setattr(admin, "REFRESH_SECONDS", 3)
    page.reload()
    monkeypatch.setattr(admin, "REFRESH_SECONDS", 30)
    page.evaluate("window.scrollTo(0, 400)")
    with page.expect_navigation(timeout=10_000):
        pass
    page.wait_for_load_state()
    page.wait_for_timeout(200)
    assert page.evaluate("window.scrollY") == 400

    # The list of studies: a bar per model, under the same policy.
    page.goto(f"{live_server}/admin/")
    assert page.locator("svg.admin-bar").count() == 2
    context.close()
    assert not errors, errors
