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
from study_server.models import Response, Trial
from study_server.studyconfig import StudyConfig, Timing


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
    rules = config.exclusions
    reasons = []
    if stats.attention_failures > rules.max_attention_failures:
        reasons.append(
            f"failed {stats.attention_failures} attention checks "
            f"(max {rules.max_attention_failures})"
        )
    invalid = too_many_invalid(
        stats.invalid_trials, stats.answered_main, rules.max_invalid_fraction
    )
    if invalid:
        reasons.append(invalid)
    if stats.median_rt_ms is not None and stats.median_rt_ms < rules.min_median_rt_ms:
        reasons.append(f"median RT {stats.median_rt_ms:.0f} ms (min {rules.min_median_rt_ms} ms)")
    # By arrival time, ties in trial order (a stable sort, as the analysis does).
    arrivals = sorted(stats.arrivals, key=lambda a: a[0])
    reason = too_fast(
        [t for t, _ in arrivals],
        [trial_min_duration_ms(config.timing, e) for _, e in arrivals],
        rules.max_answers_per_second,
        rules.min_session_seconds,
    )
    if reason:
        reasons.append(reason)
    return reasons


def trial_min_duration_ms(timing: Timing, planned_exposure_ms: float | None) -> float:
    """percept.rules.min_duration_ms of a trial with this planned exposure in a study."""
    return min_duration_ms(timing.fixation_ms, planned_exposure_ms, timing.mask_ms)
