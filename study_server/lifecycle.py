"""A study's life: draft, open, paused, closed; its targets; who may start or go on; the
audit log.

Only an open study takes newcomers. Participants already in a session of a paused or
closed study may finish unless the study's `[recruitment] on_pause` is "stop". Every
change of state or of a target is a line of the audit log (table audit_log), with who
made it and when.
Nothing here knows about HTTP: `admission` says why someone may not start or go on, and
the caller turns that into its own error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from percept.errors import PerceptError
from study_server.db import db, utcnow
from study_server.models import AuditEntry, Study
from study_server.studies import study_config
from study_server.studyconfig import StudyConfig

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "open": (("draft", "closed"), "open"),
    "pause": (("open",), "paused"),
    "resume": (("paused",), "open"),
    "close": (("draft", "open", "paused"), "closed"),
}
# What to run instead, for each state, when an action does not apply to it.
NEXT_STEP = {
    "draft": "open",
    "open": "pause or close",
    "paused": "resume or close",
    "closed": "open",
}
# `who` of changes made with the `percept` command.
CLI = "cli"
# The largest participant target of a model (as `recruitment.target_per_model` allows).
MAX_TARGET = 100_000


@dataclass(frozen=True)
class Refusal:
    """Why someone may not start (or go on): an HTTP status, an error code and a sentence."""

    status: int
    code: str
    message: str


REFUSALS = {
    "draft": Refusal(409, "study_draft", "this study has not opened yet"),
    "paused": Refusal(409, "study_paused", "this study is paused; please try again later"),
    "closed": Refusal(409, "study_closed", "this study is closed and takes no more participants"),
}


def admission(study: Study, *, newcomer: bool) -> Refusal | None:
    """None when the study lets this person start (newcomer) or go on; else why not.

    Newcomers need an open study. Someone with a session goes on in a paused or closed
    study unless its `[recruitment] on_pause` is "stop" (`going_on`). The sign-up
    (assignment.assign) and any eligibility check call this one function; the answers
    (responses.record), which have the study's state and config already, call `going_on`.
    """
    if study.state == "open":
        return None
    if newcomer:
        return REFUSALS[study.state]
    return going_on(study.state, study_config(study))


def going_on(state: str, config: StudyConfig) -> Refusal | None:
    """None when someone with a session may go on in a study in `state`; else why not."""
    if state in ("paused", "closed") and config.recruitment.on_pause == "stop":
        return REFUSALS[state]
    return None


def change_state(study: Study, action: str, who: str) -> str:
    """Apply `action` (open, pause, resume, close) to the study, log it, commit; the new state.

    Raises PerceptError when the action does not apply to the study's current state.
    """
    if action not in TRANSITIONS:
        raise PerceptError(f"{action!r} is not a study action; use {', '.join(TRANSITIONS)}")
    starts, goal = TRANSITIONS[action]
    # Read the state afresh: another worker or the CLI may have changed it.
    db.session.refresh(study, ["state"])
    before = study.state
    if before not in starts:
        raise PerceptError(
            f"study {study.slug!r} is {before}, so it cannot {action}; it can: {NEXT_STEP[before]}"
        )
    study.state = goal
    log(study, who, action, f"{before} -> {goal}")
    db.session.commit()
    return goal


def parse_target(text: str) -> int:
    """A target as a person types it (CLI argument, dashboard field): a whole number 0..MAX."""
    text = text.strip()
    # ASCII digits only (str.isdigit takes "²" too); six of them cover MAX_TARGET.
    if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) > MAX_TARGET:
        raise _bad_target(text)
    return int(text)


def _bad_target(value: object) -> PerceptError:
    return PerceptError(f"the target must be a whole number from 0 to {MAX_TARGET}, got {value!r}")


def set_target(study: Study, target: int, who: str, model: str | None = None) -> list[str]:
    """Set the participant target of one model (`dataset/model`) or, with None, of every
    model of the study; log old -> new in the audit log, commit. Lines "model: old -> new".

    Raises PerceptError for a target outside 0..MAX_TARGET or a model the study does not
    have (naming the models it has). 0 takes no more newcomers for that model.
    """
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target <= MAX_TARGET:
        raise _bad_target(target)
    generators = list(study.generators)
    if model is not None:
        generators = [g for g in generators if g.name == model]
        if not generators:
            names = ", ".join(g.name for g in study.generators)
            raise PerceptError(f"study {study.slug!r} has no model {model!r}; its models: {names}")
    changes = []
    for generator in generators:
        changes.append(f"{generator.name}: {generator.target} -> {target}")
        generator.target = target
    log(study, who, "set_target", "; ".join(changes))
    db.session.commit()
    return changes


def actions_from(state: str) -> list[str]:
    """The actions that apply to a study in this state, in TRANSITIONS order."""
    return [action for action, (starts, _) in TRANSITIONS.items() if state in starts]


def log(study: Study, who: str, action: str, detail: str = "") -> AuditEntry:
    """Add one audit line (committed with the caller's change)."""
    entry = AuditEntry(at=utcnow(), who=who, study_id=study.id, action=action, detail=detail)
    db.session.add(entry)
    return entry


def audit_lines(study: Study) -> list[AuditEntry]:
    """The study's audit log, oldest first."""
    return list(
        db.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.study_id == study.id)
            .order_by(AuditEntry.at, AuditEntry.id)
        )
    )
