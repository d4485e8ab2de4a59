"""The feature cache and feature files: no torch, so a fully cached run need not import it.

`analysis.features` computes features and fills this cache; `FeatureCache`
holds the rows of one key (see docs/encoders.md, "The cache").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percept.errors import PerceptError

CACHE_DIR_ENV = "PERCEPT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/percept/features")
CACHE_FORMAT = "percept-features-cache/1"
FEATURES_FORMAT = "percept-features/1"
# Computed rows are written to the cache at least this often, so an interrupted
# run keeps most of its work.
FLUSH_ROWS = 4096
# More chunks than this with fewer than FLUSH_ROWS rows each are merged into one.
MAX_SMALL_CHUNKS = 16

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CacheWarning(UserWarning):
    """A cache file that was not trusted (unreadable, foreign or altered) and was removed."""


@dataclass
class FeatureSet:
    """Features of a list of images, in the order given, with what made them."""

    encoder: str
    weights_id: str
    preprocess_version: str
    pretrained: bool
    paths: list[str]
    sha256: list[str]
    outputs: dict[str, np.ndarray]
    computed: int = 0
    cached: int = 0
    computed_per_rank: list[int] | None = None  # under torchrun (analysis.distributed)

    @property
    def features(self) -> np.ndarray:
        """The default output (N, d), float32."""
        return self.outputs["features"]


def hash_files(paths: Sequence[str]) -> list[str]:
    """SHA-256 of each file's bytes; a missing file is a `PerceptError` naming it."""
    shas = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                shas.append(hashlib.file_digest(f, "sha256").hexdigest())
        except FileNotFoundError:
            raise PerceptError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise PerceptError(f"{path}: is a folder, not an image file") from None
    return shas


def collect_images(inputs: Sequence[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """Image paths and their SHA-256s from files, folders and stimulus folders, in order.

    A stimulus folder (one with manifest.csv) gives its images in manifest
    order with the manifest's hashes; a folder gives its image files
    (recursively, sorted, hidden names skipped), hashed; a file is itself.
    """
    from stimuli.images import IMAGE_EXTENSIONS
    from stimuli.manifest import MANIFEST, image_path, read_manifest

    paths: list[str] = []
    shas: list[str | None] = []
    for item in map(Path, inputs):
        if item.is_dir() and (item / MANIFEST).is_file():
            for row in read_manifest(item):
                paths.append(str(image_path(item, row["sha256"])))
                shas.append(row["sha256"])
        elif item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(item).parts)
            )
            if not found:
                raise PerceptError(f"{item}: no image files found ({', '.join(IMAGE_EXTENSIONS)})")
            paths += map(str, found)
            shas += [None] * len(found)
        elif item.is_file():
            paths.append(str(item))
            shas.append(None)
        else:
            raise PerceptError(f"{item}: no such file or folder")
    unknown = [i for i, sha in enumerate(shas) if sha is None]
    for i, sha in zip(unknown, hash_files([paths[i] for i in unknown]), strict=True):
        shas[i] = sha
    return paths, _checked_sha256s(paths, shas)


def _checked_sha256s(paths: list[str], sha256s: Sequence[str]) -> list[str]:
    shas = [str(s).lower() for s in sha256s]
    if len(shas) != len(paths):
        raise PerceptError(
            f"{len(shas)} SHA-256s given for {len(paths)} images; give one per image"
        )
    for path, sha in zip(paths, shas, strict=True):
        if not _HEX64.match(sha):
            raise PerceptError(f"{path}: {sha!r} is not a SHA-256 (64 hex digits)")
    return shas


