"""analysis.metrics against the reference implementations, closed forms and edge cases.

The references (torch-fidelity, clean-fid, prdc, and scikit-learn for transcriptions
of dgm-eval's code, which is not on PyPI) are test dependencies: the dev extra.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.metrics import METRICS, as_features, evaluate
from analysis.metrics.energy import energy
from analysis.metrics.fd import fd, fd_infinity, fd_infinity_sizes
from analysis.metrics.inception_score import inception_score
from analysis.metrics.kd import kd, kd_subsets
from analysis.metrics.memorization import authpct, ct, ct_modified
from analysis.metrics.prdc import prdc, realism, realism_scores
from analysis.metrics.sw import sw, sw_approx, wasserstein_1d_squared
from analysis.metrics.vendi import vendi


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Gaussian features with a random covariance, like an encoder's."""
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d) + shift


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def test_metric_modules_are_importable_by_their_names():
    # `import analysis.metrics.kd as m` reads the package attribute `kd`: it must be
    # the module kd.py, not the function kd that the package once re-exported.
    import importlib
    import types

    import analysis.metrics
    import analysis.metrics.kd as m

    assert isinstance(m, types.ModuleType) and m.kd is METRICS["kd"].function
    names = ["distances", "energy", "fd", "inception_score", "kd", "memorization", "prdc"]
    for name in [*names, "sw", "validation", "vendi"]:
        module = importlib.import_module(f"analysis.metrics.{name}")
        assert getattr(analysis.metrics, name) is module
    for name, metric in METRICS.items():
        assert callable(metric.function) and not isinstance(metric.function, types.ModuleType)
        assert metric.function.__module__.startswith("analysis.metrics."), name


# --- Fréchet distance ---------------------------------------------------------------------------


# The references' sqrtm: a deprecated argument, and its (expected) singular-matrix warning.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning"),
]


