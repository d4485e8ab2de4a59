"""Feature likelihood score (FLS; Jiralerspong et al. 2023) and its overfitting test, as dgm-eval.

FLS fits a kernel density estimate with one Gaussian per generated sample, each
with its own bandwidth, to the training (real) samples, then asks how likely
held-out test samples are under it, relative to the same construction from real
samples (the *baseline*). As dgm-eval's ``metrics/fls.py`` (from
github.com/marcojira/fls) and its call in ``__main__.py``:

1. Sets of n = min(reduced_n, N_train // 2, N_test, N_fake) samples: test and fake
   are random subsets of their sets; 2n random training samples are split into
   *train* and *baseline*.
2. Every feature is standardised by the mean and the standard deviation (divisor
   N - 1) of all four sets together.
3. For kernel points K (the fake set, or the baseline), log-variances s_j start at
   0 and minimise the negative log-likelihood of the train set,
   NLL = mean_i -logsumexp_j (-|x_i - k_j|^2 / (2 e^{s_j}) - (d / 2) s_j - log M),
   by 100 steps of Adam (lr 0.5, then 0.05 from step 50), s clamped to [-100, 20]
   after each step.
4. gen_nll and baseline_nll are the NLLs of the test set under each fit;
   FLS = 100 exp(-2 (gen_nll - baseline_nll) / d). 100 means the model's samples
   explain unseen real images as well as other real images do; higher is better.

``fls_overfit`` (dgm-eval's ``fls_overfit``, the paper's share of overfit
Gaussians) uses the fit on the fake set: the percentage of fake kernels under which
the train samples are more likely than as many test samples, minus 50. Near 0 for
a model that does not copy; it grows towards 50 as kernels sit on training images.

Departures: float64 on the CPU (dgm-eval: float32 on a GPU); Adam and the
gradient of the NLL are written out in NumPy (the gradient is exact, as
autograd's); the subsets come from ``numpy.random.default_rng(seed)`` (dgm-eval
draws unseeded); and without a test set, a seeded third of the real samples is
held out as the test set (percept has no separate test images).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp, softmax

from analysis.metrics.distances import block_rows, squared_norms
from analysis.metrics.validation import as_feature_pair, as_features, check_positive_int

REDUCED_N = 10_000  # dgm-eval's default --reduced_n
STEPS = 100
LEARNING_RATE = 0.5
MILESTONE = 50  # the learning rate is divided by 10 from this step on
BETAS = (0.9, 0.999)
EPS = 1e-8
CLAMP = (-100.0, 20.0)


def fls(
    real: ArrayLike,
    fake: ArrayLike,
    test: ArrayLike | None = None,
    reduced_n: int = REDUCED_N,
    seed: int = 0,
) -> float:
    """Feature likelihood score of ``fake`` against ``real`` (training) samples. Higher is better.

    ``test`` holds real samples the model did not train on; without it a seeded
    third of ``real`` plays that part (and two thirds the train and baseline sets).
    """
    train, baseline, held_out, gen = _fls_sets(real, fake, test, reduced_n, seed)
    d = train.shape[1]
    gen_nll = _nll(sq_distances(held_out, gen), optimize_log_sigmas(train, gen), d).mean()
    base_nll = _nll(
        sq_distances(held_out, baseline), optimize_log_sigmas(train, baseline), d
    ).mean()
    return float(math.exp(-2.0 * (gen_nll - base_nll) / d) * 100.0)


def fls_overfit(
    real: ArrayLike,
    fake: ArrayLike,
    test: ArrayLike | None = None,
    reduced_n: int = REDUCED_N,
    seed: int = 0,
) -> float:
    """Percentage of fake kernels more likely to have made train than test samples, minus 50.

    Near 0 is best; positive values mean the generated samples sit closer to the
    training images than to unseen real images (memorisation). Sets as :func:`fls`.
    """
    train, _baseline, held_out, gen = _fls_sets(real, fake, test, reduced_n, seed)
    log_sigmas = optimize_log_sigmas(train, gen)
    size = min(held_out.shape[0], train.shape[0])
    d = train.shape[1]
    train_ll = logsumexp(_log_terms(sq_distances(train[:size], gen), log_sigmas, d), axis=0)
    test_ll = logsumexp(_log_terms(sq_distances(held_out[:size], gen), log_sigmas, d), axis=0)
    return float((train_ll - test_ll > 0).mean() * 100.0 - 50.0)


def _fls_sets(
    real: ArrayLike, fake: ArrayLike, test: ArrayLike | None, reduced_n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train, baseline, test and fake sets of equal size, standardised together."""
    real, fake = as_feature_pair(real, fake)
    reduced_n = check_positive_int(reduced_n, "reduced_n", minimum=2)
    rng = np.random.default_rng(seed)
    if test is None:
        n = min(reduced_n, real.shape[0] // 3, fake.shape[0])
        _check_size(n, real, fake, "a third of real (train, baseline and test sets)")
        order = rng.permutation(real.shape[0])
        train, baseline, held_out = (real[order[i * n : (i + 1) * n]] for i in range(3))
        gen = fake[rng.choice(fake.shape[0], n, replace=False)]
    else:
        test = as_features(test, "test")
        if test.shape[1] != real.shape[1]:
            raise ValueError(
                f"real has {real.shape[1]} features per sample but test has {test.shape[1]}; "
                "all must come from the same encoder"
            )
        n = min(reduced_n, real.shape[0] // 2, test.shape[0], fake.shape[0])
        _check_size(n, real, fake, "half of real (train and baseline sets), test")
        held_out = test[rng.choice(test.shape[0], n, replace=False)]
        gen = fake[rng.choice(fake.shape[0], n, replace=False)]
        both = real[rng.choice(real.shape[0], 2 * n, replace=False)]
        train, baseline = both[:n], both[n:]
    everything = np.concatenate([train, baseline, held_out, gen])
    mean, std = everything.mean(axis=0), everything.std(axis=0, ddof=1)
    constant = int((std == 0).sum())
    if constant:
        raise ValueError(
            f"fls: {constant} of {std.size} features are constant over the real and fake "
            "samples used, so they cannot be standardised (dgm-eval would give NaN); use more "
            "images, or drop those features first"
        )
    return tuple((x - mean) / std for x in (train, baseline, held_out, gen))


def _check_size(n: int, real: np.ndarray, fake: np.ndarray, sets: str) -> None:
    if n < 2:
        raise ValueError(
            f"fls needs at least 2 samples in each of its sets ({sets}, fake); "
            f"real has {real.shape[0]} and fake {fake.shape[0]}"
        )


def sq_distances(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from every row of x to every kernel point (N x M)."""
    d2 = x @ kernels.T
    d2 *= -2.0
    d2 += squared_norms(x)[:, None]
    d2 += squared_norms(kernels)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def _log_terms(d2: np.ndarray, log_sigmas: np.ndarray, d: int) -> np.ndarray:
    """log of (1/M) N(x_i; k_j, e^{s_j} I) up to the constant -(d/2) log(2 pi), as the reference."""
    return (-0.5 * d2) / np.exp(log_sigmas) - (d / 2.0) * log_sigmas + math.log(1.0 / d2.shape[1])


def _nll(d2: np.ndarray, log_sigmas: np.ndarray, d: int) -> np.ndarray:
    """Negative log-likelihood of each row under the kernel density estimate."""
    out = np.empty(d2.shape[0])
    step = block_rows(d2.shape[1])
    for start in range(0, d2.shape[0], step):
        rows = slice(start, min(start + step, d2.shape[0]))
        out[rows] = -logsumexp(_log_terms(d2[rows], log_sigmas, d), axis=1)
    return out


def _nll_gradient(d2: np.ndarray, log_sigmas: np.ndarray, d: int) -> np.ndarray:
    """d mean-NLL / d s_j = -(1/N) sum_i softmax_j(terms_i) (d2_ij / (2 e^{s_j}) - d / 2)."""
    grad = np.zeros(d2.shape[1])
    inv_var = np.exp(-log_sigmas)
    step = block_rows(d2.shape[1])
    for start in range(0, d2.shape[0], step):
        rows = slice(start, min(start + step, d2.shape[0]))
        weights = softmax(_log_terms(d2[rows], log_sigmas, d), axis=1)
        grad -= (weights * (0.5 * d2[rows] * inv_var - d / 2.0)).sum(axis=0)
    return grad / d2.shape[0]


def optimize_log_sigmas(x_data: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Log-variances of the kernels that minimise the NLL of x_data: dgm-eval's ``optimize_sigmas``.

    Adam (PyTorch's update, written out) from s = 0 for ``STEPS`` steps, with the
    learning rate divided by 10 from step ``MILESTONE``, and s clamped after each step.
    """
    d2 = sq_distances(x_data, kernels)
    d = x_data.shape[1]
    s = np.zeros(kernels.shape[0])
    m, v = np.zeros_like(s), np.zeros_like(s)
    beta1, beta2 = BETAS
    for t in range(1, STEPS + 1):
        lr = LEARNING_RATE if t <= MILESTONE else LEARNING_RATE * 0.1
        g = _nll_gradient(d2, s, d)
        m += (g - m) * (1.0 - beta1)
        v = v * beta2 + (1.0 - beta2) * (g * g)
        denom = np.sqrt(v) / (1.0 - beta2**t) ** 0.5 + EPS
        s = s - (lr / (1.0 - beta1**t)) * (m / denom)
        np.clip(s, *CLAMP, out=s)
    return s
