"""The rules a participant's answers are judged by, defined once for every layer.

Which trial is invalid, what share of a participant's trials that may be, and how
fast a person can answer: the answer endpoint (which stores `valid`), the admin
dashboard and the export's `excluded` column (study_server/exclusions.py),
`percept human` (analysis/exclusions.py) and the simulated crowd all call these
functions, so they can never disagree.

It lives here, beside percept.errors, because study_server may not import analysis
nor analysis study_server (tests/test_layout.py): this is the one module both may
import besides percept.errors. For the same reason it uses the standard library
only (the study server runs without numpy or pandas); the analysis applies the
functions row by row.

A missing value (None, or NaN from a table) is "not reported".
"""

from __future__ import annotations

import math
from datetime import datetime

# --- Display timing ------------------------------------------------------------------------


def _missing(value: float | None) -> bool:
    return value is None or value != value  # NaN is the only value unequal to itself


def planned_frames(exposure_ms: float, frame_ms: float) -> int:
    """Display frames an exposure asks for at this frame interval: the nearest whole
    number, at least one, halves rounded up (as the runner's `framesFor`, JS Math.round)."""
    x = exposure_ms / frame_ms
    whole = math.floor(x)
    return max(1, whole + (x - whole >= 0.5))


def frame_missed(
    planned_exposure_ms: float | None, frame_ms: float | None, frames: float | None
) -> bool:
    """Whether a timed display was shown for other than the frames it asked for.

    `frames` is the count the browser measured; an unlimited exposure (None) or a
    trial that reported no frame count or frame interval is never a miss.
    """
    if _missing(planned_exposure_ms) or _missing(frame_ms) or _missing(frames) or frame_ms <= 0:
        return False
    return frames != planned_frames(planned_exposure_ms, frame_ms)


def trial_invalid(
    valid: bool | None,
    planned_exposure_ms: float | None,
    frame_ms: float | None,
    frames: float | None,
) -> bool:
    """Whether an answered trial is invalid: flagged (`valid` false: tab hidden, window
    blurred, or a frame miss the server stored) or a display that missed its frames.

    The frame check is repeated here so that answers stored before the server decided
    it (and exports of them) are judged by the same rule. `valid` missing counts as valid.
    """
    flagged = not _missing(valid) and not valid
    return flagged or frame_missed(planned_exposure_ms, frame_ms, frames)


# --- The invalid-trial exclusion rule ------------------------------------------------------


def invalid_fraction(invalid: int, answered: int) -> float:
    """Share of a participant's answered main-block trials (repeats and attention checks
    included) that are invalid; 0 when none is answered."""
    return invalid / answered if answered else 0.0


def too_many_invalid(invalid: int, answered: int, max_fraction: float | None) -> str | None:
    """Why a participant's share of invalid main trials excludes them, else None.

    Excluded when `invalid_fraction` exceeds `max_fraction`; None switches the rule off.
    """
    share = invalid_fraction(invalid, answered)
    if max_fraction is None or share <= max_fraction:
        return None
    return f"{share:.0%} of main trials invalid (max {max_fraction:.0%})"


# --- Pacing ---------------------------------------------------------------------------------

# The derived pacing rule allows answers up to 1/0.8 = 1.25 times faster than the
# runner can show trials: room for frame rounding and network jitter.
PACE_MARGIN = 0.8


def min_duration_ms(fixation_ms: float, planned_exposure_ms: float | None, mask_ms: float) -> float:
    """The shortest time a trial takes in the runner: fixation + exposure + mask.

    An unlimited exposure (None) counts as 0. The export writes this per trial
    (`min_duration_ms`), so `percept human` applies the same rule to an export.
    """
    return fixation_ms + (planned_exposure_ms or 0.0) + mask_ms


def too_fast(
    arrivals: list[datetime],
    min_durations_ms: list[float],
    max_answers_per_second: float | None,
    min_session_seconds: float,
) -> str | None:
    """Why these main-block answers came faster than a person can give them, else None.

    `arrivals` are the server's own arrival times of the answered main trials, in
    order (ties in trial order), and `min_durations_ms` each trial's `min_duration_ms`.
    The span from the first to the last arrival must be at least `min_session_seconds`,
    and:
    - with `max_answers_per_second` None, at least PACE_MARGIN times the sum of the
      minimum durations of every answered trial but the first;
    - with a number, (answers - 1) / span may not exceed it; 0 switches it off.
    """
    if len(arrivals) < 2:
        return None
    span = (arrivals[-1] - arrivals[0]).total_seconds()
    if min_session_seconds and span < min_session_seconds:
        return f"main block answered in {span:.1f} s (min {min_session_seconds:g} s)"
    if max_answers_per_second is None:
        least = PACE_MARGIN * sum(min_durations_ms[1:]) / 1000
        if span < least:
            return (
                f"{len(arrivals)} answers in {span:.1f} s, faster than the trials can be "
                f"shown (min {least:.1f} s)"
            )
    elif max_answers_per_second:
        rate = (len(arrivals) - 1) / span if span > 0 else float("inf")
        if rate > max_answers_per_second:
            return f"{rate:.1f} answers per second (max {max_answers_per_second:g})"
    return None
