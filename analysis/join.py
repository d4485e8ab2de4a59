"""The join audit: do human.csv, metrics.csv and every scores file name the same models?

`percept report` correlates over (dataset, model) pairs. A plain inner join of
its inputs would drop, without a word, every model or dataset spelled
differently in two files (`Diff-ProjGAN` in a paper's table, `diffusion-projected-gan`
in the study). So before any number is computed, `audit` compares the pairs of
every input and stops with one line per dataset naming the unmatched names on
each side and the closest name on the other (`--rename` maps names,
`--allow-missing` goes on and records every pair it leaves out). Duplicate rows
are checked on the way: the same key twice with different values is an error,
exact repeats are dropped with a note.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from percept.errors import PerceptError

PAIR = ("dataset", "model")
RENAME_COLUMNS = ("from", "to", "dataset")
LEFT_OUT_COLUMNS = ("dataset", "model", "present_in", "missing_from", "closest", "left_out_of")
# Below this similarity (difflib ratio of normalised names) no name is offered as "closest".
CLOSE_ENOUGH = 0.4
HOW_TO = (
    "map names with --rename FILE (CSV with columns from,to and optionally dataset; "
    "docs/report.md), or go on without them with --allow-missing (recorded in left_out.csv)"
)


@dataclass
class Source:
    """One input of the report, as read: its label in messages, rows, and what keys a row."""

    label: str  # e.g. 'metrics.csv'
    frame: pd.DataFrame
    key: tuple[str, ...]  # columns that identify one row, e.g. dataset, model, encoder, metric
    value: str  # the column whose repeats must agree
    core: bool = True  # human.csv and metrics.csv; a scores file only adds measures


@dataclass
class Joined:
    """The inputs after renaming, deduplicating and keeping only the pairs every input has."""

    frames: dict[str, pd.DataFrame]  # by label
    left_out: pd.DataFrame  # one row per left-out (dataset, model): LEFT_OUT_COLUMNS
    problems: list[str] = field(default_factory=list)  # one line per dataset with a mismatch
    notes: list[str] = field(default_factory=list)  # duplicates dropped, renames unused


def normalised(name: str) -> str:
    """A name for comparing spellings: case folded, punctuation and `-`, `_`, `+` dropped."""
    return re.sub(r"[\W_]+", "", str(name).casefold())


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate spelled most like `name` (same normalised name first), or None."""
    if not candidates:
        return None
    target = normalised(name)
    same = [c for c in candidates if normalised(c) == target]
    if same:
        return same[0]
    scored = [(difflib.SequenceMatcher(None, target, normalised(c)).ratio(), c) for c in candidates]
    ratio, best = max(scored, key=lambda item: item[0])
    return best if ratio >= CLOSE_ENOUGH else None


