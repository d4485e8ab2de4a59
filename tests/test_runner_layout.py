"""The trial screen fits every window, in Debian's Chromium (Playwright).

One session per stimulus size (64, 256 and 1024 px) goes through four windows:
1280 x 800, 1920 x 1080, 1366 x 768 and a 390 x 844 phone, changed at the breaks.
On every trial the answer buttons and the key reminder lie inside the window (no
scrolling) and the stage is centred in it: its centre is within 2 px of the
window's centre, across and down (the trial screen is the whole window, with equal
bands above and below the stage; docs/runner.md). Screens go to docs/screens/.
Also: progress after a reload, no break in the last 10%, the full-screen pause,
practice feedback naming the answer, and a touch-only device turned away.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import test_runner
from PIL import Image
from sqlalchemy import func, select
from test_runner import (
    ANSWER_WATCH,
    FAST,
    READY,
    current,
    screenshot,
    start,
    stored_responses,
    wait_screen,
    wait_true,
)

from stimuli import ingest
from study_server.db import db
from study_server.models import Participant, Response, Token, Trial
from study_server.studies import create_study
from study_server.studyconfig import load_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The browser tests' fixtures: a SQLite database and a 1280 x 720 page.
db_url = test_runner.db_url
page = test_runner.page

VIEWPORTS = [(1280, 800), (1920, 1080), (1366, 768), (390, 844)]
SHOWN = "document.querySelector('[data-stimulus]').style.visibility === 'visible'"
WAITING = (
    f"{READY}, [data-screen=block]:not([hidden]), [data-screen=break]:not([hidden]), "
    "[data-screen=done]:not([hidden]), [data-screen=saving]:not([hidden])"
)
# A study of 2 practice and 8 main trials (4 real, 3 fake, 1 instructed check) with a
# break every 2 main trials: after main trials 2, 4 and 6, and the window changes at each.
FIT_STUDY = """
slug = "{slug}"
title = "Fit"
stimuli = "{stimuli}"
models = ["default/gan"]
consent = "I agree."

[design]
real_trials = 4
fake_trials = 3

[practice]
trials = 2

[attention]
catch_trials = 0
instructed_trials = 1

[timing]
mode = "unlimited"
fixation_ms = 100

[response]
break_every = 2
{response}

[device]
min_width = 320
min_height = 480

[display]
{display}

[recruitment]
target_per_model = 5

