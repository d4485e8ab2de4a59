"""Ingest: a researcher's image folders in, one clean stimulus folder out.

The output folder is built beside its final place and swapped in at the end,
so a failed or interrupted run leaves the previous output (or nothing) behind,
never half of a new one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from percept.errors import PerceptError
from stimuli.catch import catch_image
from stimuli.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    BadImageError,
    encode_png,
    image_size,
    normalise,
)
from stimuli.manifest import (
    DUPLICATE_COLUMNS,
    ID_LENGTH,
    IMAGES,
    MANIFEST,
    MANIFEST_COLUMNS,
    ROLES,
    SKIPPED_COLUMNS,
    image_path,
    read_csv,
    read_manifest,
    write_csv,
)
from stimuli.parallel import parallel_map

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DUPLICATES = "duplicates.csv"
SKIPPED = "skipped.csv"


@dataclass(frozen=True)
class Folder:
    """An input folder and the label that `original_path` uses for it."""

    path: Path
    label: str

    @classmethod
    def given(cls, path: Path | str) -> Folder:
        """A folder labelled as the user typed it."""
        return cls(Path(path), str(path).rstrip("/") or "/")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to ingest: its name, its real images and one folder per model."""

    name: str
    real: Folder
    models: tuple[tuple[str, Folder], ...]

    def folders(self) -> Iterator[tuple[str, str, Folder]]:
        """(source, model, folder) for the real folder, then each model in the given order."""
        yield "real", "", self.real
        for model, folder in self.models:
            yield "fake", model, folder


@dataclass
class InputFile:
    dataset: str
    source: str
    model: str
    path: Path
    original_path: str
    sha256: str = ""


