"""Feature extraction over many processes started by torchrun: one shard of the images per rank.

    torchrun --nproc-per-node 4 -m percept features --encoder dinov2-vitl14 IMAGES --out f.npz

Under torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK, ...) with more than
one process, `compute_on_ranks` gives each rank a fixed share of the distinct
images (every WORLD_SIZE-th one, from its RANK on, in order of first
appearance), runs `analysis.features.compute` on that share on the rank's own
device (`cuda:LOCAL_RANK`, or the CPU), and so writes the rows into the
feature cache. After a barrier, rank 0 reads every row back from the cache and
returns the same `FeatureSet` a single process would; the other ranks return
None. The cache is what carries rows between ranks: on several nodes it must
be on a filesystem they share (`--cache-dir`).

A rank that dies loses only the rows it had not yet written to the cache;
running the same command again computes only those. The ranks talk through
torch.distributed's gloo backend (barriers and a handful of counts, never
features), so the same code runs on CPUs and GPUs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from analysis.encoders import Encoder
from analysis.features import (
    FeatureCache,
    FeatureSet,
    _checked_sha256s,
    cache_key,
    cache_root,
    compute,
    default_workers,
)
from percept.errors import PerceptError

# A rank waits at the barrier for the slowest one: a resumed run can leave one rank
# hours of work while the others have none, so the limit is generous.
BARRIER_TIMEOUT = timedelta(days=2)
# A shared filesystem may show another node's new files a little late (NFS caches
# directory listings for up to a minute): rank 0 looks again for this long.
MERGE_WAIT_S = 90.0
# Test hook: "RANK:N" makes that rank die abruptly (os._exit, nothing flushed)
# after computing N batches, as a killed process would; only in torchrun's first
# attempt, so that `--max-restarts` can be seen to resume.
CRASH_ENV = "PERCEPT_TEST_CRASH_AFTER_BATCHES"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the ones torchrun started."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks | None:
    """The ranks torchrun set in the environment; None outside torchrun or with one process."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError as e:
        raise PerceptError(f"torchrun's RANK/WORLD_SIZE variables are not numbers ({e})") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise PerceptError(f"RANK={rank} is outside WORLD_SIZE={world}; start ranks with torchrun")
    return Ranks(rank, world, local_rank, local_world)


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: the process that writes outputs."""
    ranks = ranks_from_env()
    return ranks is None or ranks.main


def shard(shas: Sequence[str], rank: int, world: int) -> list[int]:
    """Positions of this rank's images: every `world`-th distinct image, from `rank` on.

    Depends only on the list, so every rank (and every re-run) agrees on it
    without talking, whatever is in the cache.
    """
    first: dict[str, int] = {}
    for i, sha in enumerate(shas):
        first.setdefault(sha, i)
    return list(first.values())[rank::world]


def rank_device(device: str | torch.device | None, ranks: Ranks) -> torch.device:
    """This rank's device: `cuda:LOCAL_RANK` for auto or cuda on a GPU machine, else the CPU."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise PerceptError("device cuda: no CUDA GPU is visible here; use --device cpu")
        if ranks.local_rank >= torch.cuda.device_count():
            raise PerceptError(
                f"rank {ranks.rank} has LOCAL_RANK {ranks.local_rank} but this node has "
                f"{torch.cuda.device_count()} GPUs; start at most that many processes per node"
            )
        return torch.device("cuda", ranks.local_rank)
    raise PerceptError(
        f"--device {name}: under torchrun each rank uses cuda:LOCAL_RANK; "
        "give --device auto, cuda or cpu"
    )


