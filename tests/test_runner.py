"""The trial runner in Debian's Chromium against a live server (Playwright).

Each test runs a whole session as a crowdworker would and then checks the
database: every trial answered exactly once. Screens are saved to docs/screens/.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from study_server.db import db
from study_server.export import write_export
from study_server.models import Participant, Response, Trial

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENS = Path(__file__).resolve().parent.parent / "docs" / "screens"
PROLIFIC = "PROLIFIC_PID=5f1a2b3c4d5e6f7a8b9c0d1e&STUDY_ID=study-1&SESSION_ID=session-1"
FAST = "[timing]\nfixation_ms = 100\nexposure_ms = 100\nmask_ms = 50\n"
READY = '[data-choice="real"]:not([disabled])'
# Sets window.answerSeen once the answer buttons are disabled, i.e. the runner took an answer.
ANSWER_WATCH = """() => {
  window.answerSeen = false;
  const button = document.querySelector('[data-choice="real"]');
  const watch = new MutationObserver(() => {
    if (button.disabled) { window.answerSeen = true; watch.disconnect(); }
  });
  watch.observe(button, { attributes: true, attributeFilter: ["disabled"] });
}"""


@pytest.fixture(params=["sqlite"])
def db_url(request, tmp_path):
    """Browser tests drive the browser, not the database: SQLite is enough here."""
    from study_server import create_app
    from study_server.schema import upgrade_schema

    url = f"sqlite:///{tmp_path / 'percept.sqlite3'}"
    upgrade_schema(create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test"}))
    return url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The pages' Content-Security-Policy must block nothing the runner does.
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert not errors, errors


def screenshot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENS / f"{name}.png")


def wait_true(page, expression: str, timeout: float = 15_000) -> None:
    """Wait until a JS expression is true. Not page.wait_for_function: that evaluates a
    string inside the page, which the pages' Content-Security-Policy forbids (no eval)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def current(page) -> str:
    return page.evaluate("document.body.dataset.current || ''")


def wait_screen(page, name: str, timeout: float = 15_000) -> None:
    page.wait_for_selector(f'[data-screen="{name}"]:not([hidden])', timeout=timeout)


def start(page, url: str, shots: bool = False) -> None:
    """Open the link, consent, pass the device check (the sign-up), read the instructions."""
    page.goto(url)
    wait_screen(page, "consent")
    if shots:
        screenshot(page, "consent")
    page.keyboard.press("Enter")  # keyboard only: "I agree" has the focus
    page.wait_for_selector('[data-screen="device"] [data-action="continue"]:not([disabled])')
    if shots:
        screenshot(page, "device-check")
    page.keyboard.press("Enter")
    wait_screen(page, "instructions")
    wait_true(page, "[...document.querySelectorAll('[data-examples] img')].every(i => i.complete)")
    if shots:
        screenshot(page, "instructions")
    page.keyboard.press("Enter")  # the Continue button has the focus


def answer_trials(
    page,
    count: int | None = None,
    *,
    by: str = "key",
    choose=None,
    delay_ms: int = 0,
    shots: bool = False,
) -> int:
    """Answer `count` trials (all remaining when None); returns how many were answered.

    `choose(n, instruction)` picks "real" or "fake"; by default instructed checks are
    followed and the rest alternate.
    """
    done = 0
    while count is None or done < count:
        page.wait_for_selector(
            f"{READY}, [data-screen=block]:not([hidden]), [data-screen=break]:not([hidden]), "
            "[data-screen=done]:not([hidden]), [data-screen=saving]:not([hidden])",
            timeout=20_000,
        )
        screen = current(page)
        if screen in ("block", "break"):
            if shots:
                name = {"break": "break", "block": "main-intro" if done else "practice-intro"}
                screenshot(page, name[screen])
            page.keyboard.press("Enter")
            continue
        if screen in ("done", "saving"):
            break
        prompt = page.inner_text("[data-prompt]").strip()
        instruction = "real" if "REAL" in prompt else "fake" if "FAKE" in prompt else None
        choice = (choose or (lambda n, i: i or ("real" if n % 2 else "fake")))(done, instruction)
        if delay_ms:
            page.wait_for_timeout(delay_ms)
        # The buttons are disabled from the answer until the next trial is armed, which may
        # be sooner than a busy machine lets a later wait reach the page: watch from before.
        page.evaluate(ANSWER_WATCH)
        if by == "key":
            page.keyboard.press({"real": "f", "fake": "j"}[choice])
        else:
            page.click(f'[data-choice="{choice}"]')
        page.wait_for_function("window.answerSeen === true")
        done += 1
    return done


