"""One way to spread per-image work over the cores, with a progress bar."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    progress: bool = False,
    desc: str = "",
    unit: str = "img",
) -> list[R]:
    """`func` applied to every item, results in input order, on `workers` processes.

    `workers` defaults to every core; 1 runs in this process. `func` must be a
    module-level function so the worker processes can import it.
    """
    workers = workers or os.cpu_count() or 1
    results: list[R] = []
    # disable=None lets tqdm hide the bar when stderr is not a terminal (logs, CI).
    disable = None if progress else True
    with tqdm(total=len(items), desc=desc, unit=unit, disable=disable, file=sys.stderr) as bar:
        if workers == 1 or len(items) < 2:
            for item in items:
                results.append(func(item))
                bar.update()
            return results
        pool = ProcessPoolExecutor(max_workers=min(workers, len(items)))
        try:
            # Chunks amortise the inter-process round trip while keeping both cores busy to the end.
            chunk = max(1, min(64, len(items) // (workers * 8)))
            for result in pool.map(func, items, chunksize=chunk):
                results.append(result)
                bar.update()
        finally:
            pool.shutdown(cancel_futures=True)
    return results
