"""The manifest of a stimulus folder: one row per image, columns in docs/stimuli.md."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from percept.errors import PerceptError

MANIFEST = "manifest.csv"
IMAGES = "images"
# image_id is this many leading hex digits of the sha256: 64 bits, short enough for URLs.
ID_LENGTH = 16

MANIFEST_COLUMNS = (
    "image_id",
    "sha256",
    "dataset",
    "source",
    "model",
    "role",
    "original_path",
    "width",
    "height",
)
DUPLICATE_COLUMNS = (
    "dataset",
    "sha256",
    "kept_path",
    "dropped_path",
    "dropped_source",
    "dropped_model",
)
SKIPPED_COLUMNS = ("dataset", "source", "model", "path", "reason")

SOURCES = ("real", "fake")
ROLES = ("main", "practice", "catch")

Row = Mapping[str, object]


def image_path(stimdir: Path, sha256: str) -> Path:
    """Where the stimulus with this content hash lives inside a stimulus folder."""
    return stimdir / IMAGES / f"{sha256}.png"


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> None:
    """Write rows to a CSV file atomically: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: row[c] for c in columns})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file that must have at least `columns`; a clear error otherwise."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise PerceptError(
                    f"{path}: missing column(s) {', '.join(missing)}; "
                    "was it written by `percept stimuli ingest`?"
                )
            return list(reader)
    except FileNotFoundError:
        raise PerceptError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise PerceptError(f"{path}: not a readable CSV file ({e})") from None


def read_manifest(stimdir: Path) -> list[dict[str, str]]:
    """The rows of a stimulus folder's manifest, as strings."""
    path = Path(stimdir) / MANIFEST
    if not path.is_file():
        raise PerceptError(
            f"{stimdir}: no {MANIFEST}; make a stimulus folder with `percept stimuli ingest` "
            "or `percept stimuli demo`"
        )
    return read_csv(path, MANIFEST_COLUMNS)


def summary_table(rows: Iterable[Row]) -> str:
    """A plain-text table of image counts per dataset, source and model, by role."""
    counts: dict[tuple[str, int, str, str], dict[str, int]] = {}
    sizes: dict[str, str] = {}
    for row in rows:
        model = str(row["model"]) or ("(catch)" if row["role"] == "catch" else "(real)")
        # Real images first, then the models, then catch images.
        order = 0 if row["source"] == "real" else 2 if row["role"] == "catch" else 1
        key = (str(row["dataset"]), order, str(row["source"]), model)
        counts.setdefault(key, dict.fromkeys(ROLES, 0))[str(row["role"])] += 1
        sizes[str(row["dataset"])] = f"{row['width']}x{row['height']}"
    header = ("dataset", "size", "source", "model", *ROLES)
    lines = [header]
    for (dataset, _, source, model), by_role in sorted(counts.items()):
        lines.append((dataset, sizes[dataset], source, model, *(str(by_role[r]) for r in ROLES)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i >= 4 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
