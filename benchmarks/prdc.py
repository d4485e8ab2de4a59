"""Precision/recall/density/coverage: peak memory and time against the ``prdc`` package.

Each run happens in a fresh Python process that makes its own features (Gaussian,
float64), computes PRDC with k = 5 and reports its peak resident memory (ru_maxrss,
which includes the two input arrays) and the time of the PRDC call alone.

1. ``analysis.metrics.prdc`` at 50,000 x 50,000 samples, d = 1,024 (``prdc`` would
   build three full 50,000 x 50,000 float64 distance matrices of 18.6 GiB each).
2. Both at 20,000 x 20,000 (or the largest of 20,000 / 10,000 / 5,000 whose three
   full matrices fit in the memory available now), with the speed ratio and
   whether the four numbers are identical.

    .venv/bin/python benchmarks/prdc.py [--large 50000] [--small 20000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K = 5


def child(method: str, n: int, d: int) -> None:
    """Run one PRDC computation and print one JSON line: seconds, peak RSS, result."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((n, d))
    fake = rng.standard_normal((n, d)) * 1.05 + 0.02
    data_bytes = real.nbytes + fake.nbytes
    if method == "ours":
        from analysis.metrics.prdc import prdc

        start = time.perf_counter()
        out = prdc(real, fake, k=K)
    else:
        # This file is prdc.py too: take its folder off the path to import the package.
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        import prdc as reference

        start = time.perf_counter()
        out = {key: float(v) for key, v in reference.compute_prdc(real, fake, nearest_k=K).items()}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak": peak, "data": data_bytes, "result": out}))


def run(method: str, n: int, d: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, str(n), str(d)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def gib(x: float) -> str:
    return f"{x / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "N", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    d = args.dim

    big = run("ours", args.large, d)
    print(f"PRDC, k = {K}, d = {d}: {args.large:,} real x {args.large:,} fake samples")
    print(
        f"  analysis.metrics.prdc: {big['seconds']:7.1f} s  peak {gib(big['peak'])} "
        f"(inputs {gib(big['data'])}, so {gib(big['peak'] - big['data'])} beyond them)"
    )
    print(
        f"  (the prdc package builds three {args.large:,} x {args.large:,} float64 distance "
        f"matrices of {gib(8 * args.large**2)} each)"
    )

    # The reference keeps three n x n matrices and, briefly, a fourth; leave room to spare.
    n = next(
        (m for m in (args.small, 10_000, 5_000) if 4 * 8 * m**2 < 0.7 * available_bytes()), None
    )
    if n is None:
        print("  not enough free memory to run the prdc package even at 5,000 samples")
        return
    ref, ours = run("prdc", n, d), run("ours", n, d)
    print(f"PRDC at {n:,} x {n:,}, d = {d}:")
    print(f"  prdc.compute_prdc    : {ref['seconds']:7.1f} s  peak {gib(ref['peak'])}  (baseline)")
    print(f"  analysis.metrics.prdc: {ours['seconds']:7.1f} s  peak {gib(ours['peak'])}")
    print(
        f"  speed ratio (prdc / ours): {ref['seconds'] / ours['seconds']:.2f}x; "
        f"memory ratio: {ref['peak'] / ours['peak']:.1f}x; "
        f"identical results: {ref['result'] == ours['result']}"
    )
    print(f"  {ours['result']}")


if __name__ == "__main__":
    main()
