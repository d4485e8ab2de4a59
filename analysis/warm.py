"""The warm path of `percept features`: every row cached, so neither torch nor the network loads.

A cache key (encoder, weights fingerprint, preprocessing version, outputs)
normally comes from `analysis.encoders.resolve`, which imports torch: seconds
of a run that has nothing to compute. So after each run the command records
the key it resolved in `<cache>/.keys/`, with what it depended on: the
encoder code (the SHA-256 of analysis/encoders/*.py), the library versions
that set a random network's values, and the size and modification time of
every weight file `resolve` looked at. The next run with the same encoder and
`--weights` reuses that key only if all of those are unchanged and every
requested row is in the cache; otherwise it takes the ordinary path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from analysis.feature_cache import FeatureCache, FeatureSet

KEYS_DIR = ".keys"
RECORD_FORMAT = "percept-warm-key/1"
WEIGHTS_DIR_ENV = "PERCEPT_WEIGHTS_DIR"  # as analysis.encoders.weights (which imports torch)
DEFAULT_WEIGHTS_DIR = Path("~/.cache/percept/weights")
VERSIONED = ("torch", "timm", "open_clip_torch", "transformers", "numpy", "pillow")


def remember(
    root: Path,
    name: str,
    weights: Path | None,
    key: dict,
    *,
    pretrained: bool,
    describe: str,
    weight_candidates: Iterable[Path],
) -> None:
    """Record the key `name` (with `weights`) resolved to, for the next run's `lookup`."""
    record = {
        "format": RECORD_FORMAT,
        "encoder": name,
        "code": code_fingerprint(),
        "weights": _stamps(weight_candidates),
        "key": key,
        "pretrained": pretrained,
        "describe": describe,
    }
    path = _record_path(root, name, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)  # atomic: concurrent runs write whole records


def lookup(root: Path, name: str, weights: Path | None) -> dict | None:
    """The recorded key of `name` if nothing it depended on has changed since, else None."""
    try:
        record = json.loads(_record_path(root, name, weights).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != RECORD_FORMAT
        or record.get("encoder") != name
        or not isinstance(record.get("key"), dict)
        or not isinstance(record.get("weights"), dict)
    ):
        return None
    if record["weights"] != _stamps(record["weights"]) or record.get("code") != code_fingerprint():
        return None
    return record


def cached_features(
    root: Path, record: dict, paths: list[str], shas: list[str]
) -> FeatureSet | None:
    """The `FeatureSet` of `paths` from the cache alone, or None if any row is missing."""
    key = record["key"]
    outputs = {k: np.empty((len(paths), int(d)), np.float32) for k, d in key["outputs"].items()}
    done = np.zeros(len(paths), dtype=bool)
    FeatureCache(root, key).fill(shas, outputs, done)
    if not done.all():
        return None
    return FeatureSet(
        encoder=key["encoder"],
        weights_id=key["weights"],
        preprocess_version=key["preprocess"],
        pretrained=bool(record["pretrained"]),
        paths=paths,
        sha256=shas,
        outputs=outputs,
        computed=0,
        cached=len(paths),
    )


def weights_dir() -> Path:
    """The folder `resolve` searches for weight files."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def code_fingerprint() -> str:
    """SHA-256 of the encoder code and of the versions of the libraries that shape features."""
    digest = hashlib.sha256()
    folder = Path(__file__).parent / "encoders"
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for package in VERSIONED:
        try:
            digest.update(f"{package}={md.version(package)}\n".encode())
        except md.PackageNotFoundError:
            digest.update(f"{package}=none\n".encode())
    return digest.hexdigest()


def _stamps(paths: Iterable[str | Path]) -> dict[str, list[int] | None]:
    stamps: dict[str, list[int] | None] = {}
    for path in paths:
        try:
            stat = Path(path).stat()
            stamps[str(path)] = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            stamps[str(path)] = None
    return stamps


def _record_path(root: Path, name: str, weights: Path | None) -> Path:
    given = str(Path(weights).expanduser().resolve()) if weights is not None else None
    ident = json.dumps([name, given, str(weights_dir().resolve())])
    return Path(root) / KEYS_DIR / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.json"
