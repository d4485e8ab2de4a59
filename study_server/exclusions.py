"""Per-participant quality numbers and the study's exclusion rules applied to them.

Shared by the admin dashboard and the export, so both always agree on who is excluded.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from study_server.db import db
from study_server.models import Response, Trial
from study_server.studyconfig import Exclusions


@dataclass
class ParticipantStats:
    participant_id: int
    main_trials: int = 0
    answered_main: int = 0
    attention_checks: int = 0
    attention_failures: int = 0
    invalid_trials: int = 0
    median_rt_ms: float | None = None

    @property
    def invalid_fraction(self) -> float:
        return self.invalid_trials / self.answered_main if self.answered_main else 0.0


def participant_stats(participant_ids_query) -> Iterator[ParticipantStats]:
    """Stats for each participant id the query selects, one participant at a time.

    Rows stream in participant order, so memory stays bounded by one participant's trials.
    """
    rows = db.session.execute(
        select(Trial.participant_id, Trial.kind, Response.correct, Response.valid, Response.rt_ms)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id.in_(participant_ids_query), Trial.block == "main")
        .order_by(Trial.participant_id, Trial.position)
        .execution_options(yield_per=2000)
    )
    stats: ParticipantStats | None = None
    rts: list[float] = []
    for participant_id, kind, correct, valid, rt_ms in rows:
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
        stats.invalid_trials += not valid
        rts.append(rt_ms)
    if stats is not None:
        yield _finish(stats, rts)


def _finish(stats: ParticipantStats, rts: list[float]) -> ParticipantStats:
    stats.median_rt_ms = statistics.median(rts) if rts else None
    return stats


def exclusion_reasons(stats: ParticipantStats, rules: Exclusions) -> list[str]:
    """Why the study's rules exclude this participant; empty when they are kept."""
    reasons = []
    if stats.attention_failures > rules.max_attention_failures:
        reasons.append(
            f"failed {stats.attention_failures} attention checks "
            f"(max {rules.max_attention_failures})"
        )
    if stats.invalid_fraction > rules.max_invalid_fraction:
        reasons.append(
            f"{stats.invalid_fraction:.0%} of trials invalid (max {rules.max_invalid_fraction:.0%})"
        )
    if stats.median_rt_ms is not None and stats.median_rt_ms < rules.min_median_rt_ms:
        reasons.append(f"median RT {stats.median_rt_ms:.0f} ms (min {rules.min_median_rt_ms} ms)")
    return reasons
