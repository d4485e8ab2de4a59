"""Mixed-effects logistic model of errors: model effects with participant and image intercepts.

    error ~ 0 + model + (1 | participant) + (1 | image)

fitted per dataset by the Laplace approximation, as lme4's `glmer` does with
nAGQ = 1: for given random-effect variances, the mode of (model effects,
participant and image intercepts) is found by Newton's method on sparse
matrices (see `Hessian`); the variances maximise the Laplace-approximated marginal likelihood.
Each model's effect is its log-odds of error for a typical participant on a
typical image, reported as a probability with a Wald 95% interval.

Why not statsmodels' BinomialBayesMixedGLM: on this machine it took minutes
for 10,000 trials (fit_vb and fit_map alike) where studies have 200,000. When
the Laplace fit fails, a logistic GLM with standard errors clustered by
participant is used instead, and `mixed_method` says so with the reason; should
that fail too, the numbers are empty and `mixed_method` gives both reasons.
Category codes are `np.intp` throughout: pandas makes them int8 for up to 127
categories, and sums such as models + participants would wrap around.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse
from scipy.special import expit
from threadpoolctl import threadpool_limits

Z = 1.959963984540054
# Largest dense block of H_EK made at once while forming the Schur complement.
BLOCK_BYTES = 64 * 2**20
COLUMNS = ("dataset", "model", "mixed_error", "mixed_low", "mixed_high", "mixed_method")


def errors(model_trials: pd.DataFrame) -> np.ndarray:
    """1 where the answer was wrong: a real image judged fake, or a fake judged real."""
    said_fake = model_trials["said_fake"].to_numpy(dtype=np.float64)
    return np.where(model_trials["source"] == "real", said_fake, 1 - said_fake)


@dataclass(frozen=True)
class Hessian:
    """H = X^T W X + diag(prior), factored by eliminating its largest diagonal block.

    Every trial has exactly one model, one participant and one image, so the three
    diagonal blocks of H are diagonal matrices. The largest group of columns
    (usually the images) is eliminated through its diagonal D_E, leaving the dense
    Schur complement S = H_KK - H_KE D_E^-1 H_EK over the other two (models and,
    usually, participants), factored by Cholesky. A general sparse LU of all of H
    spent most of the fit in fill-in (8 of 10 s at 300 participants x 2,650 images).
    """

    d: np.ndarray  # diagonal of H_EE
    cross: sparse.csr_array  # H_KE, k x e
    cholesky: tuple[np.ndarray, bool]  # of S, as scipy.linalg.cho_factor gives it

    @classmethod
    def factor(
        cls,
        kept: sparse.csr_array,
        eliminated: sparse.csr_array,
        weights: np.ndarray,
        prior_kept: np.ndarray,
        prior_eliminated: np.ndarray,
    ) -> Hessian:
        """Factor H for the design's kept (n x k) and eliminated (n x e) columns."""
        weighted = kept.multiply(weights[:, None]).tocsr()
        d = eliminated.T @ weights + prior_eliminated
        cross = (weighted.T @ eliminated).tocsr()
        h_kk = (weighted.T @ kept).toarray() + np.diag(prior_kept)
        scaled = cross.copy()
        scaled.data /= d[scaled.indices]  # H_KE D_E^-1
        # Sparse times dense blocks of H_EK: 3x faster than a sparse-sparse product here,
        # and a block of at most BLOCK_BYTES keeps memory bounded for many images.
        columns = cross.T.tocsc()
        step = max(1, BLOCK_BYTES // (8 * cross.shape[1]))
        schur = h_kk
        for start in range(0, schur.shape[1], step):
            stop = min(start + step, schur.shape[1])
            schur[:, start:stop] -= scaled @ columns[:, start:stop].toarray()
        return cls(d, cross, linalg.cho_factor(schur, lower=True))  # LinAlgError if not SPD

    def solve(self, g_kept: np.ndarray, g_eliminated: np.ndarray):
        """x with H x = g, split as g is (kept, eliminated)."""
        x_kept = linalg.cho_solve(self.cholesky, g_kept - self.cross @ (g_eliminated / self.d))
        return x_kept, (g_eliminated - self.cross.T @ x_kept) / self.d

    def log_det(self) -> float:
        return float(np.sum(np.log(self.d)) + 2 * np.sum(np.log(np.diag(self.cholesky[0]))))

    def inverse_kept(self, count: int) -> np.ndarray:
        """The first `count` x `count` block of H^-1 (kept columns come first)."""
        basis = np.eye(self.cholesky[0].shape[0], count)
        return linalg.cho_solve(self.cholesky, basis)[:count]


class LaplaceFit:
    """Newton mode-finding and the Laplace marginal likelihood for one dataset."""

    def __init__(self, y: np.ndarray, fixed: np.ndarray, people: np.ndarray, images: np.ndarray):
        n = len(y)
        self.y = y
        fixed, people, images = (np.asarray(a, dtype=np.intp) for a in (fixed, people, images))
        self.m = int(fixed.max()) + 1
        self.p = int(people.max()) + 1
        self.i = int(images.max()) + 1
        rows = np.repeat(np.arange(n), 3)
        cols = np.stack([fixed, self.m + people, self.m + self.p + images], axis=1).ravel()
        self.design = sparse.csr_array(
            (np.ones(3 * n), (rows, cols)), shape=(n, self.m + self.p + self.i)
        )
        # Kept (factored densely) first: the models, then the smaller of people and images.
        models = np.arange(self.m)
        people_cols = self.m + np.arange(self.p)
        image_cols = self.m + self.p + np.arange(self.i)
        smaller, larger = (
            (people_cols, image_cols) if self.p <= self.i else (image_cols, people_cols)
        )
        self.kept = np.concatenate([models, smaller])
        self.eliminated = larger
        self.kept_design = self.design[:, self.kept]
        self.eliminated_design = self.design[:, self.eliminated]
        self.theta = np.zeros(self.m + self.p + self.i)
        self.last: Hessian | None = None  # H factored at the last mode found

    def precision(self, log_sd: np.ndarray) -> np.ndarray:
        # A very weak prior on the model effects keeps H invertible for perfect separation.
        return np.concatenate(
            [
                np.full(self.m, 1e-4),
                np.full(self.p, np.exp(-2 * log_sd[0])),
                np.full(self.i, np.exp(-2 * log_sd[1])),
            ]
        )

    def factored(self, theta: np.ndarray, prior: np.ndarray) -> Hessian:
        mu = expit(self.design @ theta)
        return Hessian.factor(
            self.kept_design,
            self.eliminated_design,
            mu * (1 - mu),
            prior[self.kept],
            prior[self.eliminated],
        )

    def mode(self, log_sd: np.ndarray, steps: int = 100) -> tuple[float, Hessian]:
        """The posterior mode by Newton steps; returns (log joint density, H factored there).

        Steps reuse the last factored H (from the previous variances' mode) for as
        long as each step at least halves the one before, and refactor H at the
        current point when one does not: a chord iteration. Factoring H is most of
        the cost, and between nearby variances the mode and H barely move, so an
        evaluation usually factors H once, at its mode, for the log determinant.
        """
        prior = self.precision(log_sd)
        theta = self.theta.copy()
        hessian, fresh, previous = self.last, False, np.inf
        for _ in range(steps):
            mu = expit(self.design @ theta)
            gradient = self.design.T @ (self.y - mu) - prior * theta
            while True:
                if hessian is None:
                    hessian, fresh = self.factored(theta, prior), True
                step_kept, step_eliminated = hessian.solve(
                    gradient[self.kept], gradient[self.eliminated]
                )
                size = max(np.max(np.abs(step_kept)), np.max(np.abs(step_eliminated)))
                if fresh or size <= 0.5 * previous:
                    break
                hessian = None  # a stale H that no longer converges fast: refactor here
            theta[self.kept] += step_kept
            theta[self.eliminated] += step_eliminated
            fresh, previous = False, size
            if size < 1e-8:
                break
        hessian = self.factored(theta, prior)
        self.last = hessian
        self.theta = theta
        eta = self.design @ theta
        loglik = np.sum(self.y * eta - np.logaddexp(0, eta))
        u = theta[self.m : self.m + self.p]
        v = theta[self.m + self.p :]
        log_prior = (
            -0.5 * self.p * (np.log(2 * np.pi) + 2 * log_sd[0])
            - 0.5 * u @ u * np.exp(-2 * log_sd[0])
            - 0.5 * self.i * (np.log(2 * np.pi) + 2 * log_sd[1])
            - 0.5 * v @ v * np.exp(-2 * log_sd[1])
        )
        return loglik + log_prior, hessian

    def negative_marginal(self, log_sd: np.ndarray) -> float:
        joint, hessian = self.mode(log_sd)
        return -(joint - 0.5 * hessian.log_det())

    def fit(self) -> tuple[np.ndarray, np.ndarray]:
        """Model effects (log-odds) and their standard errors."""
        best = optimize.minimize(
            self.negative_marginal,
            x0=np.log([0.5, 0.5]),
            method="Nelder-Mead",
            bounds=[(np.log(1e-3), np.log(10.0))] * 2,
            options={"xatol": 0.02, "fatol": 0.01, "maxfev": 80},
        )
        _, hessian = self.mode(best.x)
        effects = self.theta[: self.m]
        covariance = hessian.inverse_kept(self.m)  # the models are the first kept columns
        return effects, np.sqrt(np.diag(covariance))


def codes(values: pd.Series) -> np.ndarray:
    """0-based category codes as np.intp (pandas gives int8 up to 127 categories)."""
    return np.asarray(pd.Categorical(values).codes, dtype=np.intp)


def fit_dataset(trials: pd.DataFrame) -> pd.DataFrame:
    """Model effects of one dataset's trials (columns as COLUMNS).

    Any failure of the Laplace fit (an exception of any kind, or non-finite
    estimates) falls back to the clustered GLM; `mixed_method` names the method
    used and, for a fallback, why.
    """
    y = errors(trials)
    models = pd.Categorical(trials["model"])
    fixed = np.asarray(models.codes, dtype=np.intp)
    people, images = codes(trials["participant_id"]), codes(trials["image_id"])
    try:
        # One BLAS thread: the dense factorisations here are small (models + participants
        # of one dataset), and OpenBLAS's spinning threads made each 20x slower on a
        # machine with other work (0.47 s instead of 0.02 s for 1,072 x 1,072).
        with np.errstate(over="ignore"), threadpool_limits(limits=1, user_api="blas"):
            mean, se = LaplaceFit(y, fixed, people, images).fit()
        require_finite(mean, se)
        method = "laplace-glmm"
    except Exception as e:  # any failure of the fit: fall back, and say why
        laplace = f"Laplace fit failed ({reason(e)})"
        warnings.warn(f"mixed model did not fit: {laplace}; using a clustered GLM", stacklevel=2)
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # statsmodels' separation/convergence warnings
                mean, se = _clustered_glm(y, fixed, people)
            require_finite(mean, se)
            method = f"glm-clustered: {laplace}"
        except Exception as e2:  # nothing fits: empty numbers, both reasons
            mean = se = np.full(len(models.categories), np.nan)
            method = f"not fitted: {laplace}; clustered GLM failed ({reason(e2)})"
    return pd.DataFrame(
        {
            "dataset": trials["dataset"].iloc[0],
            "model": list(models.categories),
            "mixed_error": expit(mean),
            "mixed_low": expit(mean - Z * se),
            "mixed_high": expit(mean + Z * se),
            "mixed_method": method,
        }
    )


def require_finite(mean: np.ndarray, se: np.ndarray) -> None:
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(se))):
        raise FloatingPointError("non-finite estimates")


def reason(error: Exception) -> str:
    """One short line: the exception's type and the first line of its message."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:160]}" if first else type(error).__name__


def _clustered_glm(y, fixed, groups):
    import statsmodels.api as sm

    exog = np.eye(int(fixed.max()) + 1)[fixed]
    result = sm.GLM(y, exog, family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    return np.asarray(result.params), np.asarray(result.bse)


def fallbacks(table: pd.DataFrame) -> dict[str, str]:
    """{dataset: mixed_method} for every dataset whose Laplace fit failed."""
    if "mixed_method" not in table:
        return {}
    methods = table.dropna(subset=["mixed_method"]).groupby("dataset", sort=True)["mixed_method"]
    return {
        dataset: method for dataset, method in methods.first().items() if method != "laplace-glmm"
    }


def mixed_table(model_trials: pd.DataFrame) -> pd.DataFrame:
    """fit_dataset for every dataset."""
    parts = [fit_dataset(group) for _, group in model_trials.groupby("dataset", sort=True)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
