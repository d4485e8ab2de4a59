"""Human statistics at the scale of Stein et al. 2023: 1,000 participants x 200 trials, 41 models.

Simulates the study (not timed), then times each step of `percept human`:
exclusions, the model table with 10,000 participant-bootstrap resamples,
pairwise comparisons, per-image realism, the joint participant x image
bootstrap, and the mixed model. The baseline in the same run is a plain
Python loop bootstrap of one model's error (what a first version would do),
to show what the vectorised one buys.

    .venv/bin/python benchmarks/human.py [--participants 1000] [--resamples 10000]
        [--mixed-baseline 1000]

Sizes that once crashed (int8 category codes): --participants 500 (a dataset with
<= 126 participants) and --participants 4000 (98 participants on one model).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.bootstrap import resample_means
from analysis.exclusions import ExclusionRules, exclusions, included
from analysis.human import image_table, joint_interval, model_table, model_trials, pairs_table
from analysis.mixed import mixed_table
from analysis.simulation import simulate

# Stein et al. 2023 evaluated 41 models over CIFAR-10, ImageNet, FFHQ and LSUN-Bedroom.
DATASETS = {"cifar10": 10, "imagenet": 12, "ffhq": 11, "lsun-bedroom": 8}


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds:7.2f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument(
        "--mixed-baseline",
        type=int,
        default=1000,
        help="also fit the mixed model at this many participants and print the ratio (0: off)",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    models = [
        (dataset, f"model-{i:02d}", float(rng.uniform(-1, 1)))
        for dataset, count in DATASETS.items()
        for i in range(count)
    ]
    per_model = -(-args.participants // len(models))  # at least --participants in all
    start = time.perf_counter()
    sim = simulate(
        models, participants_per_model=per_model, real_trials=100, fake_trials=100, seed=0
    )
    trials = sim.trials
    print(
        f"simulated {trials['participant_id'].nunique()} participants, {len(trials)} trials, "
        f"{len(models)} models in {time.perf_counter() - start:.1f} s (not counted)"
    )
    total = 0.0
    excluded, s = timed("exclusions", exclusions, trials, ExclusionRules())
    total += s
    kept, s = timed("included trials", included, trials, excluded)
    total += s
    (table, samples), s = timed(
        f"model table ({args.resamples} bootstrap resamples)",
        model_table,
        trials,
        kept,
        excluded,
        resamples=args.resamples,
    )
    total += s
    _, s = timed("pairwise comparisons (Holm)", pairs_table, table, samples)
    total += s
    _, s = timed("per-image realism (Wilson)", image_table, kept)
    total += s
    per = model_trials(kept)
    one = per[(per["dataset"] == models[0][0]) & (per["model"] == models[0][1])]
    timed(
        "joint bootstrap, one model", joint_interval, one, args.resamples, np.random.default_rng(1)
    )
    print(
        f"  {'':<44} {total:7.2f} s  everything but the mixed model and joint bootstrap "
        "(goal <= 10 s)"
    )
    mixed, mixed_s = timed("mixed model (Laplace GLMM, 4 datasets)", mixed_table, per)
    if args.mixed_baseline and args.mixed_baseline != args.participants:
        base = simulate(
            models,
            participants_per_model=-(-args.mixed_baseline // len(models)),
            real_trials=100,
            fake_trials=100,
            seed=0,
        ).trials
        base_per = model_trials(included(base, exclusions(base, ExclusionRules())))
        _, base_s = timed(
            f"mixed model at {args.mixed_baseline} participants", mixed_table, base_per
        )
        print(
            f"  {'':<44} ratio {mixed_s / base_s:.2f} for "
            f"{args.participants / args.mixed_baseline:g}x the participants"
        )
    print(f"  {'':<44} goal <= 60 s for the mixed model at 4,000 participants")
    methods = mixed.drop_duplicates("dataset").set_index("dataset")["mixed_method"]
    print("  mixed_method: " + "; ".join(f"{d}: {m}" for d, m in methods.items()))

    # Baseline: a Python loop over resamples for one model.
    scores = per.groupby("participant_id")["said_fake"].mean().to_numpy()
    loop_rng = np.random.default_rng(2)
    start = time.perf_counter()
    loop = [
        scores[loop_rng.integers(0, scores.size, scores.size)].mean() for _ in range(args.resamples)
    ]
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    vec = resample_means(scores, args.resamples, np.random.default_rng(2))
    vec_s = time.perf_counter() - start
    assert len(loop) == len(vec)
    print(
        f"bootstrap of {scores.size} participants x {args.resamples}: Python loop "
        f"{loop_s:.3f} s, vectorised {vec_s:.3f} s ({loop_s / vec_s:.1f}x)"
    )


if __name__ == "__main__":
    main()
