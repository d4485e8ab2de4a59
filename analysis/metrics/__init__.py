"""Metrics of generated images on encoder features: plain functions on float arrays.

Each metric takes the real and the fake features as arrays of shape (N, d) (the
Inception Score takes the fake images' classifier logits, Vendi the fake features
alone), works in float64, takes a ``seed`` wherever randomness enters, and returns
a float or a small dict of floats. :data:`METRICS` names them all, with their
direction, what they measure and a one-line definition; :func:`evaluate` turns any
of them into tidy ``(metric, value, std)`` rows. Definitions, sources and
deviations: docs/metrics.md.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# The metric modules, by their own names: `analysis.metrics.fd` is the module fd.py
# (`import analysis.metrics.kd as m` gives the module); each function is imported
# from its module, e.g. `from analysis.metrics.fd import fd`.
from analysis.metrics import (
    cmmd,
    energy,
    fd,
    fls,
    inception_score,
    kd,
    memorization,
    prdc,
    sw,
    vendi,
)
from analysis.metrics.validation import as_feature_pair, as_features

__all__ = [
    "METRICS",
    "Metric",
    "as_feature_pair",
    "as_features",
    "cmmd",
    "energy",
    "evaluate",
    "fd",
    "fls",
    "inception_score",
    "kd",
    "memorization",
    "prdc",
    "sw",
    "vendi",
]


@dataclass(frozen=True)
class Metric:
    """What the registry knows about one metric."""

    function: Callable[..., float | dict[str, float]]
    better: Literal["lower", "higher", "zero"]  # "zero": closest to 0 is best (C_T)
    measures: str  # fidelity, diversity, overall, memorisation (or a + of them)
    definition: str  # one line
    reference: str
    inputs: Literal["real+fake", "fake", "logits"] = "real+fake"
    default: bool = True  # computed when no metric is named (cheap, needs no extra data)


METRICS: dict[str, Metric] = {
    "fd": Metric(
        fd.fd,
        "lower",
        "overall",
        "Fréchet distance between Gaussians fitted to the real and the fake features",
        "Heusel et al. 2017",
    ),
    "fd_infinity": Metric(
        fd.fd_infinity,
        "lower",
        "overall",
        "FD extrapolated to infinitely many fake samples by a line in 1/N over 15 subset sizes",
        "Chong & Forsyth 2020",
        default=False,
    ),
    "kd": Metric(
        kd.kd,
        "lower",
        "overall",
        "unbiased MMD^2 with a cubic polynomial kernel, mean and std over random subsets (KID)",
        "Bińkowski et al. 2018",
    ),
    "prdc": Metric(
        prdc.prdc,
        "higher",
        "fidelity+diversity",
        "precision, recall, density, coverage from k=5 nearest-neighbour balls",
        "Naeem et al. 2020",
    ),
    "realism": Metric(
        prdc.realism,
        "higher",
        "fidelity",
        "median over fake samples of the largest real k-NN radius / distance (pruned balls)",
        "Kynkäänniemi et al. 2019",
    ),
    "inception_score": Metric(
        inception_score.inception_score,
        "higher",
        "fidelity+diversity",
        "exp of the mean KL divergence between p(y|x) and p(y) over splits of the fake set",
        "Salimans et al. 2016",
        inputs="logits",
        default=False,
    ),
    "vendi": Metric(
        vendi.vendi,
        "higher",
        "diversity",
        "exp of the entropy of the eigenvalues of the fake set's cosine-similarity matrix / n",
        "Friedman & Dieng 2023",
        inputs="fake",
    ),
    "authpct": Metric(
        memorization.authpct,
        "higher",
        "memorisation",
        "percentage of fake samples farther from their nearest real sample than its real neighbour",
        "Alaa et al. 2022",
    ),
    "ct": Metric(
        memorization.ct,
        "zero",
        "memorisation",
        "Z-scored Mann-Whitney test of fake vs held-out nearest-real distances per k-means cell",
        "Meehan et al. 2020",
        default=False,
    ),
    "ct_modified": Metric(
        memorization.ct_modified,
        "higher",
        "memorisation",
        "C_T with real and fake swapped: sensitive to memorisation only",
        "Stein et al. 2023",
        default=False,
    ),
    "sw": Metric(
        sw.sw,
        "lower",
        "overall",
        "sliced 2-Wasserstein distance over 1000 random directions",
        "Bonneel et al. 2015",
    ),
    "sw_approx": Metric(
        sw.sw_approx,
        "lower",
        "overall",
        "Gaussian approximation of sliced 2-Wasserstein from means and second moments",
        "Nadjahi et al. 2021",
    ),
    "energy": Metric(
        energy.energy,
        "lower",
        "overall",
        "normalised energy distance (2E|X-Y| - E|X-X'| - E|Y-Y'|) / 2E|X-Y|",
        "Székely & Rizzo 2013",
        default=False,
    ),
    "inception_score_infinity": Metric(
        inception_score.inception_score_infinity,
        "higher",
        "fidelity+diversity",
        "IS (one split) extrapolated to infinitely many samples by a line in 1/N over 15 sizes",
        "Chong & Forsyth 2020",
        inputs="logits",
        default=False,
    ),
    "fls": Metric(
        fls.fls,
        "higher",
        "overall",
        "100 exp(-2 (NLL of test under a KDE on fake - under one on real) / d), KDE fit to train",
        "Jiralerspong et al. 2023",
        default=False,
    ),
    "fls_overfit": Metric(
        fls.fls_overfit,
        "zero",
        "memorisation",
        "% of fake KDE kernels under which train samples beat as many test samples, minus 50",
        "Jiralerspong et al. 2023",
        default=False,
    ),
    "cmmd": Metric(
        cmmd.cmmd,
        "lower",
        "overall",
        "1000 x biased MMD^2, Gaussian RBF kernel sigma = 10, on CLIP ViT-L/14@336 embeddings",
        "Jayasumana et al. 2024",
    ),
}


def evaluate(
    name: str,
    real: np.ndarray | None = None,
    fake: np.ndarray | None = None,
    *,
    logits: np.ndarray | None = None,
    seed: int = 0,
    **options: object,
) -> list[tuple[str, float, float]]:
    """Compute metric ``name`` and return tidy ``(metric, value, std)`` rows (std NaN if none).

    A float result is one row; a ``{"value", "std"}`` dict is one row; any other dict
    (prdc) is one row per key, named ``name.key``. ``seed`` goes to metrics that draw
    random numbers; ``options`` go to the metric function as keyword arguments.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    metric = METRICS[name]
    if "seed" in inspect.signature(metric.function).parameters:
        options["seed"] = seed
    if metric.inputs == "logits":
        if logits is None:
            raise ValueError(f"{name} needs the fake images' classifier logits")
        result = metric.function(logits, **options)
    elif metric.inputs == "fake":
        result = metric.function(fake, **options)
    else:
        result = metric.function(real, fake, **options)
    if not isinstance(result, dict):
        return [(name, float(result), math.nan)]
    if "value" in result:
        return [(name, float(result["value"]), float(result.get("std", math.nan)))]
    return [(f"{name}.{key}", float(value), math.nan) for key, value in result.items()]
