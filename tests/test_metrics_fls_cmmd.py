"""FLS, FLS-overfit, IS-infinity and CMMD against transcriptions of their reference code.

The references are not on PyPI, so each is transcribed here as closely as the
language allows: dgm-eval's ``metrics/fls.py`` (itself from marcojira/fls) in
PyTorch float64 on the CPU with autograd and ``torch.optim.Adam``; Chong &
Forsyth's ``calculate_IS_infinity`` (mchong6/FID_IS_infinity, score_infinity.py)
with scikit-learn's ``LinearRegression``; and CMMD's ``distance.py``
(google-research/google-research, cmmd/) in NumPy instead of JAX. Each gets the
same samples (the same seeded subsets) as percept's function.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from analysis.metrics import METRICS, evaluate
from analysis.metrics.cmmd import cmmd
from analysis.metrics.fd import fd_infinity_sizes
from analysis.metrics.fls import fls, fls_overfit
from analysis.metrics.inception_score import inception_score, inception_score_infinity


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d) + shift


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261130)


# --- FLS: transcription of dgm-eval's metrics/fls.py (float64, CPU) ------------------------------


def _torch():
    return pytest.importorskip("torch")


def ref_preprocess_fls(train, baseline, test, gen):
    torch = _torch()
    train, baseline, test, gen = (
        torch.tensor(x, dtype=torch.float64) for x in (train, baseline, test, gen)
    )
    all_features = torch.cat((train, baseline, test, gen), dim=0)
    mean = all_features.mean(dim=0)
    std = all_features.std(dim=0)
    return [(x - mean) / std for x in (train, baseline, test, gen)]


def ref_compute_dists(x_data, x_kernel):
    torch = _torch()
    return (torch.cdist(x_data, x_kernel) ** 2).detach()


def ref_get_pairwise_likelihood(x_data, x_kernel, log_sigmas):
    torch = _torch()
    dists = ref_compute_dists(x_data, x_kernel)
    exponent_term = (-0.5 * dists) / torch.exp(log_sigmas)
    exponent_term -= (x_kernel.shape[1] / 2) * log_sigmas
    exponent_term += torch.log(torch.tensor(1 / dists.shape[1]))
    return exponent_term


def ref_nll(dists, log_sigmas, dim, detailed=False):
    torch = _torch()
    exponent_term = (-0.5 * dists) / torch.exp(log_sigmas)
    exponent_term -= (dim / 2) * log_sigmas
    exponent_term += torch.log(torch.tensor(1 / dists.shape[1]))
    inner_term = torch.logsumexp(exponent_term, dim=1)
    total_nll = torch.mean(-inner_term)
    if detailed:
        return total_nll, -inner_term
    return total_nll


def ref_optimize_sigmas(x_data, x_kernel, init_val=1):
    torch = _torch()
    log_sigmas = torch.ones(x_kernel.shape[0], requires_grad=True, dtype=torch.float64)
    log_sigmas.data = init_val * log_sigmas
    optim = torch.optim.Adam([log_sigmas], lr=0.5)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[50], gamma=0.1)
    dim = x_data.shape[1]
    dists = ref_compute_dists(x_data, x_kernel)
    for _ in range(100):
        loss = ref_nll(dists, log_sigmas, dim)
        optim.zero_grad()
        loss.backward()
        optim.step()
        scheduler.step()
        with torch.no_grad():
            log_sigmas.data = log_sigmas.clamp(-100, 20).data
    return log_sigmas


def ref_evaluate_set(evaluated_set, x_kernel, log_sigmas):
    dists = ref_compute_dists(evaluated_set, x_kernel)
    return ref_nll(dists, log_sigmas, x_kernel.shape[1], detailed=True)[0].item()


def ref_compute_fls(train, baseline, test, gen):
    train, baseline, test, gen = ref_preprocess_fls(train, baseline, test, gen)
    gen_nll = ref_evaluate_set(test, gen, ref_optimize_sigmas(train, gen, init_val=0))
    baseline_nll = ref_evaluate_set(
        test, baseline, ref_optimize_sigmas(train, baseline, init_val=0)
    )
    diff = 2 * (gen_nll - baseline_nll) / train.shape[1]
    return math.e ** (-diff) * 100


def ref_compute_fls_overfit(train, baseline, test, gen):
    train, baseline, test, gen = ref_preprocess_fls(train, baseline, test, gen)
    gen_log_sigmas = ref_optimize_sigmas(train, gen, init_val=0)
    size = min(test.shape[0], train.shape[0])
    train_lls = ref_get_pairwise_likelihood(train[:size], gen, gen_log_sigmas)
    test_lls = ref_get_pairwise_likelihood(test[:size], gen, gen_log_sigmas)
    ll_diff = train_lls.logsumexp(axis=0) - test_lls.logsumexp(axis=0)
    return ((ll_diff > 0).sum().item() / ll_diff.shape[0]) * 100 - 50


def dgm_eval_sets(real, fake, test, reduced_n, seed):
    """dgm-eval's __main__ subsets (test, fake, then 2n train split in two), from default_rng."""
    rng = np.random.default_rng(seed)
    n = min(reduced_n, real.shape[0] // 2, test.shape[0], fake.shape[0])
    test = test[rng.choice(test.shape[0], n, replace=False)]
    gen = fake[rng.choice(fake.shape[0], n, replace=False)]
    train = real[rng.choice(real.shape[0], 2 * n, replace=False)]
    return train[:n], train[n:], test, gen


@pytest.mark.parametrize(
    "n_real,n_test,n_fake,d,shift", [(160, 60, 100, 16, 0.3), (120, 50, 60, 64, 0.0)]
)
def test_fls_and_fls_overfit_equal_dgm_eval(rng, n_real, n_test, n_fake, d, shift):
    real, test = correlated(rng, n_real, d), correlated(rng, n_test, d)
    fake = correlated(rng, n_fake, d, shift=shift)
    sets = dgm_eval_sets(real, fake, test, 10_000, seed=3)
    ours = fls(real, fake, test=test, seed=3)
    assert rel(ours, ref_compute_fls(*sets)) <= 1e-9
    overfit = fls_overfit(real, fake, test=test, seed=3)
    assert overfit == ref_compute_fls_overfit(*sets)


def test_fls_reduced_n_and_the_held_out_third_without_a_test_set(rng):
    real, fake = correlated(rng, 300, 8), correlated(rng, 200, 8, shift=0.2)
    test = correlated(rng, 100, 8)
    small = dgm_eval_sets(real, fake, test, 40, seed=1)
    assert [s.shape[0] for s in small] == [40] * 4
    ours = fls(real, fake, test=test, reduced_n=40, seed=1)
    assert rel(ours, ref_compute_fls(*small)) <= 1e-9
    # Without a test set: a seeded permutation of real cut into train, baseline and test
    # thirds of n = min(reduced_n, 300 // 3, 200) = 100, then n fake rows.
    draw = np.random.default_rng(5)
    order = draw.permutation(300)
    gen = fake[draw.choice(200, 100, replace=False)]
    train, baseline, held_out = (real[order[i * 100 : (i + 1) * 100]] for i in range(3))
    expected = ref_compute_fls(train, baseline, held_out, gen)
    assert rel(fls(real, fake, seed=5), expected) <= 1e-9


def test_fls_is_about_100_for_samples_from_the_real_distribution(rng):
    real = correlated(rng, 900, 8)
    fake = real[600:]
    same = fls(real[:600], fake, seed=0)
    worse = fls(real[:600], fake * 1.5 + 1.0, seed=0)
    assert 80 < same < 125
    assert worse < same / 2


def test_fls_overfit_detects_copies_of_the_training_samples(rng):
    # 2n = 200 real samples: train is a random half of them, and so about half of n = 100
    # fake kernels drawn from near-copies of all 200 sit on training samples.
    real, test = correlated(rng, 200, 16), correlated(rng, 100, 16)
    copies = real + 1e-3 * rng.standard_normal(real.shape)
    assert fls_overfit(real, copies, test=test, seed=2) > 12
    fresh = correlated(rng, 200, 16)
    assert abs(fls_overfit(real, fresh, test=test, seed=2)) < 15


def test_fls_with_duplicates_and_fewer_samples_than_dimensions(rng):
    real = np.repeat(correlated(rng, 30, 64), 3, axis=0)  # every sample three times, N < d
    fake = np.repeat(correlated(rng, 20, 64, shift=0.1), 2, axis=0)
    value = fls(real, fake, seed=1)
    overfit = fls_overfit(real, fake, seed=1)
    assert math.isfinite(value) and value >= 0 and -50 <= overfit <= 50


def test_fls_needs_enough_samples_and_non_constant_features(rng):
    with pytest.raises(ValueError, match=r"fls needs at least 2 samples .* real has 5 and fake 40"):
        fls(rng.normal(size=(5, 4)), rng.normal(size=(40, 4)))
    with pytest.raises(ValueError, match=r"real has 100 and fake 1$"):
        fls(rng.normal(size=(100, 4)), rng.normal(size=(1, 4)))
    with pytest.raises(ValueError, match="test has 3"):
        fls(rng.normal(size=(100, 4)), rng.normal(size=(40, 4)), test=np.ones((9, 3)))
    flat = rng.normal(size=(60, 4))
    flat[:, 2] = 7.0
    with pytest.raises(ValueError, match="1 of 4 features are constant"):
        fls(flat, flat[:30] + 0.0)


# --- IS-infinity: transcription of Chong & Forsyth's calculate_IS_infinity ----------------------


def ref_calculate_inception_score(pred, num_splits=1):
    scores = []
    for index in range(num_splits):
        pred_chunk = pred[
            index * (pred.shape[0] // num_splits) : (index + 1) * (pred.shape[0] // num_splits), :
        ]
        kl_inception = pred_chunk * (
            np.log(pred_chunk) - np.log(np.expand_dims(np.mean(pred_chunk, 0), 0))
        )
        kl_inception = np.mean(np.sum(kl_inception, 1))
        scores.append(np.exp(kl_inception))
    return np.mean(scores), np.std(scores)


def ref_is_infinity(probabilities, subsets, sizes):
    """calculate_IS_infinity after the logits are computed, with our subsets for its shuffles."""
    from sklearn.linear_model import LinearRegression

    scores = [ref_calculate_inception_score(probabilities[rows])[0] for rows in subsets]
    scores = np.array(scores).reshape(-1, 1)
    reg = LinearRegression().fit(1 / sizes.reshape(-1, 1), scores)
    return reg.predict(np.array([[0]]))[0, 0]


@pytest.mark.parametrize("n,classes", [(3000, 50), (200, 1008), (37, 10)])
def test_inception_score_infinity_equals_chong_and_forsyth(rng, n, classes):
    from scipy.special import softmax

    logits = rng.normal(scale=2.5, size=(n, classes)) + rng.normal(size=classes)
    sizes = fd_infinity_sizes(n)
    draw = np.random.default_rng(9)
    subsets = [draw.choice(n, size=int(s), replace=False) for s in sizes]
    expected = ref_is_infinity(softmax(logits, axis=1), subsets, sizes)
    assert rel(inception_score_infinity(logits, seed=9), expected) <= 1e-9


def test_inception_score_infinity_closed_forms_and_bias(rng):
    # Equally sure of one class each, every class used equally at every size: IS = classes.
    confident = np.full((300, 10), -40.0)
    confident[np.arange(300), np.arange(300) % 10] = 40.0
    rows = np.random.default_rng(0).permutation(300)  # any subset is then nearly balanced
    assert inception_score_infinity(confident[rows]) == pytest.approx(10, rel=0.02)
    # IS_N grows with N towards IS_inf: the extrapolation lies above IS at full N.
    logits = rng.normal(scale=3, size=(2000, 100))
    full = inception_score(logits, splits=1)["value"]
    assert inception_score_infinity(logits) > full


def test_inception_score_infinity_edge_cases(rng):
    with pytest.raises(ValueError, match="logits has 2 samples but inception_score_infinity"):
        inception_score_infinity(rng.normal(size=(2, 10)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        inception_score_infinity(rng.normal(size=(10, 1)))
    # Duplicated samples and more classes than samples still give a finite value.
    dup = np.repeat(rng.normal(size=(5, 1008)), 4, axis=0)
    assert math.isfinite(inception_score_infinity(dup))
    # Extreme logits: the reference's log(softmax) would give NaN; ours stays finite.
    extreme = rng.normal(scale=400, size=(50, 20))
    assert math.isfinite(inception_score_infinity(extreme))


# --- CMMD: transcription of google-research cmmd/distance.py (NumPy for JAX) ------------------


def ref_mmd(x, y, sigma=10, scale=1000):
    x_sqnorms = np.diag(np.matmul(x, x.T))
    y_sqnorms = np.diag(np.matmul(y, y.T))
    gamma = 1 / (2 * sigma**2)
    k_xx = np.mean(
        np.exp(
            -gamma
            * (-2 * np.matmul(x, x.T) + np.expand_dims(x_sqnorms, 1) + np.expand_dims(x_sqnorms, 0))
        )
    )
    k_xy = np.mean(
        np.exp(
            -gamma
            * (-2 * np.matmul(x, y.T) + np.expand_dims(x_sqnorms, 1) + np.expand_dims(y_sqnorms, 0))
        )
    )
    k_yy = np.mean(
        np.exp(
            -gamma
            * (-2 * np.matmul(y, y.T) + np.expand_dims(y_sqnorms, 1) + np.expand_dims(y_sqnorms, 0))
        )
    )
    return scale * (k_xx + k_yy - 2 * k_xy)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n_real,n_fake,d", [(500, 300, 768), (40, 90, 768), (1000, 1000, 32)])
def test_cmmd_equals_the_reference_code(rng, n_real, n_fake, d):
    real = unit(correlated(rng, n_real, d))
    fake = unit(correlated(rng, n_fake, d, shift=0.05))
    assert rel(cmmd(real, fake), ref_mmd(real, fake)) <= 1e-9
    # Not unit length (other encoders' features): the same formula.
    raw_real, raw_fake = correlated(rng, n_real, d) * 3, correlated(rng, n_fake, d, shift=0.5) * 3
    assert rel(cmmd(raw_real, raw_fake), ref_mmd(raw_real, raw_fake)) <= 1e-9


def test_cmmd_is_biased_zero_for_identical_sets_and_in_blocks(rng, monkeypatch):
    x = unit(correlated(rng, 300, 64))
    assert cmmd(x, x.copy()) == pytest.approx(0.0, abs=1e-9)
    # The biased estimate: two samples of one distribution give a positive value.
    y = unit(correlated(np.random.default_rng(1), 300, 64))
    assert cmmd(x, unit(x + 0.01 * y)) > 0
    # Row blocks give the same value as the whole matrices.
    fake = unit(correlated(rng, 250, 64, shift=0.1))
    whole = cmmd(x, fake)
    cmmd_module = importlib.import_module("analysis.metrics.cmmd")
    monkeypatch.setattr(cmmd_module, "block_rows", lambda n: 7)
    assert rel(cmmd(x, fake), whole) <= 1e-10  # only the order of the sums differs


def test_cmmd_edge_cases(rng):
    # N < d and duplicated rows.
    real = np.repeat(unit(correlated(rng, 10, 768)), 3, axis=0)
    fake = unit(correlated(rng, 12, 768, shift=0.1))
    assert rel(cmmd(real, fake), ref_mmd(real, fake)) <= 1e-9
    with pytest.raises(ValueError, match="fake has 1 samples but cmmd needs at least 2"):
        cmmd(real, fake[:1])
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        cmmd(real, fake, sigma=0.0)


# --- Registry ------------------------------------------------------------------------------------


def test_new_metrics_are_registered_with_direction_and_reference():
    assert METRICS["fls"].better == "higher" and "Jiralerspong" in METRICS["fls"].reference
    assert METRICS["fls_overfit"].better == "zero"
    assert METRICS["fls_overfit"].measures == "memorisation"
    isinf = METRICS["inception_score_infinity"]
    assert isinf.better == "higher" and isinf.inputs == "logits" and "Chong" in isinf.reference
    assert METRICS["cmmd"].better == "lower" and "Jayasumana" in METRICS["cmmd"].reference
    rng = np.random.default_rng(0)
    [(name, value, std)] = evaluate("inception_score_infinity", logits=rng.normal(size=(50, 10)))
    assert name == "inception_score_infinity" and math.isfinite(value) and math.isnan(std)
