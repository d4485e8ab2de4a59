"""Human statistics: loading exports, exclusions, error rates, intervals, mixed model, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau
from sqlalchemy import select
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis.bootstrap import holm, wilson
from analysis.exclusions import ExclusionRules, exclusions, included
from analysis.human import analyse, model_table, participant_scores
from analysis.mixed import fit_dataset
from analysis.responses import load, load_images
from analysis.simulation import simulate
from percept.cli import cli
from percept.errors import PerceptError

FIVE = [("ds", f"m{i}", q) for i, q in enumerate([-1.0, -0.5, 0.0, 0.5, 0.9])]


# --- A real export, made through the participant API ------------------------------------


@pytest.fixture
def export_dir(app, make_study, tmp_path):
    """An export of three participants who answered through the API."""
    from study_server.export import write_export

    make_study(target=5)
    client = app.test_client()
    for n in range(3):
        token = client.post(
            "/api/v1/studies/t/participants", json={"consent": True, "client_id": f"c-{n:04d}"}
        ).json["token"]
        headers = {"Authorization": f"Bearer {token}"}
        trials = client.get("/api/v1/session", headers=headers).json["trials"]
        with app.app_context():
            from study_server.db import db
            from study_server.models import Trial

            kinds = dict(db.session.execute(select(Trial.id, Trial.kind)).all())
        for i, t in enumerate(trials):
            # Attention checks passed: instructed ones as told, catch images as fake (the
            # session does not say which are catch trials: the database does).
            passed = t["instruction"] or ("fake" if kinds[t["id"]] == "catch" else None)
            body = {
                "choice": passed or ("real" if (i + n) % 3 else "fake"),
                "rt_ms": 400.0 + i,
                "frames": 30,
                "frame_ms": 16.7,
                "displayed_ms": 501.0,
            }
            client.put(f"/api/v1/trials/{t['id']}/response", json=body, headers=headers)
        if n < 2:
            client.post("/api/v1/session/complete", headers=headers)
    out = tmp_path / "export"
    with app.app_context():
        # Answers as a person gives them, 2 s apart (the test client answers at once,
        # which the pacing rule would take for a script).
        from datetime import timedelta

        from study_server.models import Response

        responses = db.session.scalars(select(Response).order_by(Response.id)).all()
        for k, response in enumerate(responses):
            response.received_at = responses[0].received_at + timedelta(seconds=2 * k)
        db.session.commit()
        write_export(out, slug="t")
    return out


def test_load_gives_one_typed_row_per_trial(export_dir, db_url):
    frame = load(export_dir)
    assert len(frame) == 3 * (4 + 10 + 10 + 3)
    assert str(frame["participant_id"].dtype) == "Int64"
    assert str(frame["correct"].dtype) == "boolean"
    assert frame["rt_ms"].dtype == np.float64
    assert frame["participant_state"].value_counts().to_dict() == {"completed": 54, "main": 27}
    # The same data straight from the database, through the study server's exporter.
    from_db = load(db_url)
    pd.testing.assert_frame_equal(from_db, frame)


def test_bad_exports_give_one_clear_message(export_dir, tmp_path):
    trials = (export_dir / "trials.csv").read_text().splitlines()
    header = trials[0].split(",")
    broken = export_dir / "trials.csv"

    broken.write_text("\n".join([",".join(c for c in header if c != "rt_ms")]) + "\n")
    with pytest.raises(PerceptError, match=r"trials.csv: missing column\(s\) rt_ms"):
        load(export_dir)

    column = header.index("rt_ms")
    row = trials[5].split(",")
    row[column] = "fast"
    broken.write_text("\n".join([trials[0], *trials[1:5], ",".join(row), *trials[6:]]) + "\n")
    with pytest.raises(PerceptError, match=r"column rt_ms should hold number values, but row 6"):
        load(export_dir)

    broken.write_text(trials[0] + "\n")
    with pytest.raises(PerceptError, match="no trials"):
        load(export_dir)
    with pytest.raises(PerceptError, match=r"no data_dictionary\.md"):
        load(tmp_path)
    with pytest.raises(PerceptError, match="no such folder"):
        load(tmp_path / "nowhere")


def test_responses_to_unknown_images_are_an_error(export_dir):
    images = load_images(export_dir)
    trials = load(export_dir)
    with pytest.raises(PerceptError, match=r"not in images\.csv"):
        analyse(
            trials,
            ExclusionRules(exclude_incomplete=False),
            images=images.iloc[:5],
            resamples=200,
            mixed=False,
        )


def test_cli_writes_the_four_tables(export_dir, tmp_path):
    out = tmp_path / "human"
    result = CliRunner().invoke(
        cli,
        [
            "human",
            str(export_dir),
            "--out",
            str(out),
            "--resamples",
            "500",
            "--keep-incomplete",
            "--min-median-rt",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 participants: 3 included, 0 excluded" in result.output
    for name in ("human.csv", "pairs.csv", "images.csv", "exclusions.csv"):
        assert (out / name).is_file()
    human = pd.read_csv(out / "human.csv")
    assert set(human["model"]) == {"memoriser", "pca-gauss"}
    config = tmp_path / "bad.toml"
    config.write_text("[exclusions]\nmax_attention_failure = 1\n")
    bad = CliRunner().invoke(
        cli, ["human", str(export_dir), "--out", str(out), "--config", str(config)]
    )
    assert bad.exit_code == 2 and "exclusions.max_attention_failure: unknown key" in bad.output


def test_a_pilot_in_the_same_database_is_not_pooled_with_the_study(
    export_dir, app, make_study, db_url, tmp_path
):
    import json

    make_study(slug="pilot", target=5)
    client = app.test_client()
    token = client.post(
        "/api/v1/studies/pilot/participants", json={"consent": True, "client_id": "pilot-1"}
    ).json["token"]
    trial = client.get("/api/v1/session", headers={"Authorization": f"Bearer {token}"}).json
    client.put(
        f"/api/v1/trials/{trial['trials'][0]['id']}/response",
        json={"choice": "real", "rt_ms": 500.0},
        headers={"Authorization": f"Bearer {token}"},
    )
    quick = ["--resamples", "200", "--no-mixed", "--keep-incomplete"]
    both = CliRunner().invoke(cli, ["human", db_url, "--out", str(tmp_path / "h"), *quick])
    assert both.exit_code == 2, both.output
    assert "holds 2 studies (pilot, t); choose one with --study" in both.output
    for source in (db_url, str(export_dir)):
        out = tmp_path / "h" / str(len(source))
        one = CliRunner().invoke(cli, ["human", source, "--study", "t", "--out", str(out), *quick])
        assert one.exit_code == 0, one.output
        assert "3 participants" in one.output
        summary = json.loads((out / "human_summary.json").read_text())
        assert summary["design"]["studies"] == ["t"]
    missing = CliRunner().invoke(cli, ["human", str(export_dir), "--study", "pilot", "--out", "x"])
    assert missing.exit_code == 2 and "no trials of study 'pilot'; it has t" in missing.output


# --- Simulated studies with known truth ---------------------------------------------------


def test_exclusions_list_every_participant_and_trial_with_a_reason():
    sim = simulate(FIVE, participants_per_model=20, seed=3)
    trials = sim.trials.copy()
    first = trials["participant_id"] == 0
    trials.loc[first, "participant_state"] = "main"
    trials.loc[trials["participant_id"] == 1, "platform_pid"] = "worker-2"
    trials.loc[trials.index[5], ["valid", "invalid_reason"]] = [False, "hidden"]
    excluded = exclusions(trials, ExclusionRules())
    rules = set(excluded["rule"])
    assert {"incomplete", "repeated_id", "attention", "fast", "invalid_trial"} <= rules
    assert excluded["reason"].str.len().min() > 0
    assert (excluded.loc[excluded["rule"] == "incomplete", "participant_id"] == 0).all()
    assert 2 in set(excluded.loc[excluded["rule"] == "repeated_id", "participant_id"])
    kept = included(trials, excluded)
    out = set(excluded.loc[excluded["level"] == "participant", "participant_id"])
    assert not set(kept["participant_id"]) & out
    assert not set(kept["trial_id"]) & set(excluded["trial_id"].dropna())
    # Everything that is neither kept nor a non-stimulus trial is listed.
    stimulus = trials[(trials["kind"] == "stimulus")]
    missing = stimulus[~stimulus["trial_id"].isin(kept["trial_id"])]
    explained = missing["participant_id"].isin(out) | missing["trial_id"].isin(excluded["trial_id"])
    assert explained.all()


def test_bootstrap_interval_covers_the_truth_over_100_studies():
    covered = total = exact = 0
    taus = []
    for seed in range(100):
        sim = simulate(FIVE, participants_per_model=20, seed=seed, truth_participants=2000)
        excluded = exclusions(sim.trials, ExclusionRules())
        kept = included(sim.trials, excluded)
        table, _ = model_table(sim.trials, kept, excluded, resamples=2000, seed=seed)
        both = table.merge(sim.truth, on=["dataset", "model"], suffixes=("", "_true"))
        covered += int(
            (
                (both["error_low"] <= both["error_true"])
                & (both["error_true"] <= both["error_high"])
            ).sum()
        )
        total += len(both)
        exact += list(both.sort_values("error")["model"]) == list(
            both.sort_values("error_true")["model"]
        )
        taus.append(kendalltau(both["error"], both["error_true"]).statistic)
    coverage = covered / total
    print(f"coverage {coverage:.3f} over {total} intervals; exact ranking in {exact}/100")
    assert coverage >= 0.88
    assert exact >= 90 and np.mean(taus) > 0.95


def test_same_answer_to_everything_gives_finite_dprime():
    trials = pd.DataFrame(
        {
            "dataset": "ds",
            "model": "m",
            "participant_id": 1,
            "source": ["real"] * 10 + ["fake"] * 10,
            "said_fake": 0.0,
        }
    )
    (row,) = participant_scores(trials).itertuples()
    assert np.isfinite(row.dprime) and np.isfinite(row.criterion)
    assert row.fake_error == 1.0 and row.real_error == 0.0 and row.error == 0.5
    # "fake" is the signal: never saying it is a strong bias towards "real" (c > 0).
    assert row.dprime == pytest.approx(0.0) and row.criterion > 0


def test_a_model_with_nobody_left_gets_a_row_with_the_reason():
    sim = simulate(FIVE[:3], participants_per_model=6, seed=1)
    trials = sim.trials.copy()
    trials.loc[trials["model"].eq("m1") | trials["condition"].eq("ds/m1"), "rt_ms"] = 50.0
    result = analyse(trials, ExclusionRules(), resamples=200, mixed=False)
    row = result.human.set_index("model").loc["m1"]
    assert row["participants"] == 0 and row["note"] == "no included participants"
    assert np.isnan(row["error"]) and row["excluded_participants"] == 6
    assert "no included participants" in __import__("analysis.human").human.format_table(result)


def test_pairs_images_and_joint_intervals():
    sim = simulate(FIVE, participants_per_model=15, seed=2)
    result = analyse(sim.trials, ExclusionRules(), resamples=1000, joint=True, mixed=False)
    pairs = result.pairs
    assert len(pairs) == 10
    assert (pairs["p_holm"] >= pairs["p"]).all()
    far = pairs[(pairs["model_a"] == "m0") & (pairs["model_b"] == "m4")].iloc[0]
    assert far["significant"] and far["difference_high"] < 0
    human = result.human
    assert (
        human["error_joint_high"] - human["error_joint_low"]
        >= 0.9 * (human["error_high"] - human["error_low"])
    ).all()
    images = result.images
    assert (images["share_real_low"] <= images["share_real"] + 1e-12).all()
    assert (images["share_real"] <= images["share_real_high"] + 1e-12).all()
    assert images["judgements"].sum() == len(included(sim.trials, result.exclusions))


def test_holm_and_wilson_match_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.005])
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    successes, n = np.array([0, 3, 17, 20]), np.array([20, 20, 20, 20])
    low, high = wilson(successes, n)
    ref_low, ref_high = proportion_confint(successes, n, method="wilson")
    np.testing.assert_allclose(low, ref_low, atol=1e-12)
    np.testing.assert_allclose(high, ref_high, atol=1e-12)


def test_mixed_model_orders_models_and_falls_back(monkeypatch):
    sim = simulate(FIVE, participants_per_model=12, real_trials=30, fake_trials=30, seed=4)
    excluded = exclusions(sim.trials, ExclusionRules())
    from analysis.human import model_trials

    per = model_trials(included(sim.trials, excluded))
    fitted = fit_dataset(per)
    assert (fitted["mixed_method"] == "laplace-glmm").all()
    truth = fitted.merge(sim.truth, on=["dataset", "model"])
    assert kendalltau(truth["mixed_error"], truth["error"]).statistic >= 0.79  # one swap at most
    assert (
        (fitted["mixed_low"] < fitted["mixed_error"])
        & (fitted["mixed_error"] < fitted["mixed_high"])
    ).all()

    import analysis.mixed

    def broken(self):
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr(analysis.mixed.LaplaceFit, "fit", broken)
    with pytest.warns(UserWarning, match="using a clustered GLM"):
        fallback = fit_dataset(per)
    said = "glm-clustered: Laplace fit failed (LinAlgError: singular)"
    assert (fallback["mixed_method"] == said).all()
    assert fallback.sort_values("mixed_error")["model"].iloc[0] == "m0"


def test_any_failure_of_the_mixed_model_is_reported_not_raised(monkeypatch):
    import analysis.mixed
    from analysis.human import format_table

    sim = simulate(FIVE[:3], participants_per_model=6, real_trials=10, fake_trials=10, seed=6)

    def wrapped(self):  # what int8 category codes once did
        raise ValueError("negative axis 1 index: -128\nmore detail")

    monkeypatch.setattr(analysis.mixed.LaplaceFit, "fit", wrapped)
    with pytest.warns(UserWarning, match="Laplace fit failed"):
        result = analyse(sim.trials, ExclusionRules(), resamples=200)
    method = "glm-clustered: Laplace fit failed (ValueError: negative axis 1 index: -128)"
    assert (result.human["mixed_method"] == method).all()
    assert np.isfinite(result.human[["mixed_error", "mixed_low", "mixed_high"]]).all().all()
    assert result.summary["mixed_fallbacks"] == {"ds": method}
    assert f"mixed model, ds: {method}" in format_table(result)

    def glm_fails(*args):
        raise RuntimeError("no groups")

    monkeypatch.setattr(analysis.mixed, "_clustered_glm", glm_fails)
    with pytest.warns(UserWarning, match="Laplace fit failed"):
        result = analyse(sim.trials, ExclusionRules(), resamples=200)
    nothing = (
        "not fitted: Laplace fit failed (ValueError: negative axis 1 index: -128); "
        "clustered GLM failed (RuntimeError: no groups)"
    )
    assert (result.human["mixed_method"] == nothing).all()
    assert result.human[["mixed_error", "mixed_low", "mixed_high"]].isna().all().all()
    assert f"mixed model, ds: {nothing}" in format_table(result)


def test_mixed_model_agrees_with_statsmodels_on_a_small_study():
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    from analysis.human import model_trials
    from analysis.mixed import errors

    sim = simulate(
        FIVE[::2],
        participants_per_model=5,
        real_trials=16,
        fake_trials=16,
        seed=5,
        images_per_model=40,
        real_images_per_dataset=50,
    )
    per = model_trials(included(sim.trials, exclusions(sim.trials, ExclusionRules())))
    ours = fit_dataset(per).set_index("model")["mixed_error"]
    data = per.assign(error=errors(per), participant=per["participant_id"].astype(str))
    reference = BinomialBayesMixedGLM.from_formula(
        "error ~ 0 + C(model)",
        {"participant": "0 + C(participant)", "image": "0 + C(image_id)"},
        data,
    ).fit_vb()
    theirs = 1 / (1 + np.exp(-np.asarray(reference.fe_mean)))
    np.testing.assert_allclose(ours.sort_index().to_numpy(), theirs, atol=0.06)
