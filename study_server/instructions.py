"""What participants are told: the study's rules in words, and config text as paragraphs.

The runner page (templates/participant/runner.html) states the rules people are
judged by from the study config itself, so the words always match what the
runner does: the exposure, the fixation cross, the answer labels, and about how
long the study takes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from markupsafe import Markup

from study_server.studyconfig import StudyConfig

# The estimate of the study's length (docs/runner.md): a typical answer once the image
# has gone, a typical answer to an image shown until the answer, and the time for the
# consent form, the instructions, the device check and the breaks together.
ANSWER_S = 1.5
UNLIMITED_ANSWER_S = 3.0
READING_S = 90
# How long the runner shows practice feedback (FEEDBACK_MS in static/runner/main.js).
FEEDBACK_S = 0.9


def paragraphs(text: str) -> Markup:
    """Config text as HTML paragraphs: a blank line starts a paragraph, single line breaks
    are reflowed (a TOML string's hard wraps), and every character is escaped."""
    blocks = (" ".join(block.split()) for block in re.split(r"\n[ \t]*\n", text))
    return Markup("").join(Markup("<p>{}</p>").format(block) for block in blocks if block)


def seconds(ms: float) -> str:
    """A duration for people: 500 -> '0.5 seconds', 1000 -> '1 second'."""
    value = f"{ms / 1000:.3g}"
    return f"{value} second" if value == "1" else f"{value} seconds"


@dataclass(frozen=True)
class Rules:
    """The facts the instructions state."""

    cross: bool  # a fixation cross comes before each image
    exposure: str  # how long each image is shown, in a sentence
    mask: bool  # noise covers each image after it
    practice: int  # practice images
    images: int  # all images, practice included
    minutes: int  # about how long the study takes


def rules(config: StudyConfig) -> Rules:
    """What a participant is told about this study before the practice."""
    timing = config.timing
    if timing.mode == "fixed":
        exposure = f"Each image is shown for {seconds(timing.exposure_ms)}, then disappears."
    elif timing.mode == "staircase":
        exposure = (
            "Each image is shown only briefly, and how long it is shown changes "
            "during the study, depending on your answers."
        )
    else:
        exposure = "Each image stays on the screen until you answer."
    return Rules(
        cross=timing.fixation_ms > 0,
        exposure=exposure,
        mask=timing.mask_ms > 0,
        practice=config.practice.trials,
        images=trial_count(config),
        minutes=expected_minutes(config),
    )


def trial_count(config: StudyConfig) -> int:
    """Trials in one participant's list as planned: practice, main images and checks."""
    return (
        config.practice.trials
        + config.design.real_trials
        + config.design.fake_trials
        + config.attention.catch_trials
        + config.attention.instructed_trials
    )


def expected_minutes(config: StudyConfig) -> int:
    """About how long the study takes, in whole minutes (rounded up, at least 1)."""
    timing = config.timing
    if timing.mode == "unlimited":
        answer_s = UNLIMITED_ANSWER_S
    elif timing.mode == "staircase":
        answer_s = timing.staircase.start_ms / 1000 + ANSWER_S
    else:
        answer_s = timing.exposure_ms / 1000 + ANSWER_S
    per_trial_s = (timing.fixation_ms + timing.mask_ms) / 1000 + answer_s
    feedback_s = FEEDBACK_S * config.practice.trials if config.practice.feedback else 0
    total_s = trial_count(config) * per_trial_s + feedback_s + READING_S
    return max(1, math.ceil(total_s / 60))