def reference_fds(real: np.ndarray, fake: np.ndarray) -> list[float]:
    """torch-fidelity's formula and clean-fid's (pytorch-fid's sqrtm) on the same statistics."""
    from cleanfid.fid import frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    s1 = {"mu": real.mean(axis=0), "sigma": np.cov(real, rowvar=False)}
    s2 = {"mu": fake.mean(axis=0), "sigma": np.cov(fake, rowvar=False)}
    return [
        fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"],
        float(frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"])),
    ]


@pytest.mark.parametrize("n_real,n_fake,d", [(400, 300, 32), (1500, 900, 64), (200, 200, 8)])
def test_fd_equals_torch_fidelity_and_pytorch_fid(rng, n_real, n_fake, d):
    real, fake = correlated(rng, n_real, d), correlated(rng, n_fake, d, shift=0.2)
    ours = fd(real, fake)
    for ref in reference_fds(real, fake):
        assert rel(ours, ref) <= 1e-9
    assert rel(fd(fake, real), ours) <= 1e-12


def exact_sample(rng, n: int, mean: np.ndarray, cov_sqrt: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and (n - 1) covariance are exactly mean and cov_sqrt^2."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    chol = np.linalg.cholesky(z.T @ z / (n - 1))
    white = np.linalg.solve(chol, z.T).T  # sample covariance exactly the identity
    return white @ cov_sqrt + mean


def test_fd_closed_form_for_known_gaussians(rng):
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.5, 3, d), rng.uniform(0.1, 2, d)
    real = exact_sample(rng, 500, mu1, np.diag(np.sqrt(var1)))
    fake = exact_sample(rng, 300, mu2, np.diag(np.sqrt(var2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert rel(fd(real, fake), expected) <= 1e-10
    # Equal covariances: only the means differ.
    same = exact_sample(rng, 300, mu2, np.diag(np.sqrt(var1)))
    assert rel(fd(real, same), np.sum((mu1 - mu2) ** 2)) <= 1e-10


@pytest.mark.parametrize("n,d", [(500, 32), (20, 64), (64, 64)])
def test_fd_of_identical_sets_is_zero(rng, n, d):
    x = correlated(rng, n, d)
    scale = np.trace(np.cov(x, rowvar=False))
    assert abs(fd(x, x.copy())) <= 1e-10 * scale
    # Translation changes only the mean term.
    assert rel(fd(x, x + 0.5), 0.25 * d) <= 1e-9


def mpmath_fd(real: np.ndarray, fake: np.ndarray) -> float:
    """FD in 40-digit arithmetic: the exact value to compare with when N < d."""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 40

    def stats(x):
        m = mp.matrix(x.tolist())
        n, d = m.rows, m.cols
        mean = [mp.fsum(m[i, j] for i in range(n)) / n for j in range(d)]
        c = mp.matrix(d, d)
        for i in range(d):
            for j in range(i, d):
                c[i, j] = c[j, i] = mp.fsum(
                    (m[k, i] - mean[i]) * (m[k, j] - mean[j]) for k in range(n)
                ) / (n - 1)
        return mean, c

    (m1, s1), (m2, s2) = stats(real), stats(fake)
    e, q = mp.eigsy(s1)
    root = q * mp.diag([mp.sqrt(max(v, 0)) for v in e]) * q.T
    e2, _ = mp.eigsy(root * s2 * root)
    d = len(m1)
    total = mp.fsum((m1[i] - m2[i]) ** 2 + s1[i, i] + s2[i, i] for i in range(d))
    return float(total - 2 * mp.fsum(mp.sqrt(max(v, 0)) for v in e2))


@pytest.mark.parametrize("n_real,n_fake", [(6, 5), (5, 30), (30, 6), (9, 9)])
def test_fd_with_fewer_samples_than_dimensions_is_exact(rng, n_real, n_fake):
    d = 12
    real, fake = correlated(rng, n_real, d), correlated(rng, n_fake, d, shift=0.3)
    ours = fd(real, fake)
    assert math.isfinite(ours)
    assert rel(ours, mpmath_fd(real, fake)) <= 1e-12  # observed ~7e-16
    for ref in reference_fds(real, fake):  # theirs carry ~1e-8 of sqrt-of-rounding noise
        assert rel(ours, ref) <= 1e-6


def test_fd_with_a_singular_covariance_despite_many_samples(rng):
    # A constant feature (a dead unit) makes the covariance singular with N > d: the
    # Cholesky factor fails and the clipped eigendecomposition takes over.
    real, fake = correlated(rng, 300, 16), correlated(rng, 300, 16, shift=0.2)
    real[:, 3] = 1.0
    fake[:, [3, 9]] = 0.5
    ours = fd(real, fake)
    for ref in reference_fds(real, fake):
        assert rel(ours, ref) <= 1e-6
    assert abs(fd(real, real.copy())) <= 1e-10 * np.trace(np.cov(real, rowvar=False))


def relu_features(rng: np.random.Generator, n: int, mixing: np.ndarray) -> np.ndarray:
    """Non-negative features with a decaying spectrum, like a ReLU layer's."""
    return np.maximum(rng.standard_normal((n, mixing.shape[0])) @ mixing, 0.0)


@pytest.mark.parametrize("dead_share", [0.0, 0.02, 0.3])
@pytest.mark.parametrize(("n_real", "n_fake"), [(400, 400), (150, 150), (400, 150)])
def test_fd_with_dead_columns_equals_fd_without_them(rng, dead_share, n_real, n_fake):
    # All-zero columns in both sets add nothing to FD, so FD must equal FD of the live
    # columns. Before the eigenvalue threshold, 2% dead columns cost ~1e-8 relative and
    # 30% ~1e-7 (N > d): Cholesky fails and rounding-level eigenvalues add their roots.
    d = 256
    mixing = rng.standard_normal((d, d)) * np.exp(-np.arange(d) / (d / 8))[:, None]
    real, fake = relu_features(rng, n_real, mixing), relu_features(rng, n_fake, mixing)
    dead = rng.choice(d, size=round(dead_share * d), replace=False)
    real[:, dead] = fake[:, dead] = 0.0
    live = np.setdiff1d(np.arange(d), dead)
    exact = fd(real[:, live], fake[:, live])
    assert rel(fd(real, fake), exact) <= 1e-10
    assert rel(fd(fake, real), exact) <= 1e-10
    if min(n_real, n_fake) > d:  # the live-column value agrees with pytorch-fid's formula
        for ref in reference_fds(real[:, live], fake[:, live]):
            assert rel(exact, ref) <= 1e-9


def test_fd_infinity_follows_dgm_eval_protocol(rng):
    assert list(fd_infinity_sizes(50_000)[[0, -1]]) == [5000, 50_000]
    assert list(fd_infinity_sizes(100)[[0, -1]]) == [10, 100]
    assert len(fd_infinity_sizes(100)) == 15
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    real, fake = correlated(rng, 600, 16), correlated(rng, 400, 16, shift=0.1)
    # The protocol, re-done with torch-fidelity's FD and the same seeded subsets.
    sizes = fd_infinity_sizes(len(fake))
    draw = np.random.default_rng(7)
    s1 = {"mu": real.mean(axis=0), "sigma": np.cov(real, rowvar=False)}
    fds = []
    for size in sizes:
        sub = fake[draw.choice(len(fake), size=int(size), replace=False)]
        s2 = {"mu": sub.mean(axis=0), "sigma": np.cov(sub, rowvar=False)}
        fds.append(fid_statistics_to_metric(s1, s2, False)["frechet_inception_distance"])
    _slope, intercept = np.polyfit(1 / sizes, fds, 1)
    ours = fd_infinity(real, fake, seed=7)
    assert rel(ours, intercept) <= 1e-8
    assert ours < fd(real, fake)  # the 1/N bias is positive
    assert fd_infinity(real, fake, seed=7) == ours
    assert fd_infinity(real, fake, seed=8) != ours


def test_fd_infinity_runs_with_fewer_samples_than_dimensions(rng):
    value = fd_infinity(correlated(rng, 50, 64), correlated(rng, 40, 64, 0.2))
    assert math.isfinite(value)


# --- Kernel distance ---------------------------------------------------------------------------


def test_kd_equals_torch_fidelity_kid_on_the_same_subsets(rng):
    from torch_fidelity.metric_kid import kernel_mmd

    real, fake = correlated(rng, 300, 24), correlated(rng, 250, 24, shift=0.2)
    ours = kd(real, fake, subsets=20, subset_size=100, seed=3)
    options = {
        "kid_kernel": "poly",
        "kid_kernel_poly_degree": 3,
        "kid_kernel_poly_gamma": None,
        "kid_kernel_poly_coef0": 1,
    }
    mmds = [
        kernel_mmd(real[r], fake[f], **options) for r, f in kd_subsets(300, 250, 20, 100, seed=3)
    ]
    assert rel(ours["value"], float(np.mean(mmds))) <= 1e-10
    assert rel(ours["std"], float(np.std(mmds))) <= 1e-10
    assert kd(real, fake, subsets=20, subset_size=100, seed=3) == ours


def test_kd_is_near_zero_for_one_distribution(rng):
    x = correlated(rng, 2000, 8)
    same = kd(x[:1000], x[1000:], subsets=10, subset_size=500)
    apart = kd(x[:1000], x[1000:] + 0.5, subsets=10, subset_size=500)
    assert abs(same["value"]) < 3 * same["std"] + 1e-3
    assert apart["value"] > 10 * abs(same["value"])


def test_kd_needs_enough_samples_for_its_subsets(rng):
    with pytest.raises(ValueError, match=r"fake has 50 samples.*subset_size=100"):
        kd(rng.normal(size=(200, 4)), rng.normal(size=(50, 4)), subset_size=100)


# --- Inception Score ---------------------------------------------------------------------------


@pytest.mark.parametrize("n,splits", [(500, 10), (103, 4)])
def test_inception_score_equals_torch_fidelity(rng, n, splits):
    torch = pytest.importorskip("torch")
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = rng.normal(scale=3, size=(n, 50))
    ours = inception_score(logits, splits=splits, seed=5)
    shuffled = logits[np.random.default_rng(5).permutation(n)]
    ref = isc_features_to_metric(torch.from_numpy(shuffled), splits=splits, shuffle=False)
    assert rel(ours["value"], ref["inception_score_mean"]) <= 1e-12
    assert rel(ours["std"], ref["inception_score_std"]) <= 1e-9


def test_inception_score_closed_forms():
    assert inception_score(np.zeros((100, 10)), splits=2)["value"] == pytest.approx(1)
    confident = np.full((100, 10), -50.0)
    confident[np.arange(100), np.arange(100) % 10] = 50.0  # sure of one class, all used
    assert inception_score(confident, splits=1)["value"] == pytest.approx(10, rel=1e-9)


# --- Precision, recall, density, coverage and realism -------------------------------------------


def reference_prdc(real, fake, k):
    package = pytest.importorskip("prdc")
    out = package.compute_prdc(real, fake, nearest_k=k)
    return {key: float(value) for key, value in out.items()}


@pytest.mark.parametrize(
    "n_real,n_fake,d,k", [(300, 200, 8, 5), (400, 500, 64, 5), (120, 150, 300, 3), (60, 50, 2, 1)]
)
def test_prdc_equals_the_prdc_package_exactly(rng, n_real, n_fake, d, k):
    real, fake = correlated(rng, n_real, d), correlated(rng, n_fake, d, shift=0.3)
    expected = reference_prdc(real, fake, k)
    assert prdc(real, fake, k=k) == expected
    # Blocks of a few rows: the same numbers, whatever the memory budget.
    assert prdc(real, fake, k=k, block_bytes=8 * 500 * 7) == expected


def test_prdc_equals_the_prdc_package_with_ties(rng):
    # Small integers: every distance is exact, so ties are real ties in both.
    real = np.round(rng.normal(scale=1.5, size=(300, 4)))
    fake = np.round(rng.normal(scale=1.5, size=(250, 4)) + 0.3)
    assert prdc(real, fake, k=5, block_bytes=8 * 300 * 11) == reference_prdc(real, fake, 5)


def test_prdc_of_identical_sets(rng):
    x = correlated(rng, 300, 16)
    out = prdc(x, x.copy())
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0


def test_prdc_needs_more_samples_than_k(rng):
    with pytest.raises(ValueError, match=r"real has 5 samples.*k=5"):
        prdc(rng.normal(size=(5, 3)), rng.normal(size=(50, 3)))


def test_realism_scores_equal_dgm_eval(rng):
    import prdc.prdc as reference

    real, fake = correlated(rng, 400, 16), correlated(rng, 300, 16, shift=0.2)
    radii = reference.compute_nearest_neighbour_distances(real, 5)
    dist = reference.compute_pairwise_distance(real, fake)
    small = radii < np.median(radii)
    expected = (radii[small, None] / dist[small]).max(axis=0)  # dgm-eval's prdc.py
    ours = realism_scores(real, fake, block_bytes=8 * 300 * 13)
    # Blocks of rows go through other BLAS kernels than the whole matrix, and which kernel
    # OpenBLAS picks depends on the CPU: equal to the last bit on some machines, not all.
    np.testing.assert_allclose(ours, expected, rtol=1e-14, atol=0)
    assert realism(real, fake) == pytest.approx(float(np.median(expected)), rel=1e-14)


# --- Vendi -------------------------------------------------------------------------------------


def reference_vendi(x, q):
    """dgm-eval's compute_vendi_score: n x n similarity matrix of normalised rows."""
    from sklearn.preprocessing import normalize

    x = normalize(x, axis=1)
    w = np.linalg.eigvalsh(x @ x.T / len(x))
    p = w[w > 0]
    if q == 1:
        return float(np.exp(-(p * np.log(p)).sum()))
    if np.isinf(q):
        return float(np.exp(-np.log(p.max())))
    return float(np.exp(np.log((p**q).sum()) / (1 - q)))


@pytest.mark.parametrize("n,d", [(200, 16), (30, 64)])
@pytest.mark.parametrize("q", [1, 2, 0.5, float("inf")])
def test_vendi_equals_dgm_eval(rng, n, d, q):
    x = correlated(rng, n, d, shift=0.5)
    # With q < 1 the reference's n x n matrix lets rounding-level eigenvalues (1e-17)
    # add p^q (3e-9 each for q = 0.5); the d x d matrix used here has none of them.
    tolerance = 1e-6 if q < 1 else 1e-9
    assert rel(vendi(x, q=q), reference_vendi(x, q)) <= tolerance


def test_vendi_closed_forms(rng):
    assert vendi(np.ones((50, 8))) == pytest.approx(1.0)
    assert vendi(np.eye(12) * 3.0) == pytest.approx(12.0)


# --- Memorisation: authenticity and C_T --------------------------------------------------------


def test_authpct_equals_dgm_eval(rng):
    torch = pytest.importorskip("torch")
    real, fake = correlated(rng, 300, 16), correlated(rng, 200, 16, shift=0.1)
    # dgm-eval's compute_authpct, in float64.
    t_real, t_fake = torch.from_numpy(real), torch.from_numpy(fake)
    real_dists = torch.cdist(t_real, t_real)
    real_dists.fill_diagonal_(float("inf"))
    gen_dists = torch.cdist(t_real, t_fake)
    real_min, gen_min = real_dists.min(axis=0), gen_dists.min(dim=0)
    expected = (100 * (real_min.values[gen_min.indices] < gen_min.values).double().mean()).item()
    assert authpct(real, fake) == pytest.approx(expected, abs=1e-12)
    copies = real[:100] + 1e-6 * rng.normal(size=(100, 16))
    assert authpct(real, copies) == 0.0


def reference_ct(train, test, gen, seed):
    """dgm-eval's compute_CTscore (from Meehan et al.'s code), on scikit-learn."""
    from scipy.stats import mannwhitneyu
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    if train.shape[1] > 64:
        pca = PCA(n_components=64, svd_solver="full").fit(train)
        train, test, gen = pca.transform(train), pca.transform(test), pca.transform(gen)
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(train)
    t_cells, p_cells, q_cells = km.predict(train), km.predict(test), km.predict(gen)
    m, n = len(gen), len(test)
    qm_share = np.bincount(q_cells, minlength=3) / m
    pn_share = np.bincount(p_cells, minlength=3) / n
    zs = np.zeros(3)
    for i in range(3):
        p, q, t = test[p_cells == i], gen[q_cells == i], train[t_cells == i]
        if len(q) == 0:
            continue
        nn = NearestNeighbors(n_neighbors=1).fit(t)
        lq, lp = nn.kneighbors(q)[0], nn.kneighbors(p)[0]
        u = mannwhitneyu(lq, lp, alternative="less").statistic[0]
        zs[i] = (u - (len(p) * len(q) / 2 - 0.5)) / np.sqrt(
            len(p) * len(q) * (len(p) + len(q) + 1) / 12
        )
    keep = qm_share > 20 / m
    return float(pn_share[keep] @ zs[keep] / pn_share[keep].sum())


def three_clusters(rng, n, d, spread=1.0):
    centres = np.zeros((3, d))
    centres[np.arange(3), np.arange(3)] = 12.0  # far apart: any k-means finds these cells
    return centres[rng.integers(3, size=n)] + spread * rng.normal(size=(n, d))


@pytest.mark.parametrize("d", [16, 80])
def test_ct_and_ct_modified_equal_dgm_eval(rng, d):
    train, test = three_clusters(rng, 300, d), three_clusters(rng, 250, d)
    fake = three_clusters(rng, 280, d, spread=0.9)
    ours = ct(train, fake, test=test)
    assert rel(ours, reference_ct(train, test, fake, seed=0)) <= 1e-9
    mod = ct_modified(train, fake, test=test)
    assert rel(mod, reference_ct(fake, test, train, seed=0)) <= 1e-9


def test_ct_detects_copies(rng):
    train, test = three_clusters(rng, 300, 8), three_clusters(rng, 300, 8)
    copies = train[:200] + 1e-3 * rng.normal(size=(200, 8))
    fresh = three_clusters(rng, 200, 8)
    assert ct(train, copies, test=test) < -5
    assert abs(ct(train, fresh, test=test)) < 3
    assert ct_modified(train, copies, test=test) < -3
    # Without a test set, half of the real set is held out (seeded).
    assert ct(train, fresh, seed=1) == ct(train, fresh, seed=1)


def test_ct_needs_enough_fake_samples_per_cell(rng):
    train, test = three_clusters(rng, 300, 8), three_clusters(rng, 300, 8)
    with pytest.raises(ValueError, match="more than 20"):
        ct(train, three_clusters(rng, 30, 8), test=test)


# --- Sliced Wasserstein and energy ----------------------------------------------------------------


def test_wasserstein_1d_with_unequal_sizes_equals_replicated_samples(rng):
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    # Repeating every sample lcm/n times leaves the distribution as it is.
    expected = np.mean((np.sort(np.repeat(x, 3, 0), 0) - np.sort(np.repeat(y, 2, 0), 0)) ** 2, 0)
    np.testing.assert_allclose(wasserstein_1d_squared(x, y), expected, rtol=1e-12)
    same = wasserstein_1d_squared(x, x[::-1])
    np.testing.assert_array_equal(same, np.zeros(3))


def test_sw_closed_forms(rng):
    x = correlated(rng, 500, 16)
    # Zero up to rounding: the projections of reordered rows may round differently.
    assert sw(x, x[::-1].copy()) == pytest.approx(0.0, abs=1e-12)
    shift = rng.normal(size=16)
    # A shifted copy: W_2 along direction u is |u . shift|, and E (u . shift)^2 = |shift|^2 / d.
    value = sw(x, x + shift, projections=4000, seed=2)
    assert value == pytest.approx(np.linalg.norm(shift) / 4, rel=0.05)
    assert sw(x, x + shift, seed=2) == sw(x, x + shift, seed=2)


def test_sw_approx_equals_dgm_eval(rng):
    x, y = correlated(rng, 300, 32), correlated(rng, 200, 32, shift=0.3)
    d = 32
    mx, my = x.mean(0), y.mean(0)
    mean_term = np.linalg.norm(mx - my) ** 2 / d
    m2x = (np.linalg.norm(x - mx, axis=1) ** 2).mean() / d
    m2y = (np.linalg.norm(y - my, axis=1) ** 2).mean() / d
    expected = (mean_term + (m2x**0.5 - m2y**0.5) ** 2) ** 0.5
    assert rel(sw_approx(x, y), expected) <= 1e-12


def test_energy_equals_dgm_eval_for_equal_sizes(rng):
    from scipy.spatial.distance import cdist

    x, y = correlated(rng, 150, 8), correlated(rng, 150, 8, shift=0.4)
    xy, xx, yy = cdist(x, y).sum(), cdist(x, x).sum(), cdist(y, y).sum()
    assert rel(energy(x, y), (2 * xy - xx - yy) / (2 * xy)) <= 1e-9
    assert abs(energy(x, x.copy())) < 1e-9


# --- Registry, validation, edge cases ------------------------------------------------------------


def test_registry_describes_every_metric():
    assert {"fd", "fd_infinity", "kd", "inception_score", "prdc", "realism", "vendi"} <= set(
        METRICS
    )
    assert {"authpct", "ct", "ct_modified", "sw"} <= set(METRICS)
    for name, metric in METRICS.items():
        assert callable(metric.function), name
        assert metric.better in {"lower", "higher", "zero"}, name
        parts = set(metric.measures.split("+"))
        assert parts <= {"fidelity", "diversity", "overall", "memorisation"}, name
        assert metric.definition and "\n" not in metric.definition, name
        assert metric.reference, name


def small_inputs(rng, n=40, d=64):
    return correlated(rng, n, d), correlated(rng, n - 5, d, shift=0.2), rng.normal(size=(n, 10))


OPTIONS = {"kd": {"subset_size": 20}, "ct": {}, "ct_modified": {}}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_finite_with_fewer_samples_than_dimensions(rng, name):
    real, fake, logits = small_inputs(rng, n=70)
    if name in {"ct", "ct_modified"}:  # needs > 20 fake samples in a cell: clustered data
        real, fake = three_clusters(rng, 150, 160), three_clusters(rng, 70, 160)
    rows = evaluate(name, real, fake, logits=logits, seed=1, **OPTIONS.get(name, {}))
    assert rows and all(math.isfinite(value) for _, value, _ in rows), rows


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_every_metric_names_the_array_with_non_finite_values(rng, name, bad):
    real, fake, logits = small_inputs(rng)
    fake[3, 7] = bad
    logits[3, 7] = bad
    which = "logits" if METRICS[name].inputs == "logits" else "fake"
    with pytest.raises(ValueError, match=rf"^{which}: 1 values are NaN or infinite"):
        evaluate(name, real, fake, logits=logits, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", sorted(n for n, m in METRICS.items() if m.inputs == "real+fake"))
def test_every_two_set_metric_rejects_mismatched_dimensions(rng, name):
    with pytest.raises(ValueError, match="real has 64 features per sample but fake has 32"):
        evaluate(name, correlated(rng, 40, 64), correlated(rng, 40, 32))


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros(10), r"2-D array .* got shape \(10,\)"),
        (np.zeros((2, 3, 4)), "2-D array"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a", "b"]]), "numeric"),
        (np.ones((3, 2)) * 1j, "real-valued"),
    ],
)
def test_as_features_rejects_bad_arrays_by_name(array, message):
    with pytest.raises(ValueError, match=rf"^my_array: .*{message}"):
        as_features(array, "my_array")


def test_as_features_gives_float64_and_keeps_values():
    out = as_features(np.arange(6, dtype=np.float32).reshape(3, 2), "x")
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0, 1], [2, 3], [4, 5]])


def test_evaluate_gives_tidy_rows(rng):
    real, fake, _ = small_inputs(rng, n=60, d=8)
    assert [name for name, _, _ in evaluate("prdc", real, fake)] == [
        "prdc.precision",
        "prdc.recall",
        "prdc.density",
        "prdc.coverage",
    ]
    [(name, value, std)] = evaluate("kd", real, fake, subset_size=30, seed=4)
    assert name == "kd" and std > 0
    [(name, value, std)] = evaluate("fd", real, fake)
    assert value == fd(real, fake) and math.isnan(std)
    with pytest.raises(ValueError, match="unknown metric 'fid'"):
        evaluate("fid", real, fake)


def test_importing_metrics_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, analysis.metrics; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
