"""Saying no, leaving and being turned away, in Debian's Chromium (Playwright).

"I do not agree" stores nothing; "Stop and return the study" frees the place at once
and shows the platform's return text; a full study, an already completed id and a
too-small screen are told before the consent form, with nothing stored.
"""

from __future__ import annotations

import pytest
import test_runner
from participants import answer, auth, join, session
from sqlalchemy import func, select
from test_runner import FAST, PROLIFIC, answer_trials, screenshot, start, wait_screen

from study_server.db import db
from study_server.models import Participant, Response, Token, Trial

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The browser tests' fixtures: a SQLite database and a 1280 x 720 page.
db_url = test_runner.db_url
page = test_runner.page

PID = "5f1a2b3c4d5e6f7a8b9c0d1e"
MTURK = (
    "workerId=A1B2C3D4E5F6G7&assignmentId=A456&hitId=H1"
    "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
)
LINKS = {"prolific": PROLIFIC, "mturk": MTURK, "link": ""}
RETURN_TEXT = {
    "prolific": "Please return the study on Prolific",
    "mturk": "Please return the HIT on MTurk",
    "link": "You may now close this page.",
}


def row_counts(app) -> dict[str, int]:
    with app.app_context():
        counts = {
            model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Participant, Trial, Response, Token)
        }
        db.session.remove()
    return counts


def sign_ups(tab) -> list[str]:
    """Every sign-up request the page makes, as it makes it."""
    made: list[str] = []
    tab.on(
        "request",
        lambda r: made.append(r.url) if r.method == "POST" and "/participants" in r.url else None,
    )
    return made


@pytest.mark.parametrize("platform", ["prolific", "mturk", "link"])
def test_i_do_not_agree_stores_nothing(app, make_study, live_server, page, platform):
    make_study(platform=platform, extra='completion_code = "PERCEPT-1"\n')
    before = row_counts(app)
    made = sign_ups(page)
    page.goto(f"{live_server}/s/t?{LINKS[platform]}")
    wait_screen(page, "consent")
    page.click("[data-action=decline]")
    wait_screen(page, "declined")
    text = page.inner_text('[data-screen="declined"]')
    assert RETURN_TEXT[platform] in text and "Nothing about you has been stored" in text
    if platform == "prolific":
        assert page.get_attribute("[data-screen=declined] a", "href") == "https://app.prolific.com/"
        screenshot(page, "declined")
    assert page.is_hidden('[data-action="stop"]')
    assert made == [] and row_counts(app) == before


def test_stop_and_return_frees_the_place_at_once(app, make_study, live_server, page):
    # Two models, one place each: the returner's model is the only one left afterwards.
    make_study(platform="prolific", target=1, extra='completion_code = "PERCEPT-1"\n' + FAST)
    start(page, f"{live_server}/s/t?{PROLIFIC}")
    answer_trials(page, 2)
    client = app.test_client()
    other = join(client, prolific_pid="6f1a2b3c4d5e6f7a8b9c0d1e")
    assert other.status_code == 201
    assert join(client, prolific_pid="7f1a2b3c4d5e6f7a8b9c0d1e").json["error"] == "study_full"
    with app.app_context():
        mine = db.session.scalar(select(Participant).where(Participant.platform_pid == PID))
        my_model = [g.model for g in mine.generators]
        db.session.remove()

    # "No, go on" changes nothing; the trials go on.
    page.click('[data-action="stop"]')
    page.wait_for_selector("[data-stop-confirm]:not([hidden])")
    screenshot(page, "stop-confirm")
    page.click('[data-action="stop-no"]')
    assert page.is_hidden("[data-stop-confirm]")
    assert answer_trials(page, 1) == 1

    page.click('[data-action="stop"]')
    with page.expect_response(lambda r: r.url.endswith("/api/v1/session/return")) as returned:
        page.click('[data-action="stop-yes"]')
    assert returned.value.status == 200
    wait_screen(page, "returned")
    page.wait_for_selector("text=Your place has been given back")
    text = page.inner_text('[data-screen="returned"]')
    assert "Please return the study on Prolific" in text
    screenshot(page, "returned")
    with app.app_context():
        mine = db.session.scalar(select(Participant).where(Participant.platform_pid == PID))
        assert mine.state == "returned"
        answered = db.session.scalar(
            select(func.count())
            .select_from(Response)
            .join(Trial)
            .where(Trial.participant_id == mine.id)
        )
        db.session.remove()
    assert answered == 3  # answers already given are kept
    # The next newcomer gets the freed model at once.
    newcomer = join(client, prolific_pid="7f1a2b3c4d5e6f7a8b9c0d1e")
    assert newcomer.status_code == 201
    with app.app_context():
        late = db.session.scalar(
            select(Participant).where(Participant.platform_pid == "7f1a2b3c4d5e6f7a8b9c0d1e")
        )
        assert [g.model for g in late.generators] == my_model
        db.session.remove()
    # Coming back to the link: told at once that the study was returned.
    page.goto(f"{live_server}/s/t?{PROLIFIC}")
    wait_screen(page, "returned-before")
    assert "Please return the study on Prolific" in page.inner_text("[data-screen=returned-before]")