def compute_on_ranks(
    encoder: Encoder,
    paths: Sequence[str],
    *,
    sha256s: Sequence[str],
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: bool = False,
) -> FeatureSet | None:
    """`compute` in this process, or, under torchrun, this rank's share of it.

    Outside torchrun this is `analysis.features.compute`. Under torchrun every
    rank must call it with the same images; rank 0 gets the whole `FeatureSet`
    (`computed` counts the rows every rank computed), the others None.
    """
    ranks = ranks_from_env()
    if ranks is None:
        return compute(
            encoder,
            paths,
            sha256s=sha256s,
            batch_size=batch_size,
            workers=workers,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
        )
    root = cache_root(cache_dir)
    if root is None:
        raise PerceptError(
            "under torchrun the ranks pass features to rank 0 through the cache; drop --no-cache"
        )
    import torch.distributed as dist

    if not dist.is_initialized():
        _init_process_group(ranks)
    paths = [str(p) for p in paths]
    shas = _checked_sha256s(paths, sha256s)
    mine = shard(shas, ranks.rank, ranks.world)
    if workers is None:  # the node's cores are shared by its ranks
        workers = max(1, default_workers() // ranks.local_world)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        part = compute(
            encoder,
            [paths[i] for i in mine],
            sha256s=[shas[i] for i in mine],
            batch_size=batch_size,
            workers=workers,
            device=rank_device(device, ranks),
            cache_dir=root,
            progress=progress and ranks.main,
            compact=False,  # rank 0 compacts once every rank has written
            on_batch=_crash_hook(ranks),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts: list[tuple[int, int] | None] = [None] * ranks.world
    # Also the barrier: once every rank has sent its counts, every rank has written its rows.
    dist.all_gather_object(counts, (part.computed, part.cached))
    if not ranks.main:
        return None
    result = merge_from_cache(encoder, paths, shas, root)
    result.computed_per_rank = [c[0] for c in counts if c is not None]
    result.computed = sum(result.computed_per_rank)
    result.cached = sum(c[1] for c in counts if c is not None)
    return result


def merge_from_cache(encoder: Encoder, paths: list[str], shas: list[str], root: Path) -> FeatureSet:
    """Every row of `shas` read from the cache (rank 0, after the ranks wrote them)."""
    spec = encoder.spec
    outputs = {k: np.empty((len(paths), d), np.float32) for k, d in spec.outputs.items()}
    done = np.zeros(len(paths), dtype=bool)
    cache = FeatureCache(root, cache_key(encoder))
    deadline = time.monotonic() + MERGE_WAIT_S
    cache.fill(shas, outputs, done)
    while not done.all() and time.monotonic() < deadline:
        time.sleep(2.0)
        cache.fill(shas, outputs, done)
    if not done.all():
        first = paths[int(np.flatnonzero(~done)[0])]
        raise PerceptError(
            f"{int((~done).sum())} rows the other ranks computed (e.g. {first}) are not in "
            f"the cache {cache.dir}; on several nodes put --cache-dir on a filesystem every "
            "node shares, then run the same command again (computed rows are kept)"
        )
    cache.compact()
    return FeatureSet(
        encoder=encoder.name,
        weights_id=encoder.weights_id,
        preprocess_version=spec.preprocess_version,
        pretrained=encoder.pretrained,
        paths=paths,
        sha256=shas,
        outputs=outputs,
    )


def _init_process_group(ranks: Ranks) -> None:
    import torch.distributed as dist

    # torchrun keeps one store across the restarts of `--max-restarts`; without a
    # prefix per attempt, a restarted rank finds the dead attempt's addresses there.
    store, _, _ = next(dist.rendezvous("env://", ranks.rank, ranks.world, timeout=BARRIER_TIMEOUT))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore(f"percept/attempt-{attempt}", store),
        rank=ranks.rank,
        world_size=ranks.world,
        timeout=BARRIER_TIMEOUT,
    )


def _exit_on_sigterm(signum: int, frame) -> None:
    # torchrun stops the other ranks with SIGTERM when one fails, and SLURM does so
    # before a time limit or preemption: exiting through Python runs the `finally`
    # that writes the rows computed so far to the cache.
    sys.exit(128 + signum)


def _crash_hook(ranks: Ranks):
    spec = os.environ.get(CRASH_ENV, "")
    rank, _, after = spec.partition(":")
    if (
        not spec
        or int(rank) != ranks.rank
        or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
    ):
        return None

    def crash(batches: int) -> None:
        if batches >= int(after):
            os._exit(17)

    return crash
