"""Which participants and trials the analysis leaves out, each with its reason.

Nothing is dropped silently: `exclusions()` lists every excluded participant
and trial with the rule and the numbers behind it, and `included()` keeps
exactly what that list does not exclude.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from percept.errors import PerceptError
from percept.rules import too_fast as rules_too_fast
from percept.rules import too_many_invalid, trial_invalid

EXCLUSION_COLUMNS = ("participant_id", "trial_id", "level", "rule", "reason")


@dataclass(frozen=True)
class ExclusionRules:
    """The rules; None switches a threshold off. Defaults match docs/study-config.md."""

    # Participants failing more attention checks (catch + instructed) than this.
    max_attention_failures: int | None = 0
    # Participants whose median response time on main trials is shorter (ms).
    min_median_rt_ms: float | None = 150.0
    # Participants with a larger share of invalid main trials (hidden tab, missed frames).
    max_invalid_fraction: float | None = 0.2
    # Participants who did not complete the session.
    exclude_incomplete: bool = True
    # Every session after the first of the same platform id.
    exclude_repeated_ids: bool = True
    # Trials the browser flagged, or whose display missed its frame target.
    exclude_invalid_trials: bool = True
    # Pacing, from the server's arrival times (`received_at`): None derives the limit
    # from each trial's `min_duration_ms` (nobody answers faster than fixation +
    # exposure + mask); a number caps answers per second; 0 switches it off.
    max_answers_per_second: float | None = None
    # Participants whose main block, first to last answer, took fewer seconds (0: off).
    min_session_seconds: float = 0.0

    @classmethod
    def from_study_config(cls, path: Path) -> ExclusionRules:
        """The `[exclusions]` table of a study config file (docs/study-config.md)."""
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f).get("exclusions", {})
        except FileNotFoundError:
            raise PerceptError(f"{path}: file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise PerceptError(f"{path}: not valid TOML ({e})") from None
        known = {
            "max_attention_failures",
            "max_invalid_fraction",
            "min_median_rt_ms",
            "max_answers_per_second",
            "min_session_seconds",
        }
        unknown = sorted(set(table) - known)
        if unknown:
            raise PerceptError(f"{path}: exclusions.{unknown[0]}: unknown key")
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PerceptError(f"{path}: exclusions.{key}: must be a number >= 0")
        return replace(cls(), **table)

    def with_overrides(self, **overrides: Any) -> ExclusionRules:
        """These rules with the given (non-None) values replaced, e.g. from the command line."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in names and v is not None})


def invalid_trials(trials: pd.DataFrame) -> pd.Series:
    """True where an answered trial is invalid, by percept.rules.trial_invalid (the rule
    the study server's dashboard and export apply): flagged, or its display missed the
    frames it asked for."""
    valid = trials["valid"].astype("object").where(trials["valid"].notna(), None)
    columns = ("planned_exposure_ms", "frame_ms", "frames")
    numbers = [trials[c].astype("float64").to_numpy() for c in columns]
    flags = [trial_invalid(v, *row) for v, *row in zip(valid, *numbers, strict=True)]
    return pd.Series(flags, index=trials.index, dtype=bool)


def too_fast(person: pd.DataFrame, rules: ExclusionRules) -> str | None:
    """Why one participant's answered main trials came faster than a person can answer.

    percept.rules.too_fast on export columns: arrival times `received_at` (the server's
    clock) in arrival order, ties in trial order, and `min_duration_ms` (0 where an
    older export lacks it).
    """
    if "received_at" not in person or len(person) < 2:
        return None
    person = person.sort_values("received_at", kind="stable")
    durations = (
        person["min_duration_ms"].astype("float64").tolist()
        if "min_duration_ms" in person
        else [0.0] * len(person)
    )
    return rules_too_fast(
        list(person["received_at"]),
        durations,
        rules.max_answers_per_second,
        rules.min_session_seconds,
    )