def stored_responses(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Response))
        db.session.remove()
    return count


def repeats(app) -> int:
    """Trials the server added for invalid answers: a busy machine can miss display frames,
    and each miss is shown again at the end of the main block."""
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(Trial).where(Trial.repeat_of.is_not(None))
        )
        db.session.remove()
    return count


def assert_answered_exactly_once(app) -> list:
    with app.app_context():
        trials = db.session.scalar(select(func.count()).select_from(Trial))
        responses = db.session.scalar(select(func.count()).select_from(Response))
        unanswered = db.session.scalar(
            select(func.count()).select_from(Trial).outerjoin(Response).where(Response.id.is_(None))
        )
        rows = db.session.execute(
            select(
                Trial.planned_exposure_ms,
                Response.displayed_ms,
                Response.frames,
                Response.frame_ms,
                Response.valid,
            ).join(Response)
        ).all()
        db.session.remove()
    assert trials > 0 and responses == trials and unanswered == 0
    return rows


def assert_frame_locked(rows) -> None:
    """Displayed durations are whole frames, and the frames asked for were shown."""
    timed = [r for r in rows if r.planned_exposure_ms is not None]
    assert timed
    for _, displayed, _, frame_ms, _ in timed:
        assert abs(displayed / frame_ms - round(displayed / frame_ms)) < 0.15, (displayed, frame_ms)
    on_target = [r for r in timed if r.frames == max(1, round(r.planned_exposure_ms / r.frame_ms))]
    # A frame the machine drops shows up as one more frame; recorded, never hidden.
    assert len(on_target) >= 0.9 * len(timed), (len(on_target), len(timed))


def test_prolific_session_by_keys(app, make_study, live_server, page):
    make_study(platform="prolific", extra='completion_code = "PERCEPT-1"\n' + FAST)
    page.route("https://app.prolific.com/**", lambda route: route.fulfill(body="Prolific"))
    start(page, f"{live_server}/s/t?{PROLIFIC}", shots=True)
    answered = answer_trials(page, shots=True)
    assert answered == 4 + 10 + 10 + 3 + repeats(app)
    wait_screen(page, "done")
    screenshot(page, "done")
    assert page.inner_text("[data-code]") == "PERCEPT-1"
    page.wait_for_url("https://app.prolific.com/submissions/complete?cc=PERCEPT-1")
    assert_frame_locked(assert_answered_exactly_once(app))
    with app.app_context():
        (p,) = db.session.scalars(select(Participant)).all()
        assert (p.state, p.platform_pid, p.platform_study_id) == (
            "completed",
            "5f1a2b3c4d5e6f7a8b9c0d1e",
            "study-1",
        )
        inputs = set(db.session.scalars(select(Response.input)))
    assert inputs == {"key"}

    # The same Prolific id in another browser gets no second session, and is told so
    # before the consent form.
    other = page.context.browser.new_context()
    again = other.new_page()
    again.goto(f"{live_server}/s/t?{PROLIFIC}")
    wait_screen(again, "completed-before")
    screenshot(again, "already-completed")
    other.close()


