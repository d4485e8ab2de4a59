"""The numbers behind the admin pages: per-model progress and per-participant quality.

Read-only queries; nothing here knows about HTTP. Exclusions come from
`study_server.exclusions`, so the dashboard and the export always agree on who is out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select

from study_server.db import db, utcnow
from study_server.exclusions import (
    ParticipantStats,
    excluded_ids,
    exclusion_reasons,
    participant_stats,
)
from study_server.models import (
    ACTIVE_STATES,
    Generator,
    Participant,
    Response,
    Study,
    Trial,
    participant_generator,
)
from study_server.studies import study_config

# The study page lists at most this many participants, newest first; the export has them all.
PARTICIPANT_ROWS = 500


@dataclass
class Checks:
    """Answered attention checks (catch and instructed trials) and how many were wrong."""

    answered: int = 0
    failed: int = 0

    def add(self, other: Checks) -> None:
        self.answered += other.answered
        self.failed += other.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.answered if self.answered else None


@dataclass
class ModelRow:
    """One model (generator) of a study on the dashboard."""

    generator_id: int
    name: str
    target: int
    active: int = 0
    completed: int = 0
    excluded: int = 0
    checks: Checks = field(default_factory=Checks)

    @property
    def usable(self) -> int:
        """Completed and not excluded: what the analysis uses, and with `replace_excluded`
        what counts against the target (exclusions.usable_counts)."""
        return self.completed - self.excluded


@dataclass
class StudyTotals:
    """Distinct participants of a study by status (a participant may judge several models)."""

    participants: int = 0
    active: int = 0
    idle: int = 0
    completed: int = 0
    excluded: int = 0
    abandoned: int = 0
    returned: int = 0
    checks: Checks = field(default_factory=Checks)


@dataclass
class StudySummary:
    slug: str
    title: str
    created_at: datetime
    idle_timeout_minutes: int
    models: list[ModelRow]
    totals: StudyTotals
    # draft, open, paused or closed (study_server/lifecycle.py)
    state: str = "open"
    # pilot or main
    kind: str = "main"


@dataclass
class ParticipantRow:
    """One participant on the study page. Deliberately no token, token hash or platform id."""

    id: int
    state: str
    idle: bool
    models: list[str]
    created_at: datetime
    last_seen_at: datetime
    answered_main: int
    main_trials: int
    checks: Checks
    # None while the participant has not completed: exclusions apply to completed sessions.
    excluded: bool | None
    reasons: list[str]


def all_studies() -> list[Study]:
    """Every study, oldest first."""
    return list(db.session.scalars(select(Study).order_by(Study.id)))


def summarise(study: Study, now: datetime | None = None) -> StudySummary:
    """Per-model and whole-study counts for one study, as of `now` (default: the current time)."""
    config = study_config(study)
    cutoff = (now or utcnow()) - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    models = {g.id: ModelRow(g.id, g.name, g.target) for g in study.generators}
    totals = StudyTotals()

    status = statuses(study, cutoff)
    excluded = excluded_ids(study)
    checks = attention_checks(study)
    for participant_id, generator_id in _assigned(study):
        # .get: someone who joined since `status` was read is counted on the next load.
        row, state = models[generator_id], status.get(participant_id)
        row.active += state in ACTIVE_STATES
        row.completed += state == "completed"
        row.excluded += state == "completed" and participant_id in excluded
        row.checks.add(checks.get(participant_id, Checks()))

    for participant_id, state in status.items():
        totals.participants += 1
        name = "active" if state in ACTIVE_STATES else state
        setattr(totals, name, getattr(totals, name) + 1)
        totals.checks.add(checks.get(participant_id, Checks()))
    totals.excluded = len(excluded)

    return StudySummary(
        slug=study.slug,
        title=study.title,
        created_at=study.created_at,
        idle_timeout_minutes=config.recruitment.idle_timeout_minutes,
        models=list(models.values()),
        totals=totals,
        state=study.state,
        kind=study.kind,
    )


def attention_checks(study: Study, participant_ids: list[int] | None = None) -> dict[int, Checks]:
    """Answered and failed attention checks per participant of the study (or of those ids)."""
    query = (
        select(
            Trial.participant_id,
            func.count(Response.id),
            func.sum(case((Response.correct.is_(False), 1), else_=0)),
        )
        .join(Response, Response.trial_id == Trial.id)
        .join(Participant, Participant.id == Trial.participant_id)
        .where(
            Participant.study_id == study.id,
            Trial.block == "main",
            Trial.kind != "stimulus",
        )
        .group_by(Trial.participant_id)
    )
    if participant_ids is not None:
        query = query.where(Trial.participant_id.in_(participant_ids))
    return {
        pid: Checks(answered, failed or 0) for pid, answered, failed in db.session.execute(query)
    }


def participants(
    study: Study, limit: int = PARTICIPANT_ROWS, now: datetime | None = None
) -> tuple[list[ParticipantRow], int]:
    """The newest `limit` participants of the study, and how many it has in all."""
    config = study_config(study)
    cutoff = (now or utcnow()) - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    total = db.session.scalar(
        select(func.count()).select_from(Participant).where(Participant.study_id == study.id)
    )
    people = db.session.execute(
        select(Participant.id, Participant.state, Participant.created_at, Participant.last_seen_at)
        .where(Participant.study_id == study.id)
        .order_by(Participant.created_at.desc(), Participant.id.desc())
        .limit(limit)
    ).all()
    ids = [p.id for p in people]
    if not ids:
        return [], total
    models: dict[int, list[str]] = defaultdict(list)
    for participant_id, dataset, model in db.session.execute(
        select(participant_generator.c.participant_id, Generator.dataset, Generator.model)
        .join(Generator, Generator.id == participant_generator.c.generator_id)
        .where(participant_generator.c.participant_id.in_(ids))
        .order_by(Generator.id)
    ):
        models[participant_id].append(f"{dataset}/{model}")
    stats = {s.participant_id: s for s in participant_stats(ids)}
    checks = attention_checks(study, ids)
    rows = []
    for p in people:
        s = stats.get(p.id) or ParticipantStats(p.id)
        reasons = exclusion_reasons(s, config)
        rows.append(
            ParticipantRow(
                id=p.id,
                state=p.state,
                idle=p.state in ACTIVE_STATES and p.last_seen_at < cutoff,
                models=models[p.id],
                created_at=p.created_at,
                last_seen_at=p.last_seen_at,
                answered_main=s.answered_main,
                main_trials=s.main_trials,
                checks=checks.get(p.id, Checks()),
                excluded=bool(reasons) if p.state == "completed" else None,
                reasons=reasons,
            )
        )
    return rows, total


def statuses(study: Study, cutoff: datetime) -> dict[int, str]:
    """Each participant's state, with an active session idle since before `cutoff` as 'idle'.

    Computed on read: the assigner marks idle sessions abandoned only when someone joins.
    """
    rows = db.session.execute(
        select(Participant.id, Participant.state, Participant.last_seen_at).where(
            Participant.study_id == study.id
        )
    )
    return {
        pid: "idle" if state in ACTIVE_STATES and last_seen < cutoff else state
        for pid, state, last_seen in rows
    }


def _assigned(study: Study) -> list[tuple[int, int]]:
    """(participant id, generator id) for every model assignment in the study."""
    query = (
        select(participant_generator.c.participant_id, participant_generator.c.generator_id)
        .join(Participant, Participant.id == participant_generator.c.participant_id)
        .where(Participant.study_id == study.id)
    )
    return [(pid, gid) for pid, gid in db.session.execute(query)]
