"""`percept human` at every study size: no crash, finite numbers, full float precision.

pandas stores category codes as int8 up to 127 categories, so sums of counts made
from them wrapped around at 128 (models + participants in the mixed model; twice
the participants of a model in the joint bootstrap). The property test runs the
real command on exports of every shape around those boundaries.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analysis.exclusions import ExclusionRules
from analysis.human import MEASURES, analyse
from analysis.simulation import simulate
from percept.cli import cli
from study_server.export import FILES, data_dictionary

TRIALS_PER_MODEL = 2  # fake and real trials per assigned model: keeps each run short


def study_trials(n_models: int, n_people: int, n_datasets: int, seed: int) -> pd.DataFrame:
    """A completed study with exactly n_people participants per dataset over n_models models.

    With at least as many participants as models, participant p judges model p mod M
    (the one-model design); with fewer, participant p judges every model j with
    j mod P == p, so that every model has someone (the mixed design).
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {
        k: []
        for k in ("participant_id", "condition", "dataset", "source", "model", "image_id", "kind")
    }
    choices = []
    for d in range(n_datasets):
        dataset = f"ds{d}"
        fooled = rng.uniform(0.05, 0.95, n_models)  # each model's chance of passing as real
        for p in range(n_people):
            pid = d * 10_000 + p + 1
            mine = [p % n_models] if n_people >= n_models else list(range(p, n_models, n_people))
            condition = "+".join(f"{dataset}/m{k}" for k in mine)
            for k in mine:
                for _ in range(TRIALS_PER_MODEL):
                    for source in ("fake", "real"):
                        image = (
                            f"{dataset}-m{k}-{rng.integers(20)}"
                            if source == "fake"
                            else f"{dataset}-real-{rng.integers(40)}"
                        )
                        real_chance = fooled[k] if source == "fake" else 0.7
                        rows = (
                            pid,
                            condition,
                            dataset,
                            source,
                            f"m{k}" if source == "fake" else None,
                        )
                        for key, value in zip(columns, (*rows, image, "stimulus"), strict=True):
                            columns[key].append(value)
                        choices.append("real" if rng.random() < real_chance else "fake")
            # One catch image per participant, passed.
            for key, value in zip(
                columns,
                (pid, condition, dataset, "fake", None, f"{dataset}-catch", "catch"),
                strict=True,
            ):
                columns[key].append(value)
            choices.append("fake")
    trials = pd.DataFrame(columns)
    trials["choice"] = choices
    trials["position"] = trials.groupby("participant_id").cumcount()
    return trials


