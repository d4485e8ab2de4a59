"""Image features from an encoder: decoded in worker processes, computed once, cached by content.

    features = extract("dinov2-vitl14", paths)               # float32 (N, 1024)
    result = compute("inception", paths, sha256s=manifest_sha256s)
    result.outputs["logits_unbiased"]                         # (N, 1008), from the same pass

Images are decoded (with the same conversions as stimulus ingest) and
preprocessed in DataLoader worker processes; the network runs in this process
under `torch.inference_mode`, on the GPU when there is one.

## Cache (analysis.feature_cache)

Features are cached per image content under $PERCEPT_CACHE_DIR (default
~/.cache/percept/features). A cache folder belongs to one key: encoder name
(`random:` included), weights fingerprint (the weight file's SHA-256),
preprocessing version and outputs; its name is a digest of that key, so
encoders, weights and preprocessing never share rows. Inside, each run writes
*chunks*: `.npz` files holding image SHA-256s and their rows, with a header
repeating the key and a digest of the content that also names the file.
Chunks are written to a temporary file and renamed into place, and never
modified, so two runs at once cannot corrupt each other: each adds its own
chunks, and a duplicated row is harmless. A chunk that cannot be read, whose
header names another key or whose content does not match its digest is
reported with a `CacheWarning`, removed, and its images computed again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from analysis.encoders import Encoder, resolve
from analysis.feature_cache import (  # noqa: F401  (the cache's names are re-exported here)
    CACHE_DIR_ENV,
    CACHE_FORMAT,
    DEFAULT_CACHE_DIR,
    FEATURES_FORMAT,
    FLUSH_ROWS,
    MAX_SMALL_CHUNKS,
    CacheFolder,
    CacheWarning,
    FeatureCache,
    FeatureSet,
    PruneReport,
    _checked_sha256s,
    cache_root,
    cache_stats,
    collect_images,
    hash_files,
    load_features,
    prune_cache,
    save_features,
)
from percept.errors import PerceptError

# --- Public entry points ---------------------------------------------------------------------


def extract(
    encoder: str | Encoder,
    paths: Sequence[str | os.PathLike],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    output: str = "features",
    **options,
) -> np.ndarray:
    """Features of `paths` from `encoder` as a float32 array (N, d); see `compute` for options."""
    result = compute(
        encoder, paths, batch_size=batch_size, workers=workers, device=device, **options
    )
    if output not in result.outputs:
        raise PerceptError(
            f"encoder {result.encoder} has no output {output!r}; it has {', '.join(result.outputs)}"
        )
    return result.outputs[output]


def compute(
    encoder: str | Encoder,
    paths: Sequence[str | os.PathLike],
    *,
    sha256s: Sequence[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    weights: str | os.PathLike | None = None,
    allow_download: bool = False,
    progress: bool = False,
    compact: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Every output of `encoder` for each image in `paths`, using and filling the cache.

    `encoder` is a name (`dinov2-vitl14`, `random:inception`, ...) or a
    resolved `Encoder`. `sha256s`, when given (a stimulus manifest has them),
    are the files' SHA-256s in the order of `paths`; otherwise the files are
    hashed. `workers` decode images (default: the cores but one, at most 8;
    0 decodes in this process). `device` defaults to the GPU when there is one.
    `cache_dir` is a folder, None for $PERCEPT_CACHE_DIR or the default, or
    False to use no cache. A corrupt image is a `PerceptError` naming the file.
    `compact=False` leaves merging small cache chunks to a later run;
    `on_batch(n)` is called after the n-th computed batch.
    """
    if batch_size < 1:
        raise PerceptError(f"batch size must be at least 1, not {batch_size}")
    root = cache_root(cache_dir)
    if isinstance(encoder, str):
        encoder = resolve(encoder, weights=weights, allow_download=allow_download, memo_dir=root)
    paths = [str(p) for p in paths]
    shas = _checked_sha256s(paths, sha256s) if sha256s is not None else hash_files(paths)
    spec = encoder.spec
    outputs = {k: np.empty((len(paths), d), np.float32) for k, d in spec.outputs.items()}
    done = np.zeros(len(paths), dtype=bool)

    cache = FeatureCache(root, cache_key(encoder)) if root is not None else None
    if cache is not None:
        cache.fill(shas, outputs, done)
    cached = int(done.sum())

    # Each distinct image not in the cache is computed once, at its first position.
    first: dict[str, int] = {}
    for i, sha in enumerate(shas):
        if not done[i]:
            first.setdefault(sha, i)
    todo = sorted(first.values())
    if todo:
        _run(
            encoder,
            [paths[i] for i in todo],
            todo,
            shas,
            outputs,
            cache,
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
            on_batch=on_batch,
        )
        for i, sha in enumerate(shas):  # repeated images take the row computed for the first
            if not done[i] and first[sha] != i:
                for name in outputs:
                    outputs[name][i] = outputs[name][first[sha]]
    # Only a run that wrote chunks can have made too many.
    if cache is not None and todo and compact:
        cache.compact(small_rows=FLUSH_ROWS, max_small=MAX_SMALL_CHUNKS)
    return FeatureSet(
        encoder=encoder.name,
        weights_id=encoder.weights_id,
        preprocess_version=spec.preprocess_version,
        pretrained=encoder.pretrained,
        paths=paths,
        sha256=shas,
        outputs=outputs,
        computed=len(todo),
        cached=cached,
    )


