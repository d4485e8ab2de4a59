"""Recording a participant's answers exactly once, and closing their session.

Correctness is computed here from the trial's expected answer; the browser
never learns it except as feedback on practice trials when the study asks for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from study_server.assignment import resumed_state
from study_server.cleantext import strip_controls
from study_server.db import db, utcnow
from study_server.lifecycle import admission
from study_server.models import Participant, Response, Trial
from study_server.studies import study_config
from study_server.studyconfig import StudyConfig


class ResponseError(Exception):
    """A request that cannot be honoured: `status` and `code` go into the JSON error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


# name -> (types, low, high); "choice" is checked separately. Anything else is refused.
NUMBER = (int, float)
FIELDS: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "rt_ms": (NUMBER, 0, 3_600_000),
    "onset_ms": (NUMBER, 0, 1e12),
    "displayed_ms": (NUMBER, 0, 3_600_000),
    "frames": ((int,), 0, 1_000_000),
    "frame_ms": (NUMBER, 0, 1000),
    "valid": ((bool,), None, None),
    "invalid_reason": ((str,), 1, 200),
    "input": ((str,), 1, 16),
    "client_sent_at": (NUMBER, 0, 1e14),
    # Staircase trials: the exposure the browser used (its last known staircase value).
    "exposure_ms": (NUMBER, 1, 60_000),
}
REQUIRED = ("choice", "rt_ms")
# Row ids are PostgreSQL integers: a larger id names no trial (and SQLite cannot compare it).
MAX_ID = 2**31 - 1


def storable(text: str) -> bool:
    """Whether both databases can store this text: no NUL, no unpaired surrogate."""
    if "\x00" in text:
        return False  # PostgreSQL refuses NUL in text
    try:
        text.encode("utf-8")  # JSON may carry a lone surrogate escape, which UTF-8 cannot
    except UnicodeEncodeError:
        return False
    return True


def validate(body: Any) -> dict[str, Any]:
    """The response body, checked field by field; ResponseError(400) names the bad field."""
    if not isinstance(body, dict):
        raise ResponseError(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS) - {"choice"})
    if unknown:
        raise ResponseError(400, "unknown_field", f"unknown field {unknown[0]!r}")
    for name in REQUIRED:
        if name not in body:
            raise ResponseError(400, "missing_field", f"{name} is required")
    if body["choice"] not in ("real", "fake"):
        raise ResponseError(400, "bad_field", "choice must be 'real' or 'fake'")
    for name, value in body.items():
        if name == "choice" or (value is None and name not in REQUIRED):
            continue
        types, low, high = FIELDS[name]
        # bool is an int in Python, but true is not a number of milliseconds.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ResponseError(400, "bad_field", f"{name} has the wrong type")
        if isinstance(value, str):
            if not low <= len(value) <= high:
                raise ResponseError(400, "bad_field", f"{name} must be {low} to {high} characters")
            if not storable(value):
                raise ResponseError(400, "bad_field", f"{name} must be UTF-8 text without NUL")
        elif low is not None and not (low <= value <= high and value == value):
            raise ResponseError(400, "bad_field", f"{name} must be between {low} and {high}")
    # Control characters are dropped from text (a retry is cleaned the same way); text that
    # was nothing else counts as left out.
    return {
        name: (strip_controls(value) or None)
        if isinstance(value, str) and name != "choice"
        else value
        for name, value in body.items()
    }


@dataclass(frozen=True)
class Recorded:
    """A stored answer, as the view needs it (the view decides what the browser may see)."""

    trial_id: int
    block: str
    correct: bool
    received_at: datetime


def recorded(response: Response, trial: Trial, participant: Participant) -> Recorded:
    return Recorded(trial.id, trial.block, response.correct, response.received_at)