def test_mturk_session_by_buttons(app, make_study, live_server, page):
    make_study(platform="mturk", extra=FAST)
    posted = []

    def mturk(route):
        posted.append(route.request.post_data)
        route.fulfill(body="MTurk")

    page.route("https://workersandbox.mturk.com/**", mturk)
    preview = "assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1"
    page.goto(f"{live_server}/s/t?{preview}")
    wait_screen(page, "preview")
    link = (
        f"{live_server}/s/t?workerId=A1B2C3D4E5F6G7&assignmentId=A456&hitId=H1"
        "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    )
    start(page, link)
    assert answer_trials(page, by="button") == 27 + repeats(app)
    page.wait_for_url("https://workersandbox.mturk.com/mturk/externalSubmit")
    assert posted == ["assignmentId=A456"]
    assert_answered_exactly_once(app)
    with app.app_context():
        assert set(db.session.scalars(select(Response.input))) == {"button"}


def test_reload_mid_block_resumes_at_the_next_trial(app, make_study, live_server, page):
    make_study(extra=FAST)
    start(page, f"{live_server}/s/t")
    answer_trials(page, 4 + 6)
    # Reload once the last answer has reached the server: an answer given while the
    # image is still up is saved when the presentation (and mask) ends.
    deadline = time.monotonic() + 15
    while stored_responses(app) < 10:
        assert time.monotonic() < deadline, "the answers did not reach the server"
        page.wait_for_timeout(50)
    page.reload()
    wait_screen(page, "device")
    page.wait_for_selector('[data-screen="device"] [data-action="continue"]:not([disabled])')
    page.keyboard.press("Enter")
    # No consent, no instructions, no practice again: straight on with the main block.
    assert answer_trials(page) == 27 - 10 + repeats(app)
    wait_screen(page, "done")
    assert_answered_exactly_once(app)


def test_thirty_seconds_offline_loses_nothing(app, make_study, live_server, page):
    make_study(extra="[timing]\nfixation_ms = 300\nexposure_ms = 500\n")
    start(page, f"{live_server}/s/t")
    answer_trials(page, 4 + 2)
    page.context.set_offline(True)
    offline_since = time.monotonic()
    answered = 0
    while time.monotonic() - offline_since < 30 and answered < 15:
        answered += answer_trials(page, 1, delay_ms=600)
    page.wait_for_selector("[data-net]:not([hidden])")
    screenshot(page, "offline")
    page.wait_for_timeout(max(0, 30_000 - 1000 * (time.monotonic() - offline_since)))
    page.context.set_offline(False)
    answer_trials(page)
    wait_screen(page, "done", timeout=30_000)
    assert_answered_exactly_once(app)


def test_staircase_adapts_on_the_server(app, make_study, live_server, page):
    extra = (
        '[timing]\nmode = "staircase"\nfixation_ms = 100\n'
        "[timing.staircase]\nstart_ms = 300\nmin_ms = 100\nmax_ms = 500\nstep_ms = 50\n"
        "down_after = 2\n"
    )
    make_study(extra=extra)
    start(page, f"{live_server}/s/t")
    answer_trials(page, delay_ms=50)
    wait_screen(page, "done")
    rows = assert_answered_exactly_once(app)
    assert_frame_locked(rows)
    with app.app_context():
        main = db.session.execute(
            select(
                Trial.kind,
                Trial.staircase,
                Trial.planned_exposure_ms,
                Trial.expected,
                Response.choice,
                Response.valid,
            )
            .join(Response)
            .where(Trial.block == "main")
            .order_by(Trial.position)
        ).all()
    # Replay the documented rule on what was answered, staircase by staircase: it must
    # give what was shown, attention checks included (they take an exposure, no step).
    state: dict[int, tuple[float, int]] = {}
    for kind, stair, planned, expected, choice, valid in main:
        exposure, streak = state.get(stair, (300.0, 0))
        assert planned == exposure
        if kind == "stimulus" and valid:
            if choice != expected:
                exposure, streak = min(500.0, exposure + 50), 0
            elif streak + 1 >= 2:
                exposure, streak = max(100.0, exposure - 50), 0
            else:
                streak += 1
        state[stair] = (exposure, streak)
    assert sorted(state) == [0, 1, 2]
    assert len({planned for _, _, planned, *_ in main}) > 1


def test_failed_attention_check_shows_in_the_export(app, make_study, live_server, page, tmp_path):
    extra = '[timing]\nmode = "unlimited"\nfixation_ms = 100\n'
    make_study(extra=extra)
    start(page, f"{live_server}/s/t")
    shot = {"done": False}

    def choose(n, instruction):
        if n == 4:
            # The window loses focus while the first main image is up: an invalid trial.
            page.evaluate("window.dispatchEvent(new Event('blur'))")
        if instruction and not shot["done"]:
            screenshot(page, "attention-check")
            shot["done"] = True
        # Follow no instruction: answer the opposite of what it asks.
        if instruction:
            return "fake" if instruction == "real" else "real"
        return "real" if n % 2 else "fake"

    answer_trials(page, choose=choose, delay_ms=200)
    wait_screen(page, "done")
    assert_answered_exactly_once(app)
    with app.app_context():
        write_export(tmp_path / "export", slug="t")
    with open(tmp_path / "export" / "participants.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert int(row["attention_failures"]) >= 1 and row["excluded"] == "true"
    assert "attention checks" in row["exclusion_reasons"]
    with open(tmp_path / "export" / "trials.csv", newline="") as f:
        instructed = [r for r in csv.DictReader(f) if r["kind"] == "instructed"]
    assert instructed and all(r["correct"] == "false" for r in instructed)
    with app.app_context():
        invalid = db.session.execute(
            select(Trial.block, Trial.position, Response.invalid_reason)
            .join(Response)
            .where(Response.valid.is_(False))
        ).all()
    assert [tuple(row) for row in invalid] == [("main", 4, "blur")]


def test_trial_screen_and_small_screens(app, make_study, live_server, browser):
    make_study(extra='[timing]\nmode = "unlimited"\nfixation_ms = 100\n')
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    start(page, f"{live_server}/s/t")
    page.keyboard.press("Enter")  # start the practice block
    page.wait_for_selector(READY)
    wait_true(page, "document.querySelector('[data-stimulus]').style.visibility === 'visible'")
    screenshot(page, "trial")
    context.close()

    # A phone, where the study asks for 800 x 600 at least: told before the consent form.
    phone = browser.new_context(viewport={"width": 390, "height": 740}, has_touch=True)
    page = phone.new_page()
    page.goto(f"{live_server}/s/t")
    wait_screen(page, "too-small")
    assert "800 \u00d7 600" in page.inner_text('[data-screen="too-small"]')
    screenshot(page, "small-screen")
    phone.close()

    # Where the study allows small screens, a phone works by touch.
    make_study(slug="phone", extra='[timing]\nmode = "unlimited"\n[device]\nmin_width = 320\n')
    phone = browser.new_context(viewport={"width": 390, "height": 740}, has_touch=True)
    page = phone.new_page()
    start(page, f"{live_server}/s/phone")
    page.tap('[data-screen="block"] [data-action="continue"]')
    page.wait_for_selector(READY)
    wait_true(page, "document.querySelector('[data-stimulus]').style.visibility === 'visible'")
    screenshot(page, "trial-phone")
    with page.expect_response(lambda r: r.url.endswith("/response")):
        page.tap('[data-choice="real"]')
    phone.close()
    with app.app_context():
        assert db.session.scalars(select(Response.input)).all() == ["touch"]

    # A full study turns newcomers away before anything is stored for them.
    make_study(slug="full", target=1)
    page = browser.new_page()
    for _ in range(2):  # one place per model (two models): the third visitor finds it full
        page.goto(f"{live_server}/s/full")
        page.evaluate("localStorage.clear()")
        page.goto(f"{live_server}/s/full")
        page.click("[data-action=consent]")
        page.click('[data-screen="device"] [data-action="continue"]:not([disabled])')
        wait_screen(page, "instructions")
    page.evaluate("localStorage.clear()")
    page.goto(f"{live_server}/s/full")
    wait_screen(page, "full")
    screenshot(page, "study-full")
    page.close()

    page = browser.new_page()
    page.goto(f"{live_server}/s/no-such-study")
    assert "This link is not valid" in page.inner_text("body")
    screenshot(page, "link-invalid")
    page.close()