def exclusions(trials: pd.DataFrame, rules: ExclusionRules) -> pd.DataFrame:
    """Every excluded participant (trial_id empty) and trial, with rule and reason."""
    rows: list[dict[str, Any]] = []
    main = trials[(trials["block"] == "main") & trials["answered"].fillna(False)]
    by_person = main.groupby("participant_id")
    people = trials.groupby("participant_id").agg(
        state=("participant_state", "first"), pid=("platform_pid", "first")
    )

    def exclude(pid: int, rule: str, reason: str) -> None:
        rows.append(
            {
                "participant_id": pid,
                "trial_id": pd.NA,
                "level": "participant",
                "rule": rule,
                "reason": reason,
            }
        )

    invalid = invalid_trials(main)
    checks = main[main["kind"] != "stimulus"]
    failures = (~checks["correct"].astype(bool)).groupby(checks["participant_id"]).sum()
    median_rt = by_person["rt_ms"].median()
    answered = dict(tuple(by_person))
    invalid_count = invalid.groupby(main["participant_id"]).agg(["sum", "size"])
    seen: set[str] = set()
    for pid, person in people.iterrows():
        if rules.exclude_incomplete and person["state"] != "completed":
            exclude(pid, "incomplete", f"session {person['state']}, not completed")
        if rules.exclude_repeated_ids and pd.notna(person["pid"]):
            if person["pid"] in seen:
                exclude(pid, "repeated_id", "platform id seen in an earlier session")
            seen.add(person["pid"])
        failed = int(failures.get(pid, 0))
        if rules.max_attention_failures is not None and failed > rules.max_attention_failures:
            exclude(
                pid,
                "attention",
                f"failed {failed} attention checks (max {rules.max_attention_failures})",
            )
        rt = median_rt.get(pid, np.nan)
        if rules.min_median_rt_ms is not None and rt < rules.min_median_rt_ms:
            exclude(pid, "fast", f"median RT {rt:.0f} ms (min {rules.min_median_rt_ms:g} ms)")
        pace = too_fast(answered.get(pid, main.iloc[:0]), rules)
        if pace:
            exclude(pid, "pace", pace)
        if pid in invalid_count.index:
            count, size = invalid_count.loc[pid]
            reason = too_many_invalid(int(count), int(size), rules.max_invalid_fraction)
            if reason:
                exclude(pid, "invalid_display", reason)
    frames = [pd.DataFrame(rows, columns=list(EXCLUSION_COLUMNS))]
    if rules.exclude_invalid_trials:
        flagged = main[invalid]
        missed = (
            "shown "
            + flagged["frames"].astype("string")
            + " frames, planned "
            + flagged["planned_exposure_ms"].astype("string")
            + " ms"
        )
        frames.append(
            pd.DataFrame(
                {
                    "participant_id": flagged["participant_id"],
                    "trial_id": flagged["trial_id"],
                    "level": "trial",
                    "rule": "invalid_trial",
                    "reason": flagged["invalid_reason"].fillna(missed),
                }
            )
        )
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(EXCLUSION_COLUMNS)).astype(
            {"participant_id": "Int64", "trial_id": "Int64"}
        )
    return pd.concat(frames, ignore_index=True).astype(
        {"participant_id": "Int64", "trial_id": "Int64"}
    )


def included(trials: pd.DataFrame, excluded: pd.DataFrame) -> pd.DataFrame:
    """Answered main-block stimulus trials left after the exclusions."""
    out_people = set(excluded.loc[excluded["level"] == "participant", "participant_id"])
    out_trials = set(excluded.loc[excluded["level"] == "trial", "trial_id"])
    keep = (
        (trials["block"] == "main")
        & (trials["kind"] == "stimulus")
        & trials["answered"].fillna(False).astype(bool)
        & ~trials["participant_id"].isin(out_people)
        & ~trials["trial_id"].isin(out_trials)
    )
    return trials[keep]
