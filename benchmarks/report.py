"""`percept report` at scale: 4 datasets x 10 models x 8 encoders x 12 metrics, 2,000 resamples.

Writes synthetic human.csv, participant_errors.csv and metrics.csv to a
temporary folder, then times the correlations alone and the whole report
(tables, PNG+SVG figures, index.html) in this process. Goal: the whole report
in <= 60 s.

    .venv/bin/python benchmarks/report.py [--resamples 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import report as reporting
from analysis.correlate import correlations, measures

METRICS = [
    "fd",
    "kd",
    "sw",
    "sw_approx",
    "energy",
    "prdc.precision",
    "prdc.recall",
    "prdc.density",
    "prdc.coverage",
    "vendi",
    "authpct",
    "realism",
]


def inputs(folder: Path, rng: np.random.Generator) -> None:
    human, people, rows = [], [], []
    for dataset in ("cifar10", "imagenet", "ffhq", "lsun-bedroom"):
        for i in range(10):
            error = rng.uniform(0.1, 0.5)
            human.append(
                {
                    "dataset": dataset,
                    "model": f"model-{i}",
                    "error": error,
                    "error_low": error - 0.03,
                    "error_high": error + 0.03,
                }
            )
            people += [
                {
                    "dataset": dataset,
                    "model": f"model-{i}",
                    "participant_id": p,
                    "error": error + rng.normal(0, 0.08),
                }
                for p in range(25)
            ]
            for e in range(8):
                for k, metric in enumerate(METRICS):
                    sign = -1 if k < 5 else 1
                    rows.append(
                        {
                            "dataset": dataset,
                            "model": f"model-{i}",
                            "encoder": f"enc-{e}",
                            "encoder_pretrained": e != 7,
                            "metric": metric,
                            "value": sign * error + rng.normal(0, 0.02 * (e + 1)),
                            "std": np.nan,
                        }
                    )
    pd.DataFrame(human).to_csv(folder / "human.csv", index=False)
    pd.DataFrame(people).to_csv(folder / "participant_errors.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs(folder, np.random.default_rng(0))
        human, metrics, scores, participants, summary = reporting.read_inputs(
            folder / "human.csv", folder / "metrics.csv", None
        )
        start = time.perf_counter()
        correlations(
            measures(human, metrics),
            participants,
            resamples=args.resamples,
            permutations=args.resamples,
        )
        corr_s = time.perf_counter() - start
        start = time.perf_counter()
        result = reporting.build(
            human, metrics, scores, participants, summary, resamples=args.resamples
        )
        reporting.write(result, folder / "report")
        total_s = time.perf_counter() - start
        size = (folder / "report" / "index.html").stat().st_size
    print(f"4 datasets x 10 models x 8 encoders x 12 metrics, {args.resamples} resamples")
    print(f"  correlations alone: {corr_s:6.2f} s")
    print(f"  whole report      : {total_s:6.2f} s  (goal <= 60 s; index.html {size / 1e6:.1f} MB)")
    print(f"  figures and HTML are {total_s / corr_s:.1f}x the correlations")


if __name__ == "__main__":
    main()