def pairs_of(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The (dataset, model) pairs of a frame, as text."""
    return set(zip(frame["dataset"].astype(str), frame["model"].astype(str), strict=True))


# --- Renames -------------------------------------------------------------------------------


def read_renames(path: Path) -> pd.DataFrame:
    """A rename file: columns `from`, `to` and optionally `dataset` (empty: every dataset).

    A row with a dataset renames a model of that dataset only (one published name
    can stand for different models in different datasets); a row without one
    renames that name wherever it appears, as a dataset or as a model.
    """
    path = Path(path)
    if not path.is_file():
        raise PerceptError(f"{path}: file not found (the --rename file)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PerceptError(f"{path}: not a readable CSV file ({e})") from None
    missing = [c for c in ("from", "to") if c not in frame.columns]
    if missing:
        raise PerceptError(
            f"{path}: missing column(s) {', '.join(missing)}; need from,to[,dataset]"
        )
    unknown = sorted(set(frame.columns) - set(RENAME_COLUMNS))
    if unknown:
        raise PerceptError(
            f"{path}: unknown column {unknown[0]!r}; the columns are from,to,dataset"
        )
    if "dataset" not in frame.columns:
        frame["dataset"] = ""
    frame = frame[list(RENAME_COLUMNS)].apply(lambda column: column.str.strip())
    frame["line"] = frame.index + 2
    for row in frame.itertuples(index=False):
        if not row[0] or not row[1]:
            raise PerceptError(f"{path}: line {row.line}: `from` and `to` must both be given")
    repeated = frame[frame.duplicated(["dataset", "from"], keep=False)]
    for (dataset, old), rows in repeated.groupby(["dataset", "from"]):
        if rows["to"].nunique() > 1:
            where = f" in dataset {dataset!r}" if dataset else ""
            raise PerceptError(
                f"{path}: lines {', '.join(map(str, rows['line']))} map {old!r}{where} to "
                f"different names ({', '.join(map(repr, rows['to']))}); keep one"
            )
    frame.attrs["path"] = str(path)
    return frame.drop_duplicates(["dataset", "from"], ignore_index=True)


def rename(frame: pd.DataFrame, renames: pd.DataFrame | None) -> pd.DataFrame:
    """`frame` with its dataset and model names mapped by a rename table (see read_renames)."""
    if renames is None or frame is None or not len(renames):
        return frame
    everywhere = renames[renames["dataset"] == ""]
    anywhere = dict(zip(everywhere["from"], everywhere["to"], strict=True))
    specific = {
        (r.dataset, r[0]): r[1] for r in renames[renames["dataset"] != ""].itertuples(index=False)
    }
    old_dataset = frame["dataset"].astype(str)
    new_dataset = old_dataset.map(lambda d: anywhere.get(d, d))
    models = []
    for old_d, new_d, model in zip(
        old_dataset, new_dataset, frame["model"].astype(str), strict=True
    ):
        mapped = specific.get((new_d, model), specific.get((old_d, model)))
        models.append(mapped if mapped is not None else anywhere.get(model, model))
    return frame.assign(dataset=new_dataset.to_numpy(), model=models)


def unused_renames(renames: pd.DataFrame, frames: list[pd.DataFrame]) -> list[str]:
    """Notes for rename rows whose `from` names nothing in any input (a typo, or a stale file)."""
    datasets = set().union(*(set(f["dataset"].astype(str)) for f in frames))
    pairs = set().union(*(pairs_of(f) for f in frames))
    models = {m for _, m in pairs}
    notes = []
    for row in renames.itertuples(index=False):
        old, dataset = row[0], row.dataset
        used = (
            any(m == old for d, m in pairs if d == dataset)
            if dataset
            else old in datasets or old in models
        )
        if not used:
            where = f" in dataset {dataset!r}" if dataset else ""
            notes.append(
                f"{renames.attrs.get('path', 'rename file')}: line {row.line}: {old!r}{where} "
                "is in no input; row ignored"
            )
    return notes


# --- Duplicates ----------------------------------------------------------------------------


def deduplicate(source: Source) -> tuple[pd.DataFrame, list[str]]:
    """Rows with a repeated key: exact repeats dropped (noted), differing values an error."""
    frame = source.frame
    repeated = frame.duplicated(list(source.key), keep=False)
    if not repeated.any():
        return frame, []
    conflicts = []
    for key, rows in frame[repeated].groupby(list(source.key), sort=False):
        values = rows[source.value]
        if values.isna().all() or (values.notna().all() and values.nunique() == 1):
            continue
        lines = ", ".join(
            f"line {i + 2} {v!r}" for i, v in zip(rows.index, values.tolist(), strict=True)
        )
        conflicts.append(f"{'/'.join(map(str, key))}: {lines}")
    if conflicts:
        more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        raise PerceptError(
            f"{source.label}: rows with the same {', '.join(source.key)} but different "
            f"{source.value}: {'; '.join(conflicts[:3])}{more}; keep one row for each"
        )
    kept = frame.drop_duplicates(list(source.key))
    dropped = len(frame) - len(kept)
    key = ", ".join(source.key)
    return kept, [
        f"{source.label}: {dropped} exact duplicate row(s) dropped (same {key}, {source.value})"
    ]


# --- The audit -----------------------------------------------------------------------------


def _names(values) -> str:
    return ", ".join(repr(v) for v in values)


def audit(
    sources: list[Source], renames: pd.DataFrame | None = None, allow_missing: bool = False
) -> Joined:
    """Rename, deduplicate and compare the (dataset, model) pairs of every input.

    Raises PerceptError with one line per dataset when a pair is missing from any
    input, unless `allow_missing`: then the same lines come back in `problems` and
    every left-out pair in `left_out`. The frames kept hold only pairs that
    human.csv and metrics.csv (the core inputs) share; a core pair that a scores
    file lacks stays, without that file's scores.
    """
    notes: list[str] = []
    frames: dict[str, pd.DataFrame] = {}
    for source in sources:
        missing = [c for c in (*PAIR, *source.key) if c not in source.frame.columns]
        if missing:
            raise PerceptError(
                f"{source.label}: missing column(s) {', '.join(dict.fromkeys(missing))}"
            )
        frame = source.frame.reset_index(drop=True)
        for column in PAIR:
            empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
            if empty.any():
                raise PerceptError(
                    f"{source.label}: line {int(empty.idxmax()) + 2}: empty {column}; every row "
                    "needs a dataset and a model"
                )
        frame = frame.assign(**{c: frame[c].astype(str) for c in PAIR})
        frame = rename(frame, renames)
        frame, dropped = deduplicate(
            Source(source.label, frame, source.key, source.value, source.core)
        )
        notes += dropped
        frames[source.label] = frame
    if renames is not None and len(renames):
        notes += unused_renames(renames, list(frames.values()))

    pairs = {label: pairs_of(f) for label, f in frames.items()}
    labels = list(frames)
    core = [s.label for s in sources if s.core]
    everywhere = set.intersection(*pairs.values())
    kept = set.intersection(*(pairs[label] for label in core))
    problems, left = [], []
    for dataset in sorted({d for p in pairs.values() for d, _ in p}):
        having = [label for label in labels if any(d == dataset for d, _ in pairs[label])]
        if len(having) < len(labels):
            lacking = [label for label in labels if label not in having]
            hints = []
            for label in lacking:
                others = sorted(
                    {d for d, _ in pairs[label]} - {d for other in having for d, _ in pairs[other]}
                )
                near = closest(dataset, others)
                hints.append(f"{label} has {near!r}?" if near else f"{label} has nothing close")
            count = len({m for label in having for d, m in pairs[label] if d == dataset})
            problems.append(
                f"dataset {dataset!r} ({count} models) is only in {' and '.join(having)} "
                f"({'; '.join(hints)})"
            )
        # Models of this dataset missing from some input, grouped by where they are.
        union = {m for p in pairs.values() for d, m in p if d == dataset}
        groups: dict[tuple[str, ...], list[str]] = {}
        for model in sorted(union):
            if (dataset, model) in everywhere:
                continue
            present = tuple(label for label in labels if (dataset, model) in pairs[label])
            groups.setdefault(present, []).append(model)
        parts = []
        for present, models in groups.items():
            lacking = [label for label in labels if label not in present]
            described = []
            for model in models:
                hints = []
                for label in lacking:
                    others = sorted(
                        m for d, m in pairs[label] if d == dataset and (d, m) not in everywhere
                    )
                    near = closest(model, others)
                    if near:
                        hints.append(f"{label} has {near!r}?")
                hint = f" ({'; '.join(hints)})" if hints else ""
                described.append(f"{model!r}{hint}")
                in_core = (dataset, model) in kept
                left.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "present_in": "; ".join(present),
                        "missing_from": "; ".join(lacking),
                        "closest": "; ".join(hints).replace("?", ""),
                        "left_out_of": (
                            f"the measures of {' and '.join(lacking)}"
                            if in_core
                            else "every correlation"
                        ),
                    }
                )
            if len(having) == len(labels):
                verb = "has" if len(present) == 1 else "have"
                parts.append(f"{' and '.join(present)} {verb} {', '.join(described)}")
        if parts:
            problems.append(f"{dataset}: {'; '.join(parts)}")
    if problems and not allow_missing:
        raise PerceptError(
            "the inputs do not name the same (dataset, model) pairs, so nothing was computed:\n  "
            + "\n  ".join(problems)
            + f"\n{HOW_TO}"
        )
    if not kept:
        raise PerceptError(
            f"no (dataset, model) pair is in both {' and '.join(core)}, so nothing is left to "
            "correlate, even with --allow-missing:\n  "
            + "\n  ".join(problems)
            + "\nmap names with --rename FILE (CSV with columns from,to and optionally dataset)"
        )
    restricted = {
        label: f[[pair in kept for pair in zip(f["dataset"], f["model"], strict=True)]]
        for label, f in frames.items()
    }
    left_out = pd.DataFrame(left, columns=list(LEFT_OUT_COLUMNS))
    return Joined(frames=restricted, left_out=left_out, problems=problems, notes=notes)


SCORES_LABEL = "scores"


def report_sources(
    human: pd.DataFrame,
    metrics: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    human_label: str = "human.csv",
    metrics_label: str = "metrics.csv",
) -> list[Source]:
    """The inputs of `percept report` as audit sources; scores split by their `source` column."""
    sources = [
        Source(human_label, human, PAIR, "error"),
        Source(metrics_label, metrics, (*PAIR, "encoder", "metric"), "value"),
    ]
    if scores is not None and len(scores):
        by_file = (
            scores.groupby("source", sort=False) if "source" in scores else [(SCORES_LABEL, scores)]
        )
        for label, frame in by_file:
            sources.append(
                Source(
                    str(label),
                    frame.drop(columns="source", errors="ignore"),
                    (*PAIR, "score"),
                    "value",
                    core=False,
                )
            )
    # Two files of the same name (from different folders) must not share a label.
    seen: set[str] = set()
    for position, source in enumerate(sources, start=1):
        if source.label in seen:
            source.label = f"{source.label} (input {position})"
        seen.add(source.label)
    return sources


def audit_report(
    human: pd.DataFrame,
    metrics: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    *,
    renames: pd.DataFrame | None = None,
    allow_missing: bool = False,
    human_label: str = "human.csv",
    metrics_label: str = "metrics.csv",
) -> tuple[Joined, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """`audit` on the report's inputs: the result, then human, metrics and scores as joined."""
    sources = report_sources(human, metrics, scores, human_label, metrics_label)
    joined = audit(sources, renames, allow_missing)
    frames = [joined.frames[s.label] for s in sources]
    extra = pd.concat(frames[2:], ignore_index=True) if len(frames) > 2 else None
    return joined, frames[0], frames[1], extra