def record(
    participant: Participant, trial_id: int, body: dict[str, Any], config: StudyConfig
) -> Recorded:
    """Store the answer to one trial, once: the same body again returns the stored answer.

    `config` is the participant's study config (the caller has it already).

    Raises ResponseError: 404 for a trial that is not this participant's, 409 for a
    different answer to an answered trial, a practice answer once the main block began,
    or a new answer in a paused or closed study that stops sessions (lifecycle.admission).
    """
    trial = (
        db.session.get(Trial, trial_id, options=[joinedload(Trial.response)])
        if 0 < trial_id <= MAX_ID
        else None
    )
    if trial is None or trial.participant_id != participant.id:
        raise ResponseError(404, "unknown_trial", "no such trial in this session")
    stored = trial.response
    if stored is not None:
        return recorded(same_or_conflict(stored, body), trial, participant)
    if participant.state in ("completed", "returned"):
        raise ResponseError(409, "session_closed", f"this session is {participant.state}")
    # A paused or closed study with `on_pause = "stop"` takes no more answers.
    refusal = admission(participant.study, newcomer=False)
    if refusal is not None:
        raise ResponseError(refusal.status, refusal.code, refusal.message)
    if participant.state == "abandoned":
        participant.state = resumed_state(participant)
    if trial.block == "practice" and participant.state == "main":
        raise ResponseError(409, "practice_over", "the main block has begun; practice is over")

    adaptive = is_adaptive(trial, config)
    if adaptive:
        low, high = config.timing.staircase.min_ms, config.timing.staircase.max_ms
        exposure = body.get("exposure_ms")
        if exposure is None or not low <= exposure <= high:
            raise ResponseError(
                400, "bad_field", f"exposure_ms between {low} and {high} is required here"
            )
        trial.planned_exposure_ms = float(exposure)

    now = utcnow()
    response = Response(
        trial=trial,
        choice=body["choice"],
        correct=body["choice"] == trial.expected,
        rt_ms=float(body["rt_ms"]),
        onset_ms=body.get("onset_ms"),
        displayed_ms=body.get("displayed_ms"),
        frames=body.get("frames"),
        frame_ms=body.get("frame_ms"),
        valid=body.get("valid", True),
        invalid_reason=body.get("invalid_reason"),
        input=body.get("input"),
        client_sent_at=body.get("client_sent_at"),
        received_at=now,
        body=body,
    )
    db.session.add(response)
    if trial.block == "main":
        participant.state = "main"
    elif participant.state == "consented":
        participant.state = "practice"
    # Only answers keep a place alive (the idle clock ignores reads of the session).
    participant.last_seen_at = now
    # Taken before the commit, which expires every loaded row (reading them again would
    # cost a query each).
    result = recorded(response, trial, participant)
    try:
        db.session.commit()
    except IntegrityError:
        # The same trial answered at the same moment by a retry: the first one stands.
        db.session.rollback()
        stored = db.session.scalar(select(Response).where(Response.trial_id == trial_id))
        if stored is not None:
            return recorded(same_or_conflict(stored, body), stored.trial, participant)
        # The session was returned at the same moment, which deleted this unanswered trial.
        if db.session.get(Trial, trial_id) is None:
            raise ResponseError(409, "session_closed", "this session is returned") from None
        raise
    return result


def is_adaptive(trial: Trial, config: StudyConfig) -> bool:
    """Whether this trial's exposure comes from the participant's staircases.

    Every main trial of a staircase study, attention checks included (they take an
    exposure but do not step a staircase), so the checks look like every other trial.
    """
    return config.timing.mode == "staircase" and trial.block == "main"


def same_or_conflict(stored: Response, body: dict[str, Any]) -> Response:
    """The stored answer if `body` is the same answer again, else ResponseError(409).

    An optional field sent as null is the same as one left out (docs/api.md).
    """
    if _given(stored.body) != _given(body):
        raise ResponseError(409, "conflict", "this trial was already answered differently")
    return stored


def _given(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if value is not None}


def complete(participant: Participant) -> str:
    """Close a session whose main trials are all answered; returns the completion code."""
    if participant.state == "completed":
        return participant.completion_code or ""
    if participant.state == "returned":
        raise ResponseError(409, "session_closed", f"this session is {participant.state}")
    has_trials = db.session.scalar(
        select(Trial.id).where(Trial.participant_id == participant.id).limit(1)
    )
    if has_trials is None:  # the trial list is made when the session is first read
        raise ResponseError(409, "incomplete", "no trial is answered yet")
    missing = db.session.scalar(
        select(func.count())
        .select_from(Trial)
        .outerjoin(Response)
        .where(Trial.participant_id == participant.id, Trial.block == "main", Response.id.is_(None))
    )
    if missing:
        raise ResponseError(409, "incomplete", f"{missing} main trial(s) are not answered yet")
    config = study_config(participant.study)
    participant.completion_code = config.recruitment.completion_code or _personal_code()
    participant.state = "completed"
    participant.completed_at = participant.last_seen_at = utcnow()
    db.session.commit()
    return participant.completion_code


def withdraw(participant: Participant) -> None:
    """The participant gave up (returned the study): their place goes to someone else.

    A returned session never goes on, so its unanswered trials are deleted (the
    answered ones stay, for the export).
    """
    if participant.state == "completed":
        raise ResponseError(409, "session_closed", "this session is completed")
    participant.state = "returned"
    participant.last_seen_at = utcnow()
    answered = exists().where(Response.trial_id == Trial.id)
    db.session.execute(delete(Trial).where(Trial.participant_id == participant.id, ~answered))
    db.session.commit()


def _personal_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))
