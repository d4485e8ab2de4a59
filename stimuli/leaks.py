"""Audit a stimulus folder: nothing but pixels may tell real from fake, or one model from another.

A participant's browser can read a file's bytes, name, format, pixel size,
colour mode and every PNG chunk. The audit checks that all of these are the
same for every stimulus of a dataset (only the pixels differ), that file names
are content hashes, and that the manifest and the files agree.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from stimuli.images import png_chunks
from stimuli.manifest import ID_LENGTH, IMAGES, ROLES, SOURCES, read_manifest
from stimuli.padding import PAD_CHUNK

# What `encode_png` writes: 8-bit truecolour, no interlace, and only these chunks.
ALLOWED_CHUNKS = ("IHDR", "IDAT", "IEND")
BIT_DEPTH, COLOUR_TYPE_RGB, NO_INTERLACE = 8, 2, 0

_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


@dataclass(frozen=True)
class Problem:
    """One file (relative to the stimulus folder) and what gives it away."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def audit(stimdir: Path | str) -> list[Problem]:
    """Every problem found in a stimulus folder; an empty list means it is clean."""
    stimdir = Path(stimdir)
    rows = read_manifest(stimdir)
    problems: list[Problem] = []
    problems += _manifest_problems(rows)
    listed = {f"{row['sha256']}.png" for row in rows}
    images = stimdir / IMAGES
    on_disk = sorted(p.name for p in images.iterdir()) if images.is_dir() else []
    for name in on_disk:
        if name not in listed:
            problems.append(Problem(f"{IMAGES}/{name}", "not listed in manifest.csv; remove it"))
    sizes = _dataset_sizes(rows, problems)
    for row in rows:
        rel = f"{IMAGES}/{row['sha256']}.png"
        path = stimdir / rel
        if not path.is_file():
            problems.append(Problem(rel, "listed in manifest.csv but missing; re-run ingest"))
            continue
        problems += [
            Problem(rel, reason) for reason in _file_problems(path.read_bytes(), row, sizes)
        ]
    return problems


def _manifest_problems(rows: list[dict[str, str]]) -> list[Problem]:
    problems = []
    counts = Counter(row["sha256"] for row in rows)
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"manifest.csv line {number}"
        if row["source"] not in SOURCES:
            problems.append(Problem(where, f"source {row['source']!r} is not one of {SOURCES}"))
        if row["role"] not in ROLES:
            problems.append(Problem(where, f"role {row['role']!r} is not one of {ROLES}"))
        has_model = bool(row["model"])
        if has_model != (row["source"] == "fake" and row["role"] != "catch"):
            problems.append(
                Problem(
                    where,
                    "model must be set for fake images and only for them (catch images have none)",
                )
            )
        if row["image_id"] != row["sha256"][:ID_LENGTH]:
            problems.append(Problem(where, "image_id is not the start of the sha256"))
        if counts[row["sha256"]] > 1:
            problems.append(
                Problem(
                    where,
                    "the same image is listed more than once "
                    "(a practice image may appear in main trials)",
                )
            )
    return problems


def _dataset_sizes(
    rows: list[dict[str, str]], problems: list[Problem]
) -> dict[str, tuple[int, int]]:
    """The one pixel size of each dataset (its most common); rows that differ are problems."""
    by_dataset: dict[str, Counter] = {}
    for row in rows:
        by_dataset.setdefault(row["dataset"], Counter())[(row["width"], row["height"])] += 1
    sizes = {}
    for dataset, counter in by_dataset.items():
        (width, height), _ = counter.most_common(1)[0]
        try:
            sizes[dataset] = (int(width), int(height))
        except ValueError:
            problems.append(
                Problem("manifest.csv", f"dataset {dataset}: size {width}x{height} is not a number")
            )
            sizes[dataset] = (-1, -1)
    return sizes


def _file_problems(
    data: bytes, row: dict[str, str], sizes: dict[str, tuple[int, int]]
) -> list[str]:
    """Reasons one stimulus file differs from what every other stimulus looks like."""
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            return [f"is a {kind} file, not a PNG like the other stimuli"]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ["is a WebP file, not a PNG like the other stimuli"]
    try:
        chunks = png_chunks(data)
    except ValueError as e:
        return [f"is not a clean PNG file: {e}"]
    reasons = []
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        reasons.append("content does not match its sha256 name; re-run ingest")
    extra = sorted({kind for kind, _ in chunks if kind not in ALLOWED_CHUNKS})
    if extra:
        reasons.append(
            f"has {', '.join(extra)} chunk(s) (metadata or colour information "
            "that other stimuli lack); re-encode it through ingest"
        )
    layout = [kind for i, (kind, _) in enumerate(chunks) if i == 0 or chunks[i - 1][0] != kind]
    if not extra and layout != list(ALLOWED_CHUNKS):
        reasons.append(f"chunk layout {'/'.join(layout)} differs from IHDR/IDAT/IEND")
    if chunks and chunks[0][0] == "IHDR" and len(chunks[0][1]) == 13:
        ihdr = chunks[0][1]
        width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
        depth, colour, interlace = ihdr[8], ihdr[9], ihdr[12]
        expected = sizes[row["dataset"]]
        if (width, height) != expected:
            reasons.append(
                f"is {width}x{height} px, the other stimuli of dataset "
                f"{row['dataset']} are {expected[0]}x{expected[1]}"
            )
        if (depth, colour) != (BIT_DEPTH, COLOUR_TYPE_RGB):
            reasons.append(
                f"pixel format (bit depth {depth}, colour type {colour}) differs from 8-bit RGB"
            )
        if interlace != NO_INTERLACE:
            reasons.append("is interlaced; the other stimuli are not")
    else:
        reasons.append("does not start with a valid IHDR chunk")
    if not reasons:
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
        except (OSError, SyntaxError, ValueError) as e:
            reasons.append(f"does not decode ({e}); re-run ingest")
    return reasons


def served_problems(files: dict[str, bytes]) -> list[Problem]:
    """Problems of the images one study serves (padded by `stimuli.padding.pad_png`).

    All must have the same byte length, so `Content-Length` tells nothing, and the same
    chunk layout: IHDR, IDAT..., one zero-filled paDd, IEND. `files` maps a name to bytes.
    """
    if not files:
        return []
    lengths = Counter(len(data) for data in files.values())
    common = lengths.most_common(1)[0][0]
    problems = []
    for name, data in sorted(files.items()):
        if len(data) != common:
            problems.append(
                Problem(
                    name,
                    f"is {len(data)} bytes, {lengths[common]} other served image(s) are "
                    f"{common}: its size tells it apart",
                )
            )
        try:
            chunks = png_chunks(data)
        except ValueError as e:
            problems.append(Problem(name, f"is not a clean PNG file: {e}"))
            continue
        layout = [kind for i, (kind, _) in enumerate(chunks) if i == 0 or chunks[i - 1][0] != kind]
        if layout != ["IHDR", "IDAT", PAD_CHUNK, "IEND"]:
            problems.append(
                Problem(name, f"chunk layout {'/'.join(layout)} is not IHDR/IDAT/{PAD_CHUNK}/IEND")
            )
        elif any(chunks[-2][1]):
            problems.append(Problem(name, f"its {PAD_CHUNK} chunk holds more than zero bytes"))
    return problems
