"""Recording a participant's answers exactly once, and closing their session.

Correctness is computed here from the trial's expected answer; the browser
never learns it except as feedback on practice trials when the study asks for it.
Validity too is decided here (percept.rules): an invalid main-block answer adds a
repeat of its image at the end of the block when the study asks for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, bindparam, cast, delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from percept.rules import frame_missed
from study_server.assignment import resumed_state
from study_server.cleantext import strip_controls
from study_server.db import db, utcnow
from study_server.lifecycle import going_on
from study_server.models import Participant, Response, Study, Token, Trial
from study_server.studies import stored_config, study_config
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
    # The answer was invalid and its image comes again at the end of the block.
    repeat: bool


@dataclass(frozen=True)
class TrialRow:
    """The columns of a trial that answering it reads (named as on Trial)."""

    id: int
    participant_id: int
    block: str
    kind: str
    expected: str
    image_id: int
    planned_exposure_ms: float | None
    staircase: int | None


@dataclass(frozen=True)
class StoredAnswer:
    """The columns of a stored answer that a replay of it needs."""

    body: dict[str, Any]
    correct: bool
    valid: bool
    received_at: datetime


@dataclass(frozen=True)
class Answering:
    """Who answers which trial, in one query (`answering`): all that `record` checks."""

    participant_id: int
    state: str  # the participant's
    study_state: str
    config: StudyConfig
    trial: TrialRow | None  # None: no such trial in this session
    stored: StoredAnswer | None  # None: not answered yet


# The answer path's statements, built once (building one costs more than running it on
# SQLite) on the tables themselves (no ORM step between them and the database).
RESPONSE, TRIAL, PARTICIPANT = Response.__table__, Trial.__table__, Participant.__table__
STUDY, TOKEN = Study.__table__, Token.__table__
TRIAL_COLUMNS = [TRIAL.c[name] for name in TrialRow.__dataclass_fields__]
STORED_COLUMNS = [RESPONSE.c[name] for name in StoredAnswer.__dataclass_fields__]
ANSWERING = (
    select(
        PARTICIPANT.c.id,
        PARTICIPANT.c.state,
        STUDY.c.id,
        STUDY.c.slug,
        STUDY.c.state,
        # The text itself: the parsed config is cached by it (studies.stored_config).
        cast(STUDY.c.config, Text),
        *TRIAL_COLUMNS,
        *STORED_COLUMNS,
    )
    .select_from(
        TOKEN.join(PARTICIPANT, PARTICIPANT.c.id == TOKEN.c.participant_id)
        .join(STUDY, STUDY.c.id == PARTICIPANT.c.study_id)
        .outerjoin(
            TRIAL,
            and_(TRIAL.c.id == bindparam("trial_id"), TRIAL.c.participant_id == PARTICIPANT.c.id),
        )
        .outerjoin(RESPONSE, RESPONSE.c.trial_id == TRIAL.c.id)
    )
    .where(TOKEN.c.token_hash == bindparam("token_hash"))
)
STORED = select(*STORED_COLUMNS).where(RESPONSE.c.trial_id == bindparam("trial_id"))
# One statement decides who answered first: a second answer to the trial inserts nothing.
INSERT_ANSWER = {
    name: build(RESPONSE)
    .on_conflict_do_nothing(index_elements=["trial_id"])
    .returning(RESPONSE.c.id)
    for name, build in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
SEEN = (
    update(PARTICIPANT)
    .where(PARTICIPANT.c.id == bindparam("participant_id"))
    .values(state=bindparam("new_state"), last_seen_at=bindparam("now"))
)
# Repeats: one at a time per participant (the lock), placed after the last trial.
LOCK_PARTICIPANT = (
    select(PARTICIPANT.c.id)
    .where(PARTICIPANT.c.id == bindparam("participant_id"))
    .with_for_update()
)
PLACES = (
    select(TRIAL.c.position, TRIAL.c.image_id, TRIAL.c.repeat_of, TRIAL.c.staircase)
    .where(TRIAL.c.participant_id == bindparam("participant_id"))
    .order_by(TRIAL.c.position)
)
INSERT_TRIAL = insert(TRIAL)
SET_EXPOSURE = (
    update(TRIAL)
    .where(TRIAL.c.id == bindparam("trial_id"))
    .values(planned_exposure_ms=bindparam("exposure"))
)


def answering(token_hash: str, trial_id: int) -> Answering | None:
    """The participant whose token has this hash, their study, and their trial `trial_id`
    with its stored answer, in one query; None for an unknown token."""
    # 0 names no trial (ids start at 1), nor does an id larger than the databases' integers
    # (SQLite cannot compare it).
    key = trial_id if 0 < trial_id <= MAX_ID else 0
    row = db.session.execute(ANSWERING, {"token_hash": token_hash, "trial_id": key}).first()
    if row is None:
        return None
    participant_id, state, study_id, slug, study_state, text = row[:6]
    trial = row[6 : 6 + len(TRIAL_COLUMNS)]
    stored = row[6 + len(TRIAL_COLUMNS) :]
    return Answering(
        participant_id,
        state,
        study_state,
        stored_config(study_id, slug, text),
        TrialRow(*trial) if trial[0] is not None else None,
        StoredAnswer(*stored) if stored[0] is not None else None,
    )


def stored_answer(trial_id: int) -> StoredAnswer | None:
    row = db.session.execute(STORED, {"trial_id": trial_id}).first()
    return StoredAnswer(*row) if row is not None else None


def replayed(stored: StoredAnswer, trial: TrialRow, body: dict[str, Any]) -> Recorded:
    """The stored answer to `trial` if `body` is the same again (else 409), as first told."""
    same_or_conflict(stored, body)
    repeat = not stored.valid and (
        db.session.scalar(
            select(Trial.id)
            .where(Trial.participant_id == trial.participant_id, Trial.repeat_of == trial.id)
            .limit(1)
        )
        is not None
    )
    return Recorded(trial.id, trial.block, stored.correct, stored.received_at, repeat)


def record(answer: Answering, body: dict[str, Any], tries: int = 5) -> Recorded:
    """Store the answer to one trial, once: the same body again returns the stored answer.

    `answer` is what `answering` found for the participant's token and the trial. An
    invalid main-block answer also adds its repeat (`repeat_trial`) in the same
    transaction, so a retried answer never adds a second one.

    Raises ResponseError: 404 for a trial that is not this participant's, 409 for a
    different answer to an answered trial, a practice answer once the main block began,
    or a new answer in a paused or closed study that stops sessions (lifecycle.going_on).
    """
    trial, config = answer.trial, answer.config
    if trial is None:
        raise ResponseError(404, "unknown_trial", "no such trial in this session")
    if answer.stored is not None:
        return replayed(answer.stored, trial, body)
    state = answer.state
    if state in ("completed", "returned"):
        raise ResponseError(409, "session_closed", f"this session is {state}")
    # A paused or closed study with `on_pause = "stop"` takes no more answers.
    refusal = going_on(answer.study_state, config)
    if refusal is not None:
        raise ResponseError(refusal.status, refusal.code, refusal.message)
    if state == "abandoned":
        state = resumed_state(answer.participant_id)
    if trial.block == "practice" and state == "main":
        raise ResponseError(409, "practice_over", "the main block has begun; practice is over")

    adaptive = is_adaptive(trial, config)
    if adaptive:
        low, high = config.timing.staircase.min_ms, config.timing.staircase.max_ms
        exposure = body.get("exposure_ms")
        if exposure is None or not low <= exposure <= high:
            raise ResponseError(
                400, "bad_field", f"exposure_ms between {low} and {high} is required here"
            )
        trial = replace(trial, planned_exposure_ms=float(exposure))

    valid, reason = validity(trial, body)
    now = utcnow()
    correct = body["choice"] == trial.expected
    values = {
        "trial_id": trial.id,
        "choice": body["choice"],
        "correct": correct,
        "rt_ms": float(body["rt_ms"]),
        "onset_ms": body.get("onset_ms"),
        "displayed_ms": body.get("displayed_ms"),
        "frames": body.get("frames"),
        "frame_ms": body.get("frame_ms"),
        "valid": valid,
        "invalid_reason": reason,
        "input": body.get("input"),
        "client_sent_at": body.get("client_sent_at"),
        "received_at": now,
        "body": body,
    }
    # The checks read in a transaction of their own, ended here; the writes below hold
    # theirs only for their own statements. A return committed in between deleted this
    # unanswered trial, which fails the insert (a 409 below).
    db.session.commit()
    repeat = None
    try:
        # A retry that arrived at the same moment inserts nothing here and is answered
        # with the stored row.
        insert_answer = INSERT_ANSWER[db.session.get_bind().dialect.name]
        if db.session.execute(insert_answer, values).first() is None:
            db.session.rollback()
            stored = stored_answer(trial.id)
            if stored is None:  # answered and then deleted at once (a withdrawal)
                raise ResponseError(409, "session_closed", "this session is returned")
            return replayed(stored, trial, body)
        if adaptive:
            db.session.execute(
                SET_EXPOSURE, {"trial_id": trial.id, "exposure": trial.planned_exposure_ms}
            )
        if not valid and trial.block == "main" and config.timing.repeat_invalid:
            repeat = repeat_trial(trial, config)
            if repeat is not None:
                db.session.execute(INSERT_TRIAL, repeat)
        if trial.block == "main":
            state = "main"
        elif state == "consented":
            state = "practice"
        # Only answers keep a place alive (the idle clock ignores reads of the session).
        db.session.execute(
            SEEN, {"participant_id": answer.participant_id, "new_state": state, "now": now}
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        stored = stored_answer(trial.id)
        if stored is not None:
            return replayed(stored, trial, body)
        # The session was returned at the same moment, which deleted this unanswered trial.
        if db.session.get(Trial, trial.id) is None:
            raise ResponseError(409, "session_closed", "this session is returned") from None
        if repeat is not None and tries > 1:
            # Another trial's repeat took the same place at the same moment: place it again.
            return record(answer, body, tries - 1)
        raise
    return Recorded(trial.id, trial.block, correct, now, repeat is not None)


def validity(trial: TrialRow, body: dict[str, Any]) -> tuple[bool, str | None]:
    """(valid, invalid_reason) to store: the browser's flag (`hidden`, `blur`), and the
    server's own check that the display showed the frames it planned (`frames`).

    The planned exposure is the trial's (for a staircase trial, the one the browser
    used); percept.rules.frame_missed is the rule the exclusions apply too.
    """
    flagged = body.get("valid") is False
    missed = frame_missed(trial.planned_exposure_ms, body.get("frame_ms"), body.get("frames"))
    reason = body.get("invalid_reason")
    if missed and not (flagged and reason):
        reason = "frames"
    return not (flagged or missed), reason


def repeat_trial(trial: TrialRow, config: StudyConfig) -> dict[str, Any] | None:
    """The values of a new trial at the end of the participant's list (the main block is
    last) showing `trial`'s image again, or None when that image already has `max_repeats`
    repeats.

    Same kind and expected answer (so an instructed check asks the same); a staircase
    trial gets its exposure when shown, from the staircase of the trial it repeats, or
    the next one when that one's is the last trial's (never the same twice in a row).
    """
    # One repeat at a time per participant, so two misses at once do not pick the same
    # place (a row lock on PostgreSQL; SQLite has one writer, and `record` tries again).
    db.session.execute(LOCK_PARTICIPANT, {"participant_id": trial.participant_id})
    rows = db.session.execute(PLACES, {"participant_id": trial.participant_id}).all()
    repeats = sum(r.image_id == trial.image_id and r.repeat_of is not None for r in rows)
    if repeats >= config.timing.max_repeats:
        return None
    last = rows[-1]
    staircase = trial.staircase
    if staircase is not None and staircase == last.staircase:
        staircase = (staircase + 1) % config.timing.staircase.interleaved
    return {
        "participant_id": trial.participant_id,
        "position": last.position + 1,
        "block": trial.block,
        "kind": trial.kind,
        "image_id": trial.image_id,
        "expected": trial.expected,
        "planned_exposure_ms": None if is_adaptive(trial, config) else trial.planned_exposure_ms,
        "staircase": staircase,
        "repeat_of": trial.id,
    }


def is_adaptive(trial: Trial | TrialRow, config: StudyConfig) -> bool:
    """Whether this trial's exposure comes from the participant's staircases.

    Every main trial of a staircase study, attention checks included (they take an
    exposure but do not step a staircase), so the checks look like every other trial.
    """
    return config.timing.mode == "staircase" and trial.block == "main"


def same_or_conflict(stored: StoredAnswer, body: dict[str, Any]) -> StoredAnswer:
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
