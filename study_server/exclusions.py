"""Per-participant quality numbers and the study's exclusion rules applied to them.

Shared by the admin dashboard and the export, so both always agree on who is excluded.
The rules themselves (which trial is invalid, the invalid share, the pacing rule) are
percept.rules, which `percept human` (analysis/exclusions.py) applies too.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from percept.rules import (
    invalid_fraction,
    min_duration_ms,
    too_fast,
    too_many_invalid,
    trial_invalid,
)
from study_server.db import db
from study_server.models import Participant, Response, Study, Trial, participant_generator
from study_server.studies import study_config
from study_server.studyconfig import StudyConfig, Timing

# The exclusion rules by name (the names of `percept human`'s exclusions.csv), in the
# order they are checked: attention checks failed, share of invalid trials, median
# response time, pacing (answers faster than the trials can be shown).
RULES = ("attention", "invalid_display", "fast", "pace")


@dataclass
class ParticipantStats:
    participant_id: int
    main_trials: int = 0
    answered_main: int = 0
    attention_checks: int = 0
    attention_failures: int = 0
    # Answered main trials that percept.rules.trial_invalid calls invalid.
    invalid_trials: int = 0
    median_rt_ms: float | None = None
    # Server arrival times of the answered main trials, with each trial's planned exposure.
    arrivals: list[tuple[datetime, float | None]] = field(default_factory=list)

    @property
    def invalid_fraction(self) -> float:
        return invalid_fraction(self.invalid_trials, self.answered_main)


def participant_stats(participant_ids_query) -> Iterator[ParticipantStats]:
    """Stats for each participant id the query selects, one participant at a time.

    Rows stream in participant order, so memory stays bounded by one participant's trials.
    """
    rows = db.session.execute(
        select(
            Trial.participant_id,
            Trial.kind,
            Response.correct,
            Response.valid,
            Response.frames,
            Response.frame_ms,
            Response.rt_ms,
            Response.received_at,
            Trial.planned_exposure_ms,
        )
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id.in_(participant_ids_query), Trial.block == "main")
        .order_by(Trial.participant_id, Trial.position)
        .execution_options(yield_per=2000)
    )
    stats: ParticipantStats | None = None
    rts: list[float] = []
    for row in rows:
        participant_id, kind, correct, valid, frames, frame_ms, rt_ms, received_at, exposure = row
        if stats is None or stats.participant_id != participant_id:
            if stats is not None:
                yield _finish(stats, rts)
            stats, rts = ParticipantStats(participant_id), []
        stats.main_trials += 1
        if kind != "stimulus":
            stats.attention_checks += 1
            stats.attention_failures += correct is False
        if correct is None:
            continue
        stats.answered_main += 1
        stats.invalid_trials += trial_invalid(valid, exposure, frame_ms, frames)
        rts.append(rt_ms)
        stats.arrivals.append((received_at, exposure))
    if stats is not None:
        yield _finish(stats, rts)


def _finish(stats: ParticipantStats, rts: list[float]) -> ParticipantStats:
    stats.median_rt_ms = statistics.median(rts) if rts else None
    return stats


def exclusion_reasons(stats: ParticipantStats, config: StudyConfig) -> list[str]:
    """Why the study's rules exclude this participant; empty when they are kept."""
    return list(broken_rules(stats, config).values())


def broken_rules(stats: ParticipantStats, config: StudyConfig) -> dict[str, str]:
    """The study's rules this participant breaks, by name (RULES), each with its reason."""
    rules = config.exclusions
    reasons: dict[str, str] = {}
    if stats.attention_failures > rules.max_attention_failures:
        reasons["attention"] = (
            f"failed {stats.attention_failures} attention checks "
            f"(max {rules.max_attention_failures})"
        )
    invalid = too_many_invalid(
        stats.invalid_trials, stats.answered_main, rules.max_invalid_fraction
    )
    if invalid:
        reasons["invalid_display"] = invalid
    if stats.median_rt_ms is not None and stats.median_rt_ms < rules.min_median_rt_ms:
        reasons["fast"] = f"median RT {stats.median_rt_ms:.0f} ms (min {rules.min_median_rt_ms} ms)"
    # By arrival time, ties in trial order (a stable sort, as the analysis does).
    arrivals = sorted(stats.arrivals, key=lambda a: a[0])
    reason = too_fast(
        [t for t, _ in arrivals],
        [trial_min_duration_ms(config.timing, e) for _, e in arrivals],
        rules.max_answers_per_second,
        rules.min_session_seconds,
    )
    if reason:
        reasons["pace"] = reason
    return reasons


def trial_min_duration_ms(timing: Timing, planned_exposure_ms: float | None) -> float:
    """percept.rules.min_duration_ms of a trial with this planned exposure in a study."""
    return min_duration_ms(timing.fixation_ms, planned_exposure_ms, timing.mask_ms)


# Judged completed participants per study, kept by each server process: a sign-up asks
# who is excluded, and a completed session never changes (no answer is taken after
# completion), so each is judged once. Keyed by the study's random salt (unique across
# databases too) and the rules; per participant by id and completion time, so a
# withdrawn participant's reused id is judged afresh.
_judged: dict[tuple, dict[int, tuple[datetime, dict[str, str]]]] = {}
# More unjudged participants than this are judged with a subquery, not a list of ids.
_ID_LIST_MAX = 500


def excluded_ids(study: Study) -> dict[int, list[str]]:
    """Completed participants of the study whom its rules drop, with the reasons."""
    return {pid: list(broken.values()) for pid, broken in excluded_rules(study).items()}


def excluded_rules(study: Study) -> dict[int, dict[str, str]]:
    """Completed participants of the study whom its rules drop: the rules each breaks
    (RULES names), with the reasons.

    Only completed sessions are judged (the export and the dashboard do the same),
    each once per server process: those completed since the last call are judged in
    one streamed pass over their main-block trials.
    """
    config = study_config(study)
    completed_query = select(Participant.id).where(
        Participant.study_id == study.id, Participant.state == "completed"
    )
    completed = dict(
        db.session.execute(completed_query.add_columns(Participant.completed_at)).all()
    )
    key = (study.salt, study.id, config.exclusions, config.timing)
    known = _judged.get(key, {})
    judged = {
        pid: known[pid] for pid, at in completed.items() if pid in known and known[pid][0] == at
    }
    new = [pid for pid in completed if pid not in judged]
    if new:
        which = new if len(new) <= _ID_LIST_MAX else completed_query
        for stats in participant_stats(which):  # streamed: one participant at a time
            pid = stats.participant_id
            if pid in completed:
                judged[pid] = (completed[pid], broken_rules(stats, config))
        for pid in new:
            if pid not in judged:  # no main trials stored: judged as the dashboard does
                judged[pid] = (completed[pid], broken_rules(ParticipantStats(pid), config))
    _judged[key] = judged
    return {pid: broken for pid, (_, broken) in judged.items() if broken}


def usable_counts(study: Study) -> dict[int, int]:
    """Completed participants whom the rules keep, per generator id of the study.

    A generator with none is left out (read a missing one as 0).
    """
    excluded = excluded_ids(study)
    rows = db.session.execute(
        select(participant_generator.c.participant_id, participant_generator.c.generator_id)
        .join(Participant, Participant.id == participant_generator.c.participant_id)
        .where(Participant.study_id == study.id, Participant.state == "completed")
    )
    counts: dict[int, int] = {}
    for participant_id, generator_id in rows:
        if participant_id not in excluded:
            counts[generator_id] = counts.get(generator_id, 0) + 1
    return counts
