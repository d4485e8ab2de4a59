"""One person's data: what is stored about them (data-subject access), and deleting it all.

A withdrawal deletes every row of the participant, in one transaction: their answers,
trials, model assignments, bearer tokens and the participant row itself. The audit log
keeps a line saying who deleted whom and when, naming the person only by the salted hash
the export uses (HMAC-SHA256 with the study's salt), never by the raw platform id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from percept.errors import PerceptError
from study_server import lifecycle
from study_server.db import db
from study_server.export import hash_platform_id
from study_server.models import (
    Generator,
    Image,
    Participant,
    Response,
    Study,
    Token,
    Trial,
    participant_generator,
)

# The deleted objects are expunged first: nothing in the session needs updating.
UNSYNCED = {"synchronize_session": False}
# Participant columns a data-subject access shows (everything the row holds).
PARTICIPANT_FIELDS = tuple(c.name for c in Participant.__table__.columns)
RESPONSE_FIELDS = tuple(
    c.name for c in Response.__table__.columns if c.name not in ("id", "trial_id")
)


def find_participant(
    study: Study, *, platform_id: str | None = None, number: int | None = None
) -> Participant:
    """The study's participant with this platform id or row number (exactly one of them)."""
    if (platform_id is None) == (number is None):
        raise PerceptError(
            "name the participant with exactly one of --platform-id or --participant"
        )
    query = select(Participant).where(Participant.study_id == study.id)
    if platform_id is not None:
        found = db.session.scalar(query.where(Participant.platform_pid == platform_id))
        what = "this platform id"  # never echo the id itself: it may land in logs
    else:
        found = db.session.scalar(query.where(Participant.id == number))
        what = f"number {number}"
    if found is None:
        raise PerceptError(
            f"study {study.slug!r} has no participant with {what}; "
            "`percept export --study SLUG` lists them (participant_id)"
        )
    return found


def stored_data(participant: Participant) -> dict[str, Any]:
    """Everything the database holds about one participant, as plain JSON-able data.

    Token hashes are left out (they are credentials, not data about the person); each
    token shows when it was made and the MTurk assignment it came with.
    """
    person = {name: _plain(getattr(participant, name)) for name in PARTICIPANT_FIELDS}
    models = [
        f"{dataset}/{model}"
        for dataset, model in db.session.execute(
            select(Generator.dataset, Generator.model)
            .join(participant_generator, participant_generator.c.generator_id == Generator.id)
            .where(participant_generator.c.participant_id == participant.id)
            .order_by(Generator.id)
        )
    ]
    tokens = [
        {
            "created_at": _plain(t.created_at),
            "assignment_id": t.assignment_id,
            "turk_submit_to": t.turk_submit_to,
        }
        for t in db.session.scalars(
            select(Token).where(Token.participant_id == participant.id).order_by(Token.created_at)
        )
    ]
    trials = []
    for trial, public_id, response in db.session.execute(
        select(Trial, Image.public_id, Response)
        .join(Image, Image.id == Trial.image_id)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id == participant.id)
        .order_by(Trial.position)
    ):
        trials.append(
            {
                "trial_id": trial.id,
                "position": trial.position,
                "block": trial.block,
                "kind": trial.kind,
                "image": public_id,
                "expected": trial.expected,
                "planned_exposure_ms": trial.planned_exposure_ms,
                "response": None
                if response is None
                else {name: _plain(getattr(response, name)) for name in RESPONSE_FIELDS},
            }
        )
    return {
        "study": participant.study.slug,
        "participant": person,
        "models": models,
        "tokens": tokens,
        "trials": trials,
    }


def row_counts(participant: Participant) -> dict[str, int]:
    """How many rows of each table belong to the participant."""
    trial_ids = select(Trial.id).where(Trial.participant_id == participant.id)

    def count(query) -> int:
        return db.session.scalar(select(func.count()).select_from(query.subquery()))

    return {
        "response": count(select(Response.id).where(Response.trial_id.in_(trial_ids))),
        "trial": count(trial_ids),
        "participant_generator": count(
            select(participant_generator.c.generator_id).where(
                participant_generator.c.participant_id == participant.id
            )
        ),
        "token": count(select(Token.token_hash).where(Token.participant_id == participant.id)),
        "participant": 1,
    }


def delete_participant(participant: Participant, who: str) -> dict[str, int]:
    """Delete every row of the participant and log it (one transaction); rows per table."""
    study = participant.study
    pid = participant.id
    counts = row_counts(participant)
    hashed = hash_platform_id(study.salt, participant.platform_pid) or "none"
    trial_ids = select(Trial.id).where(Trial.participant_id == pid)
    db.session.expunge(participant)
    db.session.execute(
        delete(Response).where(Response.trial_id.in_(trial_ids)), execution_options=UNSYNCED
    )
    db.session.execute(delete(Trial).where(Trial.participant_id == pid), execution_options=UNSYNCED)
    db.session.execute(
        delete(participant_generator).where(participant_generator.c.participant_id == pid),
        execution_options=UNSYNCED,
    )
    db.session.execute(delete(Token).where(Token.participant_id == pid), execution_options=UNSYNCED)
    db.session.execute(delete(Participant).where(Participant.id == pid), execution_options=UNSYNCED)
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    lifecycle.log(
        study,
        who,
        "participant_delete",
        f"participant {pid}, platform id hash {hashed}; deleted {rows}",
    )
    db.session.commit()
    return counts


def _plain(value: Any) -> Any:
    """JSON-able: datetimes as ISO 8601 UTC."""
    if hasattr(value, "isoformat"):
        return value.isoformat() + "Z"
    return value
