"""Interleaved adaptive staircases, replayed from the answers.

A staircase study gives each participant `interleaved` staircases (PsychoPy's
MultiStairHandler in spirit). Every main trial is dealt one of them at sign-up,
at random, never the one the previous main trial used; the trial's exposure is
that staircase's value when it is shown. Only the stimulus trials' valid answers
step a staircase; attention checks take an exposure from one too, so they look
like every other trial.

No staircase value is stored: `exposure_for` replays the stored answers through
the rule every time. Two answers arriving at once therefore cannot lose a step,
and what the server says always follows from what it has stored.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from sqlalchemy import bindparam, select

from study_server.db import db
from study_server.models import Response, Trial
from study_server.studyconfig import Staircase


def deal(rng: random.Random, trials: int, staircases: int) -> list[int]:
    """A staircase index per main trial: random, never the same twice in a row.

    Consecutive trials on different staircases mean the exposure after an answer
    never comes from the staircase that answer just stepped.
    """
    out: list[int] = []
    for _ in range(trials):
        choices = [s for s in range(staircases) if not out or s != out[-1]]
        out.append(rng.choice(choices))
    return out


def replay(rule: Staircase, answers: Iterable[bool]) -> float:
    """The exposure after these answers, in order (True = correct).

    `down_after` correct in a row: shorter by `step_ms`; any error: longer by
    `step_ms`; always within min_ms..max_ms.
    """
    exposure, streak = float(rule.start_ms), 0
    for correct in answers:
        if not correct:
            exposure, streak = min(float(rule.max_ms), exposure + rule.step_ms), 0
        elif streak + 1 >= rule.down_after:
            exposure, streak = max(float(rule.min_ms), exposure - rule.step_ms), 0
        else:
            streak += 1
    return exposure


# Built once: every answer of a staircase study runs it for its reply.
MAIN_ANSWERS = (
    select(Trial.staircase, Trial.kind, Response.correct, Response.valid)
    .outerjoin(Response, Response.trial_id == Trial.id)
    .where(Trial.participant_id == bindparam("participant_id"), Trial.block == "main")
    .order_by(Trial.position)
)


def next_exposure(participant_id: int, rule: Staircase) -> float | None:
    """The exposure of the participant's first unanswered main trial; None when none is left.

    Its staircase is replayed from the valid answers to the stimulus trials dealt
    to it, in trial order.
    """
    rows = db.session.execute(MAIN_ANSWERS, {"participant_id": participant_id}).all()
    upcoming = next((row.staircase for row in rows if row.correct is None), None)
    if upcoming is None:
        return None
    return replay(
        rule,
        (
            row.correct
            for row in rows
            if row.staircase == upcoming
            and row.kind == "stimulus"
            and row.correct is not None
            and row.valid
        ),
    )