def write_export(trials: pd.DataFrame, out: Path) -> Path:
    """The files `percept export` writes, for the trials of study_trials."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(trials)
    catch = trials["kind"] == "catch"
    full = trials.assign(
        study="sizes",
        trial_id=np.arange(1, n + 1),
        block="main",
        image_sha256=trials["image_id"],
        role=np.where(catch, "catch", "main"),
        expected=trials["source"],
        planned_exposure_ms=np.where(catch, np.nan, 500.0),
        answered=True,
        correct=trials["choice"] == trials["source"],
        rt_ms=800.0,
        frames=np.where(catch, np.nan, 30.0),
        frame_ms=1000 / 60,
        valid=True,
    )
    people = (
        full.groupby("participant_id")
        .agg(condition=("condition", "first"), main_trials=("trial_id", "size"))
        .reset_index()
    )
    people = people.assign(
        study="sizes",
        platform="link",
        platform_pid=[f"worker-{p}" for p in people["participant_id"]],
        state="completed",
        answered_main=people["main_trials"],
    )
    images = full.drop_duplicates("image_id").assign(
        sha256=lambda f: f["image_id"], width=32, height=32, original_path="x.png"
    )
    for name, frame in (("trials.csv", full), ("participants.csv", people), ("images.csv", images)):
        table = frame.reindex(columns=[c.name for c in FILES[name][1]])
        for column in (c.name for c in FILES[name][1] if c.type == "boolean"):
            table[column] = table[column].map({True: "true", False: "false"})
        table.to_csv(out / name, index=False)
    (out / "data_dictionary.md").write_text(data_dictionary())
    return out


def run_human(export: Path, out: Path) -> CliRunner:
    return CliRunner().invoke(
        cli,
        ["human", str(export), "--out", str(out), "--joint", "--resamples", "100", "--seed", "1"],
    )


# Columns that are empty by definition for one participant: SEM needs two.
EMPTY_WITH_ONE_PARTICIPANT = {f"{measure}_sem" for measure in MEASURES}


def check_outputs(out: Path, n_models: int, n_people: int, n_datasets: int) -> None:
    human = pd.read_csv(out / "human.csv")
    assert len(human) == n_datasets * n_models
    assert (human["participants"] > 0).all()
    text = {"dataset", "model", "note", "mixed_method"}
    for column in human.columns.difference(text):
        values = human[column].to_numpy(dtype=np.float64)
        if column in EMPTY_WITH_ONE_PARTICIPANT:
            values = values[human["participants"] > 1]
        assert np.isfinite(values).all(), f"human.csv {column}: {values}"
    # Our fit at every size: the fallback catches any failure, so a crash of the fit
    # (as int8 codes caused) would otherwise pass unseen as `glm-clustered: ...`.
    assert (human["mixed_method"] == "laplace-glmm").all(), human["mixed_method"].unique()
    assert json.loads((out / "human_summary.json").read_text())["mixed_fallbacks"] == {}
    for name in ("pairs.csv", "images.csv", "participant_errors.csv"):
        table = pd.read_csv(out / name)
        numbers = table.select_dtypes("number").to_numpy(dtype=np.float64)
        assert np.isfinite(numbers).all(), name
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == n_datasets * n_models * (n_models - 1) // 2


SIZES = [
    # Participants per dataset around the int8 boundaries (2 models: 31..128 each).
    *((2, p, 1) for p in (1, 63, 64, 126, 127, 128, 255, 256)),
    # Models + participants = 127, 128, 129 with at most 126 participants (the mixed model).
    (7, 120, 1),
    (8, 120, 1),
    (3, 126, 1),
    (20, 108, 1),
    (40, 100, 1),
    # 64..126 participants on one model (the joint bootstrap), and more models than people.
    (4, 400, 1),
    (60, 1, 1),
    (60, 63, 1),
    (60, 600, 1),
    (2, 600, 2),
]


def check_size(n_models: int, n_people: int, n_datasets: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trials = study_trials(n_models, n_people, n_datasets, seed)
        export = write_export(trials, tmp / "export")
        result = run_human(export, tmp / "human")
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        check_outputs(tmp / "human", n_models, n_people, n_datasets)


@settings(
    max_examples=6,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n_models=st.integers(2, 60),
    n_people=st.integers(1, 600),
    n_datasets=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_percept_human_at_every_size(n_models, n_people, n_datasets, seed):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export = write_export(study_trials(n_models, n_people, n_datasets, seed), tmp / "export")
        result = run_human(export, tmp / "human")
        assert result.exit_code == 0, result.output
        check_outputs(tmp / "human", n_models, n_people, n_datasets)


for m, p, d in SIZES:  # every boundary case runs, besides the random ones
    test_percept_human_at_every_size = example(n_models=m, n_people=p, n_datasets=d, seed=0)(
        test_percept_human_at_every_size
    )


def test_every_csv_keeps_full_float_precision(tmp_path):
    models = [("ds", f"m{i}", q) for i, q in enumerate([-0.7, 0.1, 0.6])]
    sim = simulate(models, participants_per_model=6, real_trials=12, fake_trials=12, seed=9)
    result = analyse(sim.trials, ExclusionRules(), resamples=200, joint=True)
    result.write(tmp_path)
    tables = {
        "human.csv": result.human,
        "pairs.csv": result.pairs,
        "images.csv": result.images,
        "exclusions.csv": result.exclusions,
        "participant_errors.csv": result.participants,
    }
    checked = 0
    for name, table in tables.items():
        back = pd.read_csv(tmp_path / name)
        for column in table.select_dtypes("float").columns:
            ours = table[column].to_numpy(dtype=np.float64)
            theirs = back[column].to_numpy(dtype=np.float64)
            assert np.array_equal(ours, theirs, equal_nan=True), f"{name} {column}"
            checked += int(np.isfinite(ours).sum())
    assert checked > 100
    # A value with 17 significant digits survives too (no %.6g anywhere).
    assert not math.isclose(result.human["error"].iloc[0], round(result.human["error"].iloc[0], 6))