def complete_by_api(client, pid: str) -> None:
    token = join(client, prolific_pid=pid).json["token"]
    for trial in session(client, token)["trials"]:
        assert answer(client, token, trial["id"]).status_code == 200
    assert client.post("/api/v1/session/complete", headers=auth(token)).status_code == 200


def test_refusals_come_before_the_consent_form(app, make_study, live_server, browser):
    # complete_by_api's answers break the attention rule; with replace_excluded on, that
    # completed place would be free again (tests/test_usable_places.py): keep it taken here.
    extra = 'completion_code = "PERCEPT-1"\nreplace_excluded = false\n'
    make_study(platform="prolific", target=1, extra=extra)
    client = app.test_client()
    complete_by_api(client, PID)  # this id completed; one place left
    before = row_counts(app)

    def visit(query: str, screen_name: str, **context) -> str:
        ctx = browser.new_context(**context)
        tab = ctx.new_page()
        made = sign_ups(tab)
        tab.goto(f"{live_server}/s/t?{query}")
        wait_screen(tab, screen_name)
        text = tab.inner_text(f'[data-screen="{screen_name}"]')
        assert tab.is_hidden('[data-screen="consent"]') and made == []
        ctx.close()
        return text

    assert "already completed" in visit(PROLIFIC, "completed-before")
    other = "PROLIFIC_PID=6f1a2b3c4d5e6f7a8b9c0d1e"
    phone = {"viewport": {"width": 390, "height": 844}, "has_touch": True}
    text = visit(other, "too-small", **phone)
    assert "800 \u00d7 600" in text and "390 \u00d7 844" in text
    assert "Please return the study on Prolific" in text
    assert row_counts(app) == before

    # A big screen in a small window: asked to enlarge the window, still before consent.
    ctx = browser.new_context(
        viewport={"width": 700, "height": 500}, screen={"width": 1920, "height": 1080}
    )
    tab = ctx.new_page()
    tab.goto(f"{live_server}/s/t?{other}")
    wait_screen(tab, "small")
    tab.set_viewport_size({"width": 1280, "height": 720})
    wait_screen(tab, "consent")
    ctx.close()

    join(client, prolific_pid="7f1a2b3c4d5e6f7a8b9c0d1e")  # the last place
    before = row_counts(app)
    text = visit(other, "full")
    assert "All places in this study are taken" in text
    assert "Please return the study on Prolific" in text
    assert row_counts(app) == before


def test_a_paused_study_is_told_before_the_consent_form(app, make_study, live_server, page):
    from study_server.lifecycle import CLI, change_state
    from study_server.models import Study

    make_study(platform="prolific", extra='completion_code = "PERCEPT-1"\n')
    with app.app_context():
        change_state(db.session.scalar(select(Study)), "pause", CLI)
        db.session.remove()
    before = row_counts(app)
    made = sign_ups(page)
    page.goto(f"{live_server}/s/t?{PROLIFIC}")
    wait_screen(page, "not-open")
    text = page.inner_text('[data-screen="not-open"]')
    assert "paused" in text and "Please return the study on Prolific" in text
    assert page.is_hidden('[data-screen="consent"]') and made == []
    assert row_counts(app) == before