[exclusions]
max_answers_per_second = 0
"""

LAYOUT_JS = """() => {
  const box = (selector) => {
    const r = document.querySelector(selector).getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
  };
  return {
    stage: box('[data-stage]'), image: box('[data-stimulus]'), prompt: box('[data-prompt]'),
    reminder: box('[data-key-reminder]'), real: box('[data-choice=real]'),
    fake: box('[data-choice=fake]'), width: innerWidth, height: innerHeight,
    scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
  };
}"""


def viewport(size: tuple[int, int]) -> dict[str, int]:
    return {"width": size[0], "height": size[1]}


def mosaic(size: int, seed: int) -> np.ndarray:
    """An 8 x 8 mosaic of flat colours: quick to encode, even at 1024 px."""
    tiles = np.random.default_rng(seed).integers(30, 226, (8, 8, 3), dtype=np.uint8)
    return np.kron(tiles, np.ones((size // 8, size // 8, 1), dtype=np.uint8))


def make_fit_study(app, tmp_path: Path, size: int, display: str = "", response: str = "") -> str:
    root = tmp_path / f"images-{size}"
    for kind, count, seed in (("real", 7, 0), ("gan", 6, 100)):
        (root / kind).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(mosaic(size, seed + i)).save(root / kind / f"{i}.png")
    ingest(root / "real", {"gan": root / "gan"}, root / "stim", size=size, practice=1, catch=1)
    slug = f"fit-{size}"
    path = tmp_path / f"{slug}.toml"
    path.write_text(
        FIT_STUDY.format(slug=slug, stimuli=root / "stim", display=display, response=response)
    )
    with app.app_context():
        create_study(load_config(path))
        db.session.remove()
    return slug


def assert_fits(layout: dict) -> None:
    """Every control inside the window, nothing to scroll, the stage centred in the window."""
    width, height = layout["width"], layout["height"]
    for name in ("prompt", "reminder", "real", "fake", "stage"):
        box = layout[name]
        assert box["left"] >= 0 and box["right"] <= width, (name, layout)
        assert box["top"] >= 0 and box["bottom"] <= height, (name, layout)
    assert layout["scroll"] == [width, height], layout
    stage, image = layout["stage"], layout["image"]
    assert image == stage
    assert abs((image["left"] + image["right"]) / 2 - width / 2) <= 2, layout
    assert abs((stage["top"] + stage["bottom"]) / 2 - height / 2) <= 2, layout
    assert layout["prompt"]["bottom"] <= stage["top"] <= stage["bottom"]
    assert stage["bottom"] <= layout["reminder"]["top"] < layout["real"]["top"]


def run_through_windows(page, size: int) -> dict[tuple[int, int], list[int]]:
    """Answer every trial, one window per part of the main block; the stage side shown on
    each trial, per window. Checks the fit on every trial and saves one screen per window."""
    sides: dict[tuple[int, int], list[int]] = {}
    shot: set[tuple[int, int]] = set()
    window, main = 0, False
    while True:
        page.wait_for_selector(WAITING, timeout=20_000)
        screen = current(page)
        if screen in ("done", "saving"):
            break
        if screen in ("block", "break"):
            main = main or (screen == "block" and bool(sides))
            if screen == "break":
                window += 1
                page.set_viewport_size(viewport(VIEWPORTS[window]))
            page.keyboard.press("Enter")
            continue
        wait_true(page, SHOWN)
        layout = page.evaluate(LAYOUT_JS)
        assert (layout["width"], layout["height"]) == VIEWPORTS[window]
        assert_fits(layout)
        side = layout["stage"]["right"] - layout["stage"]["left"]
        sides.setdefault(VIEWPORTS[window], []).append(side)
        if main and VIEWPORTS[window] not in shot:
            shot.add(VIEWPORTS[window])
            screenshot(page, f"trial-{VIEWPORTS[window][0]}x{VIEWPORTS[window][1]}-{size}px")
        prompt = page.inner_text("[data-prompt]")
        choice = "real" if "REAL" in prompt else "fake" if "FAKE" in prompt else "real"
        page.evaluate(ANSWER_WATCH)
        page.keyboard.press({"real": "f", "fake": "j"}[choice])
        page.wait_for_function("window.answerSeen === true")
        if not main:
            # Practice feedback says what the image was, in the study's own words.
            wait_true(
                page,
                "getComputedStyle(document.querySelector('[data-feedback]'))"
                ".visibility === 'visible'",
            )
            text = " ".join(page.inner_text("[data-feedback]").split())
            assert text in (
                f"Correct This image was {LABELS[choice]}",
                f"Not quite This image was {LABELS[other(choice)]}",
            ), text
    assert window == 3
    return sides


LABELS = {"real": "Real", "fake": "Fake"}


def other(choice: str) -> str:
    return "fake" if choice == "real" else "real"


@pytest.mark.parametrize(
    ("size", "display"),
    [
        (64, 'background = "grey"'),
        (256, ""),
        (1024, "size_px = 600"),
    ],
)
def test_the_trial_fits_every_window(app, live_server, browser, tmp_path, size, display):
    slug = make_fit_study(app, tmp_path, size, display)
    context = browser.new_context(viewport=viewport(VIEWPORTS[0]))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    start(page, f"{live_server}/s/{slug}")
    sides = run_through_windows(page, size)
    context.close()
    assert not errors, errors
    # Two practice trials and two main ones in the first window, two in each other.
    assert [len(sides[v]) for v in VIEWPORTS] == [4, 2, 2, 2]
    for window, shown in sides.items():
        assert len(set(shown)) == 1, (window, shown)  # the same window: the same size
    side = {window: shown[0] for window, shown in sides.items()}
    if size == 64:
        # Three times the image (max_upscale) fits everywhere, the phone too.
        assert set(side.values()) == {192}
    elif size == 256:
        # Whole multiples only: as large as fits, never more than three times.
        assert all(s % 256 == 0 and 256 <= s <= 768 for s in side.values()), side
        assert side[(1920, 1080)] == 768
    else:
        # Shrunk to fit where 600 px does not; 600 px where it does.
        assert side[(1920, 1080)] == 600
        assert all(s <= 600 for s in side.values()) and side[(390, 844)] == 358, side


def test_progress_breaks_and_full_screen(app, make_study, live_server, page):
    # 23 main trials, a break every 7: after 7 and 14, but not after 21 (the last 10%).
    make_study(extra=FAST + "[response]\nbreak_every = 7\n[device]\nfullscreen = true\n")
    start(page, f"{live_server}/s/t")
    assert page.evaluate("!!document.fullscreenElement")
    breaks = answer_all(page, 4 + 6)
    deadline = time.monotonic() + 15
    while stored_responses(app) < 10:
        assert time.monotonic() < deadline, "the answers did not reach the server"
        page.wait_for_timeout(50)
    page.reload()
    page.wait_for_selector('[data-screen="device"] [data-action="continue"]:not([disabled])')
    page.keyboard.press("Enter")  # back to full screen, by a click or a key on the button
    page.wait_for_selector(READY)
    # Restored from the server after the reload: image 7 is next, 6 of 23 done.
    assert page.inner_text("[data-progress-text]") == "Image 7 of 23"
    bar = page.evaluate("document.querySelector('[data-progress]').style.width")
    assert abs(float(bar.rstrip("%")) - 100 * 6 / 23) < 0.01

    # Leaving full screen (Esc, or here the page itself) during image 7: the trial goes
    # on, and so does the break after it, but the next trial waits.
    page.evaluate("document.exitFullscreen()")
    wait_true(page, "!document.fullscreenElement")
    assert answer_all(page, 1) == []
    wait_screen(page, "break")
    breaks.append(int(page.inner_text("[data-break-done]")))
    page.keyboard.press("Enter")
    wait_screen(page, "fullscreen")
    screenshot(page, "fullscreen-left")
    assert page.is_hidden('[data-screen="trial"]')
    page.click('[data-action="fullscreen"]')
    page.wait_for_selector(READY)
    assert page.evaluate("!!document.fullscreenElement")
    breaks += answer_all(page)
    wait_screen(page, "done")
    assert breaks == [7, 14]


def answer_all(page, count: int | None = None) -> list[int]:
    """Answer `count` trials (all when None), following instructed checks; the main
    trials done at each break seen."""
    breaks: list[int] = []
    done = 0
    while count is None or done < count:
        page.wait_for_selector(WAITING, timeout=20_000)
        screen = current(page)
        if screen in ("done", "saving"):
            break
        if screen in ("block", "break"):
            if screen == "break":
                breaks.append(int(page.inner_text("[data-break-done]")))
            page.keyboard.press("Enter")
            continue
        prompt = page.inner_text("[data-prompt]")
        page.evaluate(ANSWER_WATCH)
        page.keyboard.press("j" if "FAKE" in prompt else "f")
        page.wait_for_function("window.answerSeen === true")
        done += 1
    return breaks


def test_a_touch_only_device_is_told_before_consent(app, make_study, live_server, browser):
    make_study(extra="[device]\nmin_width = 320\nallow_touch_only = false\n")
    with app.app_context():
        before = [
            db.session.scalar(select(func.count()).select_from(m))
            for m in (Participant, Trial, Response, Token)
        ]
        db.session.remove()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = phone.new_page()
    page.goto(f"{live_server}/s/t")
    wait_screen(page, "unsupported")
    assert "needs a mouse or trackpad" in page.inner_text('[data-screen="unsupported"]')
    assert page.is_hidden('[data-screen="consent"]')
    screenshot(page, "device-unsupported")
    phone.close()
    # A computer (a fine pointer) may take the same study.
    computer = browser.new_context(viewport={"width": 1280, "height": 720})
    page = computer.new_page()
    page.goto(f"{live_server}/s/t")
    wait_screen(page, "consent")
    computer.close()
    with app.app_context():
        after = [
            db.session.scalar(select(func.count()).select_from(m))
            for m in (Participant, Trial, Response, Token)
        ]
        db.session.remove()
    assert after == before
