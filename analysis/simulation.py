"""Simulated studies with known truth, to test that the statistics recover it.

Signal-detection response model. Each image has a latent realness r: real
images r ~ N(1, image_sd), a model's fakes r ~ N(realism, image_sd) (realism 1:
indistinguishable from real). Participant p has a skill s_p (log-normal) and a
bias b_p (normal); they answer "real" with probability

    P(real) = lapse / 2 + (1 - lapse) * Phi(s_p * r - b_p)

A share of participants are careless (answer at random, fast, and fail the
attention checks). The true error of a model is the expectation of the
participant error (mean of fake and real error) over the participant
population, on the study's own images, computed by Monte Carlo.

The frame `simulate` returns has the columns `analysis.responses.load` gives,
so the whole analysis runs on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

FRAME_MS = 1000 / 60


@dataclass(frozen=True)
class Population:
    """Who takes part, and how they answer."""

    skill_median: float = 1.0
    skill_sd_log: float = 0.35
    bias_sd: float = 0.3
    lapse: float = 0.04
    careless_share: float = 0.05
    image_sd: float = 0.5


@dataclass
class Simulation:
    trials: pd.DataFrame
    truth: pd.DataFrame


def simulate(
    models: list[tuple[str, str, float]],
    *,
    participants_per_model: int = 20,
    real_trials: int = 50,
    fake_trials: int = 50,
    catch_trials: int = 3,
    images_per_model: int = 200,
    real_images_per_dataset: int = 250,
    population: Population = Population(),
    truth_participants: int = 4000,
    seed: int = 0,
) -> Simulation:
    """A one-model-per-participant study of `models` = [(dataset, model, realism), ...]."""
    rng = np.random.default_rng(seed)
    pop = population
    datasets = sorted({d for d, _, _ in models})
    real_r = {d: rng.normal(1.0, pop.image_sd, real_images_per_dataset) for d in datasets}
    fake_r = {(d, m): rng.normal(q, pop.image_sd, images_per_model) for d, m, q in models}

    frames, truth, pid = [], [], 0
    for dataset, model, _ in models:
        n = participants_per_model
        skill = pop.skill_median * np.exp(rng.normal(0, pop.skill_sd_log, n))
        bias = rng.normal(0, pop.bias_sd, n)
        careless = rng.random(n) < pop.careless_share
        reals = np.stack(
            [rng.choice(real_images_per_dataset, real_trials, replace=False) for _ in range(n)]
        )
        fakes = np.stack(
            [rng.choice(images_per_model, fake_trials, replace=False) for _ in range(n)]
        )
        r = np.concatenate([real_r[dataset][reals], fake_r[dataset, model][fakes]], axis=1)
        source = np.array(["real"] * real_trials + ["fake"] * fake_trials)
        image_index = np.concatenate([reals, fakes], axis=1)
        p_real = pop.lapse / 2 + (1 - pop.lapse) * ndtr(skill[:, None] * r - bias[:, None])
        p_real[careless] = 0.5
        said_real = rng.random(p_real.shape) < p_real
        # Catch images: unmistakably fake; careless participants answer at random.
        catch_real = np.where(
            careless[:, None],
            rng.random((n, catch_trials)) < 0.5,
            rng.random((n, catch_trials)) < pop.lapse / 2,
        )
        rt = np.exp(rng.normal(np.log(800), 0.3, (n, real_trials + fake_trials + catch_trials)))
        rt[careless] = rng.uniform(80, 140, (careless.sum(), rt.shape[1]))
        for i in range(n):
            order = rng.permutation(real_trials + fake_trials + catch_trials)
            frames.append(
                _participant_rows(
                    pid + i,
                    dataset,
                    model,
                    source,
                    image_index[i],
                    said_real[i],
                    catch_real[i],
                    rt[i],
                    order,
                    rng,
                )
            )
        pid += n
        truth.append(
            _truth(
                dataset,
                model,
                real_r[dataset],
                fake_r[dataset, model],
                pop,
                truth_participants,
                rng,
            )
        )
    trials = pd.concat(frames, ignore_index=True)
    trials["trial_id"] = np.arange(1, len(trials) + 1)
    return Simulation(trials=trials, truth=pd.DataFrame(truth))


def _participant_rows(
    pid, dataset, model, source, image_index, said_real, catch_real, rt, order, rng
) -> pd.DataFrame:
    n_main = len(source)
    n_catch = len(catch_real)
    kind = np.array(["stimulus"] * n_main + ["catch"] * n_catch)
    src = np.concatenate([source, np.array(["fake"] * n_catch)])
    image = np.concatenate(
        [
            np.where(
                source == "real",
                [f"{dataset}-real-{j}" for j in image_index],
                [f"{dataset}-{model}-{j}" for j in image_index],
            ),
            np.array([f"{dataset}-catch-{j}" for j in range(n_catch)]),
        ]
    )
    said = np.concatenate([said_real, catch_real])
    choice = np.where(said, "real", "fake")
    expected = src
    frames = np.full(n_main + n_catch, 30.0)
    frames[rng.random(frames.size) < 0.01] = 31.0  # an occasional dropped frame
    planned = np.where(kind == "stimulus", 500.0, np.nan)
    frames[kind == "catch"] = np.nan
    sel = order
    n = n_main + n_catch
    return pd.DataFrame(
        {
            "study": "sim",
            "participant_id": pid,
            "condition": f"{dataset}/{model}",
            "position": np.arange(n),
            "block": "main",
            "kind": kind[sel],
            "image_id": image[sel],
            "image_sha256": image[sel],
            "dataset": dataset,
            "source": src[sel],
            "model": np.where(
                src[sel] == "fake", np.where(kind[sel] == "catch", None, model), None
            ),
            "role": np.where(kind[sel] == "catch", "catch", "main"),
            "expected": expected[sel],
            "planned_exposure_ms": planned[sel],
            "answered": True,
            "choice": choice[sel],
            "correct": choice[sel] == expected[sel],
            "rt_ms": rt[sel],
            "frames": frames[sel],
            "frame_ms": FRAME_MS,
            "valid": True,
            "invalid_reason": None,
            "participant_state": "completed",
            "platform_pid": f"worker-{pid}",
            # Made by this simulator, not by people: the report says so (docs/report.md).
            "simulated": True,
        }
    )


def _truth(dataset, model, real_r, fake_r, pop, n, rng) -> dict:
    """Expected participant error on these images, over the participant population."""
    skill = pop.skill_median * np.exp(rng.normal(0, pop.skill_sd_log, n))
    bias = rng.normal(0, pop.bias_sd, n)
    # Careless participants fail attention checks and are excluded; the truth is about
    # the attentive population, as the exclusions intend.
    fake_error = pop.lapse / 2 + (1 - pop.lapse) * ndtr(skill[:, None] * fake_r - bias[:, None])
    real_error = 1 - (
        pop.lapse / 2 + (1 - pop.lapse) * ndtr(skill[:, None] * real_r - bias[:, None])
    )
    fake = fake_error.mean(axis=1)
    real = real_error.mean(axis=1)
    return {
        "dataset": dataset,
        "model": model,
        "error": float(((fake + real) / 2).mean()),
        "fake_error": float(fake.mean()),
        "real_error": float(real.mean()),
    }