def cache_key(encoder: Encoder) -> dict:
    """What a cached row depends on; rows are shared only between equal keys."""
    return {
        "encoder": encoder.name,
        "weights": encoder.weights_id,
        "preprocess": encoder.spec.preprocess_version,
        "outputs": dict(encoder.spec.outputs),
    }


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_workers() -> int:
    """Decoding processes: the cores but one (the model needs the rest), from 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


# --- Extraction --------------------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    """Decodes and preprocesses one image per item; an error is returned, not raised.

    A worker's exception would reach the user wrapped in a worker traceback;
    returned as text, it becomes one clear message naming the file.
    """

    def __init__(self, paths: list[str], preprocess) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        from stimuli.images import BadImageError, load_rgb

        try:
            return i, self.preprocess(load_rgb(self.paths[i])), None
        except BadImageError as e:
            return i, None, e.reason
        except FileNotFoundError:
            return i, None, "file not found"
        except Exception as e:  # any decoder failure is about this file
            return i, None, f"cannot decode ({type(e).__name__}: {e})"


def _collate(
    items: list,
) -> tuple[list[int], torch.Tensor | list[torch.Tensor] | None, list[tuple[int, str]]]:
    errors = [(i, err) for i, _, err in items if err is not None]
    if errors:
        return [], None, errors
    tensors = [x for _, x, _ in items]
    if len({x.shape for x in tensors}) > 1:
        # Encoders that keep the aspect ratio (swav-rn50, simclr-rn50) give inputs of
        # different sizes: they stay a list, and the network sees one size at a time.
        return [i for i, _, _ in items], tensors, []
    return [i for i, _, _ in items], torch.stack(tensors), []


def _forward(
    encoder: Encoder, module, batch: torch.Tensor | list[torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    """The encoder's outputs for a batch, or for a list of inputs, one pass per input size."""
    if isinstance(batch, torch.Tensor):
        return encoder.spec.forward(module, batch.to(device, non_blocking=True))
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, x in enumerate(batch):
        groups.setdefault(tuple(x.shape), []).append(position)
    out: dict[str, torch.Tensor] = {}
    for positions in groups.values():
        part = encoder.spec.forward(module, torch.stack([batch[p] for p in positions]).to(device))
        for name, value in part.items():
            if name not in out:
                out[name] = value.new_empty((len(batch), *value.shape[1:]))
            out[name][positions] = value
    return out


def _worker_init(_: int) -> None:
    # One thread per decoding process: the workers together, not each, fill the cores.
    torch.set_num_threads(1)


def _batches(
    paths: list[str], preprocess, batch_size: int, workers: int, pin: bool
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    loader = torch.utils.data.DataLoader(
        _Images(paths, preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)


def _run(
    encoder: Encoder,
    paths: list[str],
    positions: list[int],
    shas: list[str],
    outputs: dict[str, np.ndarray],
    cache: FeatureCache | None,
    *,
    batch_size: int,
    workers: int | None,
    device: str | torch.device | None,
    progress: bool,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Compute the rows of `paths` into `outputs` at `positions`, flushing them to `cache`."""
    from tqdm import tqdm

    device = _device(device)
    workers = default_workers() if workers is None else workers
    workers = min(workers, max(1, len(paths) // batch_size))  # idle workers only cost start-up
    # Start the workers first: they decode while the network is built and loaded.
    batches = _batches(paths, encoder.spec.preprocess, batch_size, workers, device.type == "cuda")
    module = encoder.module().to(device)
    pending: list[int] = []  # positions computed but not yet written to the cache
    n_batches = 0
    bar = tqdm(
        total=len(paths),
        unit="img",
        desc=encoder.name,
        file=sys.stderr,
        disable=None if progress else True,
    )
    try:
        with torch.inference_mode():
            for local, batch, errors in batches:
                if errors:
                    i, reason = errors[0]
                    more = (
                        f" (and {len(errors) - 1} more in the same batch)"
                        if len(errors) > 1
                        else ""
                    )
                    raise PerceptError(
                        f"{paths[i]}: {reason}{more}; replace or remove the file and run again "
                        "(features computed so far are kept in the cache)"
                    )
                out = _forward(encoder, module, batch, device)
                rows = [positions[i] for i in local]
                for name in outputs:
                    outputs[name][rows] = out[name].float().cpu().numpy()
                pending += rows
                if cache is not None and len(pending) >= FLUSH_ROWS:
                    cache.write(
                        [shas[i] for i in pending], {k: v[pending] for k, v in outputs.items()}
                    )
                    pending = []
                bar.update(len(rows))
                n_batches += 1
                if on_batch is not None:
                    on_batch(n_batches)
    finally:
        bar.close()
        if cache is not None and pending:
            cache.write([shas[i] for i in pending], {k: v[pending] for k, v in outputs.items()})


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise PerceptError(
            f"device {device!r} is not a device name such as cpu, cuda, cuda:1 ({e})"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PerceptError(f"device {device}: no CUDA GPU is visible here; use --device cpu")
    return device