@dataclass
class IngestReport:
    """What an ingest wrote: the manifest rows of every dataset in the folder, and this
    run's duplicates and skipped files."""

    out: Path
    rows: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def ingest(
    real: Path | str,
    models: Mapping[str, Path | str] | Sequence[tuple[str, Path | str]],
    out: Path | str,
    *,
    dataset: str = "default",
    size: int | None = None,
    practice: int = 5,
    catch: int = 10,
    skip_bad: bool = False,
    workers: int | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> IngestReport:
    """Ingest one dataset: a real folder and one folder per model, into stimulus folder `out`.

    Other datasets already in `out` are kept; this dataset's rows are replaced.
    `practice` real and `practice` fake images per dataset are set aside for
    practice trials; `catch` catch images are derived from real images.
    `size` defaults to the shortest side of the smallest real image.
    """
    pairs = list(models.items()) if isinstance(models, Mapping) else list(models)
    spec = DatasetSpec(
        dataset, Folder.given(real), tuple((name, Folder.given(path)) for name, path in pairs)
    )
    return ingest_datasets(
        [spec],
        out,
        size=size,
        practice=practice,
        catch=catch,
        skip_bad=skip_bad,
        workers=workers,
        max_pixels=max_pixels,
        progress=progress,
    )


def ingest_datasets(
    specs: Sequence[DatasetSpec],
    out: Path | str,
    *,
    size: int | None = None,
    practice: int = 5,
    catch: int = 10,
    skip_bad: bool = False,
    workers: int | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> IngestReport:
    """Ingest several datasets into one stimulus folder in a single atomic step."""
    out = Path(out).resolve()
    _check_specs(specs, out, size, practice, catch)
    kept = _kept_from_previous(out, {spec.name for spec in specs})
    files, bad = _list_files(specs)
    _fail_on_bad(bad, skip_bad)
    sizes = {spec.name: size or _real_size(spec, files, bad, max_pixels) for spec in specs}
    _fail_on_bad(bad, skip_bad)

    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / IMAGES).mkdir(parents=True)
        known_bad = {b["path"] for b in bad}
        todo = [f for f in files if f.original_path not in known_bad]
        _normalise_all(todo, sizes, tmp / IMAGES, bad, workers, max_pixels, progress)
        _fail_on_bad(bad, skip_bad)
        good = [f for f in todo if f.sha256]

        report = IngestReport(out=out, sizes=sizes, skipped=bad)
        for row in kept["manifest"]:
            _link(image_path(out, row["sha256"]), image_path(tmp, row["sha256"]))
        _carry_over_other_files(out, tmp)
        seen = {row["sha256"]: row["original_path"] for row in kept["manifest"]}
        unique, report.duplicates = _dedupe(good, seen)
        _check_not_empty(specs, unique)
        rows = list(kept["manifest"])
        for spec in specs:
            rows += _dataset_rows(spec, unique, sizes[spec.name], practice, catch, tmp)
        rows.sort(
            key=lambda r: (
                r["dataset"],
                ROLES.index(r["role"]),
                r["source"],
                r["model"],
                r["sha256"],
            )
        )
        _check_ids_unique(rows)
        report.rows = rows

        write_csv(tmp / MANIFEST, MANIFEST_COLUMNS, rows)
        for name, columns, listed in [
            (DUPLICATES, DUPLICATE_COLUMNS, [*kept["duplicates"], *report.duplicates]),
            (SKIPPED, SKIPPED_COLUMNS, [*kept["skipped"], *report.skipped]),
        ]:
            if listed:
                write_csv(tmp / name, columns, listed)
        _replace_dir(tmp, out)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_specs(
    specs: Sequence[DatasetSpec], out: Path, size: int | None, practice: int, catch: int
) -> None:
    if not specs:
        raise PerceptError("nothing to ingest: give a real folder and at least one --model")
    if size is not None and size < 8:
        raise PerceptError(f"--size {size} is too small; stimuli must be at least 8 px")
    if practice < 0 or catch < 0:
        raise PerceptError("--practice and --catch must be zero or more")
    names = [spec.name for spec in specs]
    for name in names:
        _check_name(name, "dataset")
    if len(set(names)) != len(names):
        raise PerceptError(f"dataset names must differ, got {', '.join(names)}")
    folders: list[tuple[str, Path]] = []
    for spec in specs:
        if not spec.models:
            raise PerceptError(f"dataset {spec.name}: give at least one --model NAME=DIR")
        seen: set[str] = set()
        for model, _ in spec.models:
            _check_name(model, "model")
            if model in seen:
                raise PerceptError(
                    f"model name {model!r} is given twice for dataset {spec.name}; "
                    "give each --model a different NAME"
                )
            seen.add(model)
        for _, _, folder in spec.folders():
            if not folder.path.exists():
                raise PerceptError(f"{folder.label}: folder not found; check the path")
            if not folder.path.is_dir():
                raise PerceptError(f"{folder.label}: is a file, not a folder of images")
            folders.append((folder.label, folder.path.resolve()))
    target = out.resolve()
    for label, path in folders:
        if target == path or target.is_relative_to(path):
            raise PerceptError(
                f"output folder {out} is inside input folder {label}; "
                "choose an output folder outside every input folder"
            )
        if path.is_relative_to(target):
            raise PerceptError(
                f"input folder {label} is inside the output folder {out}, which ingest replaces; "
                "choose another output folder"
            )
    for i, (label_a, a) in enumerate(folders):
        for label_b, b in folders[i + 1 :]:
            if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                raise PerceptError(
                    f"input folders {label_a} and {label_b} overlap; "
                    "give each source its own separate folder"
                )


def _check_name(name: str, what: str) -> None:
    if not NAME_PATTERN.match(name):
        raise PerceptError(
            f"{what} name {name!r} is not allowed; use letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )


def _kept_from_previous(out: Path, replaced: set[str]) -> dict[str, list[dict]]:
    """Rows of datasets already in `out` that this ingest does not replace."""
    kept: dict[str, list[dict]] = {"manifest": [], "duplicates": [], "skipped": []}
    if not out.exists():
        return kept
    if not out.is_dir():
        raise PerceptError(f"output {out} is a file; give a folder path for --out")
    if not (out / MANIFEST).exists():
        if any(out.iterdir()):
            raise PerceptError(
                f"output folder {out} is not empty and holds no {MANIFEST}; "
                "choose a new or empty folder so nothing of yours is overwritten"
            )
        return kept
    sources = {
        "manifest": (MANIFEST, MANIFEST_COLUMNS),
        "duplicates": (DUPLICATES, DUPLICATE_COLUMNS),
        "skipped": (SKIPPED, SKIPPED_COLUMNS),
    }
    for key, (name, columns) in sources.items():
        path = out / name
        if key == "manifest" or path.exists():
            rows = read_manifest(out) if key == "manifest" else read_csv(path, columns)
            kept[key] = [r for r in rows if r["dataset"] not in replaced]
    for row in kept["manifest"]:
        if not image_path(out, row["sha256"]).is_file():
            raise PerceptError(
                f"{image_path(out, row['sha256'])}: listed in {out / MANIFEST} but missing; "
                f"re-ingest dataset {row['dataset']} or start a new output folder"
            )
    return kept


def _list_files(specs: Sequence[DatasetSpec]) -> tuple[list[InputFile], list[dict]]:
    """Every non-hidden file under the input folders in a fixed order, and the non-images."""
    files: list[InputFile] = []
    bad: list[dict] = []
    for spec in specs:
        for source, model, folder in spec.folders():
            found = 0
            for path, refused in _walk(folder.path):
                found += 1
                original = f"{folder.label}/{path.relative_to(folder.path).as_posix()}"
                if refused:
                    bad.append(_skip_row(spec.name, source, model, original, refused))
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    bad.append(
                        _skip_row(
                            spec.name,
                            source,
                            model,
                            original,
                            f"not an image file (percept reads {', '.join(IMAGE_EXTENSIONS)})",
                        )
                    )
                    continue
                files.append(InputFile(spec.name, source, model, path, original))
            if not found:
                raise PerceptError(
                    f"{folder.label}: no files found; put the {source} images of "
                    f"{model or 'the dataset'} there ({', '.join(IMAGE_EXTENSIONS)})"
                )
    return files, bad


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """Every non-hidden file under `root`, each folder's files before its sub-folders, by name.

    Symbolic links are resolved (docs/stimuli.md): one whose target lies inside the same
    input folder is followed, file or folder; a broken link, a link leading out of the
    input folder and a folder link back to a folder above it (a loop) come with the
    reason they are refused, as bad files (`--skip-bad` lists them in skipped.csv).
    Yields (path, "") for a file to read, (path, reason) for a refused link.
    """
    top = root.resolve()

    def walk(folder: Path, above: frozenset[Path]) -> Iterator[tuple[Path, str]]:
        entries = sorted(
            (e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name
        )
        folders = []
        for entry in entries:
            path = Path(entry.path)
            target = path
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield path, "broken symbolic link (its target does not exist)"
                    continue
                if not target.is_relative_to(top):
                    outside = f"symbolic link to {target}, outside the input folder {root}"
                    yield path, f"{outside}; copy the file in instead"
                    continue
            if target.is_dir():
                if target in above:
                    yield path, "symbolic link to a folder above it (a loop)"
                else:
                    folders.append((path, target.resolve()))
            else:
                yield path, ""
        for path, target in folders:
            yield from walk(path, above | {target})

    yield from walk(root, frozenset({top}))


def _skip_row(dataset: str, source: str, model: str, path: str, reason: str) -> dict:
    return {"dataset": dataset, "source": source, "model": model, "path": path, "reason": reason}


def _fail_on_bad(bad: list[dict], skip_bad: bool) -> None:
    if bad and not skip_bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        raise PerceptError(
            f"{first['path']}: {first['reason']}{more}; fix or remove it, or pass --skip-bad "
            "to leave bad files out and list them in skipped.csv"
        )


def _real_size(spec: DatasetSpec, files: list[InputFile], bad: list[dict], max_pixels: int) -> int:
    """The default stimulus size: the shortest side of the smallest real image."""
    sides = []
    for f in files:
        if f.dataset == spec.name and f.source == "real":
            try:
                sides.append(min(image_size(f.path, max_pixels)))
            except BadImageError as e:
                bad.append(_skip_row(f.dataset, f.source, f.model, f.original_path, e.reason))
    if not sides:
        raise PerceptError(f"{spec.real.label}: no readable real images to take the size from")
    return min(sides)


def _normalise_all(
    files: list[InputFile],
    sizes: dict[str, int],
    images_dir: Path,
    bad: list[dict],
    workers: int | None,
    max_pixels: int,
    progress: bool,
) -> None:
    """Normalise every file into `images_dir`, setting its sha256 or adding it to `bad`."""
    tasks = [(str(f.path), sizes[f.dataset], max_pixels, str(images_dir)) for f in files]
    results = parallel_map(
        _normalise_file, tasks, workers=workers, progress=progress, desc="ingest"
    )
    for f, (sha, reason) in zip(files, results, strict=True):
        if sha:
            f.sha256 = sha
        else:
            bad.append(_skip_row(f.dataset, f.source, f.model, f.original_path, reason))


def _normalise_file(task: tuple[str, int, int, str]) -> tuple[str, str]:
    """Worker: (sha256, "") after writing the stimulus, or ("", reason) for a bad file."""
    path, size, max_pixels, images_dir = task
    try:
        data = normalise(path, size, max_pixels)
    except BadImageError as e:
        return "", e.reason
    return write_stimulus(Path(images_dir), data), ""


def write_stimulus(images_dir: Path, data: bytes) -> str:
    """Store PNG bytes under their sha256 name (atomically; safe from parallel workers)."""
    sha = hashlib.sha256(data).hexdigest()
    target = images_dir / f"{sha}.png"
    if not target.exists():
        tmp = images_dir / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return sha


def _check_not_empty(specs: Sequence[DatasetSpec], good: list[InputFile]) -> None:
    present = {(f.dataset, f.source, f.model) for f in good}
    for spec in specs:
        for source, model, folder in spec.folders():
            if (spec.name, source, model) not in present:
                raise PerceptError(
                    f"{folder.label}: no usable images left once bad files and exact "
                    "duplicates of other images are left out"
                )


def _dedupe(files: list[InputFile], seen: dict[str, str]) -> tuple[list[InputFile], list[dict]]:
    """Keep the first file of each content hash; list the others as duplicates."""
    unique, duplicates = [], []
    for f in files:
        if f.sha256 in seen:
            duplicates.append(
                {
                    "dataset": f.dataset,
                    "sha256": f.sha256,
                    "kept_path": seen[f.sha256],
                    "dropped_path": f.original_path,
                    "dropped_source": f.source,
                    "dropped_model": f.model,
                }
            )
        else:
            seen[f.sha256] = f.original_path
            unique.append(f)
    return unique, duplicates


def _dataset_rows(
    spec: DatasetSpec, files: list[InputFile], size: int, practice: int, catch: int, stimdir: Path
) -> list[dict]:
    """Manifest rows for one dataset: roles assigned, catch images made."""
    # Ordering by content hash is a fixed shuffle that ignores file names.
    mine = sorted((f for f in files if f.dataset == spec.name), key=lambda f: f.sha256)
    real = [f for f in mine if f.source == "real"]
    by_model = {model: [f for f in mine if f.model == model] for model, _ in spec.models}

    role = {f.sha256: "main" for f in mine}
    for f in real[:practice]:
        role[f.sha256] = "practice"
    # Practice fakes come from every model in turn, so practice shows the range of fakes.
    names = sorted(by_model)
    taken = dict.fromkeys(names, 0)
    for i in range(practice):
        model = names[i % len(names)]
        if taken[model] < len(by_model[model]):
            role[by_model[model][taken[model]].sha256] = "practice"
            taken[model] += 1
    main_real = [f for f in real if role[f.sha256] == "main"]
    if not main_real:
        raise PerceptError(
            f"dataset {spec.name}: all {len(real)} real images went to practice; "
            "add real images or lower --practice"
        )
    for model in names:
        if taken[model] >= len(by_model[model]):
            raise PerceptError(
                f"model {model}: all {len(by_model[model])} images went to practice; "
                "add images or lower --practice"
            )
    if catch > len(main_real):
        raise PerceptError(
            f"dataset {spec.name}: --catch {catch} needs as many main real images, "
            f"only {len(main_real)} are left; lower --catch"
        )

    rows = [
        _row(spec.name, f.source, f.model, role[f.sha256], f.sha256, f.original_path, size)
        for f in mine
    ]
    for f in main_real[:catch]:
        with Image.open(image_path(stimdir, f.sha256)) as img:
            data = encode_png(catch_image(img.convert("RGB")))
        sha = write_stimulus(stimdir / IMAGES, data)
        rows.append(_row(spec.name, "fake", "", "catch", sha, f.original_path, size))
    return rows


def _row(
    dataset: str, source: str, model: str, role: str, sha: str, original: str, size: int
) -> dict:
    return {
        "image_id": sha[:ID_LENGTH],
        "sha256": sha,
        "dataset": dataset,
        "source": source,
        "model": model,
        "role": role,
        "original_path": original,
        "width": size,
        "height": size,
    }


def _check_ids_unique(rows: list[dict]) -> None:
    ids = [r["image_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise PerceptError("two different images share an image_id prefix; report this as a bug")


def _link(src: Path | str, dst: Path | str) -> None:
    """A hard link where the file system allows it (instant, no space), else a copy."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry_over_other_files(out: Path, tmp: Path) -> None:
    """Keep what else the user keeps in the stimulus folder (notes, a demo's ground truth)."""
    if not (out / MANIFEST).is_file():
        return
    for entry in out.iterdir():
        if entry.name in (MANIFEST, IMAGES, DUPLICATES, SKIPPED):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, tmp / entry.name, symlinks=True, copy_function=_link)
        else:
            _link(entry, tmp / entry.name)


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