def cache_root(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    """The cache folder for `cache_dir` (see `compute`); None when caching is off."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()
    return Path(cache_dir)


# --- Cache -------------------------------------------------------------------------------------


class FeatureCache:
    """The cached rows of one key (encoder, weights, preprocessing, outputs): a folder of chunks."""

    def __init__(self, root: Path, key: dict) -> None:
        self.key = key
        self.key_json = json.dumps(key, sort_keys=True)
        digest = hashlib.sha256(f"{CACHE_FORMAT}\n{self.key_json}".encode()).hexdigest()
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", key["encoder"])
        self.dir = Path(root) / f"{name}-{digest[:20]}"

    def chunks(self) -> list[Path]:
        """The chunk files now in the folder (temporary files start with a dot)."""
        try:
            return sorted(
                p for p in self.dir.iterdir() if p.suffix == ".npz" and not p.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """A chunk's SHA-256s and rows, or None (with a warning, the file removed) if untrusted."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
                    return self._distrust(path, "is not a percept feature cache file")
                if header.get("key") != self.key:
                    return self._distrust(
                        path, f"belongs to other settings ({json.dumps(header.get('key'))})"
                    )
                shas = data["sha256"]
                rows = {name: data[f"out_{name}"] for name in self.key["outputs"]}
        except FileNotFoundError:
            return None  # merged away by a concurrent run since it was listed
        except Exception as e:  # a damaged file raises anything from zipfile, numpy or json
            return self._distrust(path, f"cannot be read ({type(e).__name__}: {e})")
        n = len(shas)
        if shas.ndim != 1 or header.get("rows") != n or not all(_HEX64.match(str(s)) for s in shas):
            return self._distrust(path, "has a malformed list of image hashes")
        for name, dim in self.key["outputs"].items():
            if rows[name].shape != (n, dim) or rows[name].dtype != np.float32:
                return self._distrust(path, f"has rows of the wrong shape or type for {name!r}")
        digest = _digest(shas, rows)
        if header.get("digest") != digest or not path.name.startswith(digest[:32]):
            return self._distrust(path, "does not match its digest (altered or corrupted)")
        return shas, rows

    def fill(self, shas: list[str], outputs: dict[str, np.ndarray], done: np.ndarray) -> None:
        """Copy the cached rows of `shas` into `outputs`, marking them in `done`."""
        wanted: dict[str, list[int]] = {}
        for i, sha in enumerate(shas):
            wanted.setdefault(sha, []).append(i)
        for path in self.chunks():
            if not wanted:
                break
            chunk = self.read(path)
            if chunk is None:
                continue
            keys, rows = chunk
            for j, sha in enumerate(keys.tolist()):
                positions = wanted.pop(sha, None)
                if positions is not None:
                    for name in outputs:
                        outputs[name][positions] = rows[name][j]
                    done[positions] = True

    def write(self, shas: list[str], rows: dict[str, np.ndarray]) -> Path:
        """Add a chunk atomically: a temporary file in the folder, renamed into place."""
        keys = np.asarray(shas, dtype="U64")
        rows = {
            name: np.ascontiguousarray(rows[name], dtype=np.float32) for name in self.key["outputs"]
        }
        digest = _digest(keys, rows)
        header = {"format": CACHE_FORMAT, "key": self.key, "rows": len(keys), "digest": digest}
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{digest[:32]}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                arrays = {f"out_{k}": v for k, v in rows.items()}
                np.savez(f, header=np.asarray(json.dumps(header)), sha256=keys, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
            os.replace(tmp, final)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return final

    def compact(self, small_rows: int = FLUSH_ROWS, max_small: int = MAX_SMALL_CHUNKS) -> None:
        """Merge many (over `max_small`) chunks of under `small_rows` rows into one.

        Safe while other runs read or write: the merged chunk is in place before
        the chunks it holds are removed, and only chunks it holds are removed.
        """
        small = [p for p in self.chunks() if _rows_in(p) < small_rows]
        if len(small) <= max_small:
            return
        merged_keys: dict[str, int] = {}
        parts, merged = [], []
        for path in small:
            chunk = self.read(path)
            if chunk is None:
                continue
            keys, rows = chunk
            new = [j for j, sha in enumerate(keys.tolist()) if sha not in merged_keys]
            for sha in keys[new].tolist():
                merged_keys[sha] = 1
            parts.append((keys[new], {k: v[new] for k, v in rows.items()}))
            merged.append(path)
        if not parts:
            return
        keys = np.concatenate([k for k, _ in parts])
        rows = {name: np.concatenate([r[name] for _, r in parts]) for name in self.key["outputs"]}
        kept = self.write(keys.tolist(), rows)
        for path in merged:
            if path != kept:
                path.unlink(missing_ok=True)
        self._remove_stale_temporaries()

    def _distrust(self, path: Path, reason: str) -> None:
        warnings.warn(
            f"feature cache file {path} {reason}: not used, removed; its images are computed again",
            CacheWarning,
            stacklevel=3,
        )
        path.unlink(missing_ok=True)
        return None

    def _remove_stale_temporaries(self) -> None:
        # A run killed while writing leaves its temporary file; a day later it is surely dead.
        for tmp in self.dir.glob(".tmp-*"):
            try:
                if time.time() - tmp.stat().st_mtime > 86400:
                    tmp.unlink(missing_ok=True)
            except OSError:
                pass


@dataclass
class CacheFolder:
    """What one cache folder (one key) holds, for `percept features --cache-stats`."""

    path: Path
    encoder: str
    weights: str
    preprocess: str
    entries: int  # distinct images
    rows: int  # rows in all chunks, duplicates included
    chunks: int
    bytes: int


def cache_stats(root: str | os.PathLike) -> list[CacheFolder]:
    """Every key folder under `root`: its encoder, distinct images, chunks and bytes on disk.

    Chunks are read but not verified against their digests (`prune_cache` does that).
    """
    folders = []
    for folder in _key_folders(Path(root)):
        key, shas, rows, size, chunks = None, set(), 0, 0, 0
        for path in sorted(folder.glob("*.npz")):
            if path.name.startswith("."):
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    header = json.loads(str(data["header"]))
                    keys = data["sha256"].tolist()
                size += path.stat().st_size
            except Exception:  # unreadable or vanished: prune_cache removes the former
                continue
            key = key or header.get("key")
            shas.update(keys)
            rows += len(keys)
            chunks += 1
        if key is None:
            continue
        folders.append(
            CacheFolder(
                folder,
                str(key.get("encoder")),
                str(key.get("weights")),
                str(key.get("preprocess")),
                len(shas),
                rows,
                chunks,
                size,
            )
        )
    return folders


@dataclass
class PruneReport:
    """What `prune_cache` removed."""

    untrusted_chunks: int = 0
    stale_temporaries: int = 0
    duplicate_rows: int = 0
    merged_chunks: int = 0
    empty_folders: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def prune_cache(root: str | os.PathLike, *, stale_after_s: float = 3600.0) -> PruneReport:
    """Tidy a cache folder without losing a row that can be trusted.

    Removes chunks that cannot be read, are not percept cache files or do not
    match their digest or folder (as a read would, with a `CacheWarning`);
    temporary files older than `stale_after_s` (left by killed writers); rows
    stored more than once (concurrent runs may both compute an image), by
    merging each folder's chunks into as few as fit FLUSH_ROWS x 4 rows each;
    and folders left empty. Safe while other runs read and write: merged chunks
    are in place before the ones they replace are removed, and only chunks it
    read are removed. Run it when no run is writing to free the most space.
    """
    root = Path(root)
    report = PruneReport(bytes_before=_tree_bytes(root))
    for folder in _key_folders(root):
        now = time.time()
        for tmp in folder.glob(".tmp-*"):
            try:
                if now - tmp.stat().st_mtime > stale_after_s:
                    tmp.unlink()
                    report.stale_temporaries += 1
            except OSError:
                pass
        key = _folder_key(folder)
        if key is None:  # nothing readable names a key: every chunk here is untrusted
            for path in folder.glob("*.npz"):
                if not path.name.startswith("."):
                    _warn_removed(path, "is not a readable percept feature cache file")
                    report.untrusted_chunks += 1
        else:
            cache = FeatureCache(root, key)
            if cache.dir != folder:  # a folder named for another key: foreign or renamed
                for path in folder.glob("*.npz"):
                    if not path.name.startswith("."):
                        _warn_removed(path, "is in a folder not named for its key")
                        report.untrusted_chunks += 1
            else:
                _merge_folder(cache, report)
        try:
            folder.rmdir()  # only when empty
            report.empty_folders += 1
        except OSError:
            pass
    report.bytes_after = _tree_bytes(root)
    return report


def _merge_folder(cache: FeatureCache, report: PruneReport) -> None:
    read: list[Path] = []
    seen: dict[str, int] = {}
    parts = []
    duplicates = 0
    for path in cache.chunks():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CacheWarning)
            chunk = cache.read(path)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if chunk is None:
            report.untrusted_chunks += bool(caught)
            continue
        keys, rows = chunk
        new = []
        for j, sha in enumerate(keys.tolist()):
            if sha in seen:
                duplicates += 1
            else:
                seen[sha] = 1
                new.append(j)
        read.append(path)
        parts.append((keys[new], {k: v[new] for k, v in rows.items()}))
    per_chunk = FLUSH_ROWS * 4
    if not duplicates and sum(_rows_in(p) < FLUSH_ROWS for p in read) <= 1:
        return  # nothing to gain
    report.duplicate_rows += duplicates
    keys = np.concatenate([k for k, _ in parts])
    rows = {n: np.concatenate([r[n] for _, r in parts]) for n in cache.key["outputs"]}
    kept = set()
    for start in range(0, len(keys), per_chunk):
        stop = start + per_chunk
        kept.add(
            cache.write(keys[start:stop].tolist(), {k: v[start:stop] for k, v in rows.items()})
        )
    for path in read:
        if path not in kept:
            path.unlink(missing_ok=True)
    report.merged_chunks += len(read)


def _key_folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _folder_key(folder: Path) -> dict | None:
    for path in sorted(folder.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
            if header.get("format") == CACHE_FORMAT and isinstance(header.get("key"), dict):
                return header["key"]
        except Exception:
            continue
    return None


def _warn_removed(path: Path, reason: str) -> None:
    warnings.warn(f"feature cache file {path} {reason}: removed", CacheWarning, stacklevel=3)
    path.unlink(missing_ok=True)


def _tree_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def _rows_in(path: Path) -> int:
    # The row count is in the header; reading it does not verify the chunk (read does).
    try:
        with np.load(path, allow_pickle=False) as data:
            return int(json.loads(str(data["header"])).get("rows", 0))
    except Exception:
        return 0


def _digest(keys: np.ndarray, rows: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update("\n".join(keys.tolist()).encode())
    for name in sorted(rows):
        h.update(name.encode())
        h.update(np.ascontiguousarray(rows[name], dtype=np.float32).tobytes())
    return h.hexdigest()


# --- Feature files (what `percept features` writes) ------------------------------------------


def save_features(result: FeatureSet, path: str | os.PathLike) -> None:
    """Write a `FeatureSet` to an .npz file atomically (no pickles; see docs/encoders.md)."""
    path = Path(path)
    meta = {
        "format": FEATURES_FORMAT,
        "encoder": result.encoder,
        "pretrained": result.pretrained,
        "weights": result.weights_id,
        "preprocess": result.preprocess_version,
        "outputs": {k: int(v.shape[1]) for k, v in result.outputs.items()},
    }
    arrays = {
        "meta": np.asarray(json.dumps(meta)),
        "sha256": np.asarray(result.sha256, dtype="U64"),
        "path": np.asarray(result.paths, dtype=str),
        **result.outputs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a file written by `save_features` (or `percept features`)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FEATURES_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            outputs = {name: data[name] for name in meta["outputs"]}
            return FeatureSet(
                encoder=meta["encoder"],
                weights_id=meta["weights"],
                preprocess_version=meta["preprocess"],
                pretrained=bool(meta["pretrained"]),
                paths=data["path"].tolist(),
                sha256=data["sha256"].tolist(),
                outputs=outputs,
            )
    except FileNotFoundError:
        raise PerceptError(f"{path}: file not found") from None
    except Exception as e:
        raise PerceptError(
            f"{path}: not a features file written by `percept features` ({type(e).__name__}: {e})"
        ) from None
