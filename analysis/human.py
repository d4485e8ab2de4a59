"""Human error rates per model: the numbers a paper reports, from a tidy trial frame.

Definitions (docs/human-stats.md has them in full):
- a participant's error on a model = mean of their error on its fake images
  (share judged real: the fooling rate) and on real images (share judged fake),
  so real and fake count equally;
- a model's human error = mean over its included participants, with SEM and a
  percentile bootstrap interval over participants (seeded, vectorised);
- d' and criterion c per participant, treating "fake" as the signal, with the
  log-linear correction (Hautus 1995): finite even when every answer is the same.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from analysis.bootstrap import holm, interval, resample_means, two_sided_p, wilson
from percept.errors import PerceptError

RESAMPLES = 10_000
MEASURES = ("error", "fake_error", "real_error", "dprime", "criterion")


def split_condition(condition: pd.Series) -> pd.Series:
    """'ds/a+ds/b' -> ['ds/a', 'ds/b']."""
    return condition.fillna("").str.split("+")


def model_trials(kept: pd.DataFrame) -> pd.DataFrame:
    """Included stimulus trials, each labelled with the model it informs.

    A fake image informs its own model; a real image informs each model of the
    participant's condition in the same dataset (in the one-model design, one).
    """
    fakes = kept[kept["source"] == "fake"].assign(key=kept["dataset"] + "/" + kept["model"])
    reals = kept[kept["source"] == "real"].assign(key=split_condition(kept["condition"]))
    reals = reals.explode("key")
    reals = reals[reals["key"].str.split("/").str[0] == reals["dataset"]]
    both = pd.concat([fakes, reals], ignore_index=True)
    both["model"] = both["key"].str.split("/", n=1).str[1]
    both["said_fake"] = (both["choice"] == "fake").astype(np.float64)
    return both[["dataset", "model", "participant_id", "image_id", "source", "said_fake"]]


def participant_scores(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, participant): errors, d' and criterion."""
    counts = (
        trials.groupby(["dataset", "model", "participant_id", "source"])["said_fake"]
        .agg(["sum", "count"])
        .unstack("source")
    )
    said_fake_fake = counts.get(("sum", "fake"), pd.Series(0.0, counts.index)).fillna(0)
    n_fake = counts.get(("count", "fake"), pd.Series(0.0, counts.index)).fillna(0)
    said_fake_real = counts.get(("sum", "real"), pd.Series(0.0, counts.index)).fillna(0)
    n_real = counts.get(("count", "real"), pd.Series(0.0, counts.index)).fillna(0)
    scores = pd.DataFrame(
        {
            "n_fake": n_fake.astype(int),
            "n_real": n_real.astype(int),
            **scores_from_counts(said_fake_fake, n_fake, said_fake_real, n_real),
        },
        index=counts.index,
    )
    return scores.reset_index()


def scores_from_counts(fakes_said_fake, n_fake, reals_said_fake, n_real) -> dict[str, np.ndarray]:
    """Per participant: fake, real and balanced error, d' and c from counts of "fake" answers.

    Arrays of equal length; the one definition behind both trial-level exports and
    published per-participant summaries (analysis/published.py).
    """
    fakes_said_fake, n_fake, reals_said_fake, n_real = (
        np.asarray(a, dtype=np.float64) for a in (fakes_said_fake, n_fake, reals_said_fake, n_real)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        fake_error = np.where(n_fake > 0, 1 - fakes_said_fake / n_fake, np.nan)
        real_error = np.where(n_real > 0, reals_said_fake / n_real, np.nan)
    hit = ndtri((fakes_said_fake + 0.5) / (n_fake + 1))
    false_alarm = ndtri((reals_said_fake + 0.5) / (n_real + 1))
    return {
        "fake_error": fake_error,
        "real_error": real_error,
        "error": np.nanmean(np.vstack([fake_error, real_error]), axis=0),
        "dprime": hit - false_alarm,
        "criterion": -(hit + false_alarm) / 2,
    }


def all_models(trials: pd.DataFrame) -> pd.DataFrame:
    """Every (dataset, model) any participant was assigned, included or not."""
    keys = split_condition(trials.drop_duplicates("participant_id")["condition"]).explode()
    keys = keys[keys.str.contains("/", na=False)].drop_duplicates().sort_values()
    parts = keys.str.split("/", n=1)
    return pd.DataFrame({"dataset": parts.str[0].values, "model": parts.str[1].values})


def model_table(
    trials: pd.DataFrame,
    kept: pd.DataFrame,
    excluded: pd.DataFrame,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """human.csv rows, and each model's bootstrap samples of its error (for pairs).

    `trials` is every trial of the export (to know who was assigned what),
    `kept` the included stimulus trials, `excluded` the exclusion list.
    """
    scores = participant_scores(model_trials(kept))
    assigned = trials.drop_duplicates("participant_id")[["participant_id", "condition"]]
    assigned = assigned.assign(key=split_condition(assigned["condition"])).explode("key")
    out_people = set(excluded.loc[excluded["level"] == "participant", "participant_id"])
    models = all_models(trials)
    excluded_counts = {
        (dataset, model): int(
            assigned.loc[assigned["key"] == f"{dataset}/{model}", "participant_id"]
            .isin(out_people)
            .sum()
        )
        for dataset, model in models.itertuples(index=False)
    }
    return scores_table(scores, models, excluded_counts, resamples=resamples, seed=seed)


def scores_table(
    scores: pd.DataFrame,
    models: pd.DataFrame,
    excluded_counts: dict[tuple[str, str], int],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """human.csv rows from per-participant scores, and each model's bootstrap samples of error.

    `scores` has one row per (dataset, model, participant) with the MEASURES and
    n_fake, n_real (or n_trials where the split is unknown); `models` lists the
    (dataset, model) rows in order (each gets its own seed, spawned from `seed`).
    """
    rows, samples = [], {}
    seeds = np.random.SeedSequence(seed)
    for (dataset, model), child in zip(
        models.itertuples(index=False), seeds.spawn(len(models)), strict=True
    ):
        mine = scores[(scores["dataset"] == dataset) & (scores["model"] == model)]
        trials = (
            mine["n_trials"].sum()
            if "n_trials" in mine
            else mine["n_fake"].sum() + mine["n_real"].sum()
        )
        row = {
            "dataset": dataset,
            "model": model,
            "participants": len(mine),
            "excluded_participants": excluded_counts.get((dataset, model), 0),
            "trials": int(trials),
        }
        values = mine[list(MEASURES)].to_numpy(dtype=np.float64)
        boot = resample_means(values, resamples, np.random.default_rng(child))
        low, high = interval(boot) if len(mine) else (np.full(5, np.nan), np.full(5, np.nan))
        for j, measure in enumerate(MEASURES):
            column = values[:, j]
            present = column[~np.isnan(column)]
            row[measure] = present.mean() if present.size else np.nan
            row[f"{measure}_sem"] = (
                present.std(ddof=1) / np.sqrt(present.size) if present.size > 1 else np.nan
            )
            row[f"{measure}_low"] = low[j]
            row[f"{measure}_high"] = high[j]
        row["note"] = "" if len(mine) else "no included participants"
        rows.append(row)
        samples[dataset, model] = boot[:, 0]
    return pd.DataFrame(rows), samples


def pairs_table(table: pd.DataFrame, samples: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """Every pair of models within a dataset: difference in error, interval, Holm-adjusted p."""
    rows = []
    for dataset, group in table.groupby("dataset", sort=True):
        family = []
        for a, b in combinations(group.itertuples(index=False), 2):
            diff = samples[dataset, a.model] - samples[dataset, b.model]
            low, high = interval(diff[:, None])
            family.append(
                {
                    "dataset": dataset,
                    "model_a": a.model,
                    "model_b": b.model,
                    "error_a": a.error,
                    "error_b": b.error,
                    "difference": a.error - b.error,
                    "difference_low": float(low[0]),
                    "difference_high": float(high[0]),
                    "p": two_sided_p(diff),
                }
            )
        if family:
            p = np.array([r["p"] for r in family])
            adjusted = np.full(p.size, np.nan)
            ok = ~np.isnan(p)
            adjusted[ok] = holm(p[ok])
            for r, q in zip(family, adjusted, strict=True):
                r["p_holm"] = q
                r["significant"] = bool(q < 0.05) if not np.isnan(q) else False
            rows += family
    columns = [
        "dataset",
        "model_a",
        "model_b",
        "error_a",
        "error_b",
        "difference",
        "difference_low",
        "difference_high",
        "p",
        "p_holm",
        "significant",
    ]
    return pd.DataFrame(rows, columns=columns)


def image_table(kept: pd.DataFrame) -> pd.DataFrame:
    """Per image: judgements, times judged real, share judged real with a Wilson interval."""
    per = kept.groupby("image_id").agg(
        dataset=("dataset", "first"),
        source=("source", "first"),
        model=("model", "first"),
        image_sha256=("image_sha256", "first"),
        judgements=("choice", "size"),
        judged_real=("choice", lambda c: int((c == "real").sum())),
    )
    per["share_real"] = per["judged_real"] / per["judgements"]
    per["share_real_low"], per["share_real_high"] = wilson(
        per["judged_real"].to_numpy(), per["judgements"].to_numpy()
    )
    per = per.reset_index()
    per["model"] = per["model"].fillna("")
    return per.sort_values(
        ["dataset", "source", "model", "share_real"], ascending=[True, True, True, False]
    ).reset_index(drop=True)


def joint_interval(
    trials: pd.DataFrame, resamples: int, rng: np.random.Generator, chunk: int = 500
) -> tuple[float, float]:
    """Interval of a model's error resampling participants and images jointly.

    Each resample draws participants and images with replacement; a trial counts
    as often as its image was drawn, a participant's error is their weighted
    mean of fake and real error, and the model's error their weighted mean.
    """
    from scipy import sparse

    from analysis.mixed import codes

    people, images = codes(trials["participant_id"]), codes(trials["image_id"])
    n_p, n_i = int(people.max()) + 1, int(images.max()) + 1
    wrong = np.where(trials["source"] == "real", trials["said_fake"], 1 - trials["said_fake"])
    is_real = (trials["source"] == "real").to_numpy()
    # Columns: (participant, fake) then (participant, real).
    cell = people + n_p * is_real

    to_cell = sparse.csr_array(
        (np.ones(len(cell)), (np.arange(len(cell)), cell)), shape=(len(cell), 2 * n_p)
    )
    estimates = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        w_img = rng.multinomial(n_i, np.full(n_i, 1 / n_i), size=b).astype(np.float64)
        w_people = rng.multinomial(n_p, np.full(n_p, 1 / n_p), size=b).astype(np.float64)
        w = w_img[:, images]
        num = (to_cell.T @ (w * wrong).T).T
        den = (to_cell.T @ w.T).T
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # A participant none of whose images was drawn has no rate in that resample.
            warnings.simplefilter("ignore", RuntimeWarning)
            rates = num / den
            per_person = np.nanmean(np.stack([rates[:, :n_p], rates[:, n_p:]]), axis=0)
            present = ~np.isnan(per_person)
            estimates.append(
                (np.where(present, per_person, 0) * w_people).sum(1) / (w_people * present).sum(1)
            )
    low, high = interval(np.concatenate(estimates)[:, None])
    return float(low[0]), float(high[0])


@dataclass
class HumanResult:
    """What `percept human` writes: four tables for people, two files for `percept report`."""

    human: pd.DataFrame
    pairs: pd.DataFrame
    images: pd.DataFrame
    exclusions: pd.DataFrame
    # Per (dataset, model, participant) scores: the report resamples these.
    participants: pd.DataFrame
    # Counts, rules, design and settings: the report's methods section.
    summary: dict

    @property
    def counts(self) -> dict:
        return self.summary["counts"]

    def write(self, out) -> None:
        """human.csv, pairs.csv, images.csv, exclusions.csv, participant_errors.csv, summary."""
        write_outputs(
            out,
            {
                "human.csv": self.human,
                "pairs.csv": self.pairs,
                "images.csv": self.images,
                "exclusions.csv": self.exclusions,
                "participant_errors.csv": self.participants,
            },
            self.summary,
        )


def write_outputs(out, tables: dict[str, pd.DataFrame], summary: dict) -> None:
    """Each table as CSV and `summary` as human_summary.json, each through a temporary file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        tmp = out / f".{name}.tmp"
        # No float_format: pandas writes each float's shortest repr, which reads back
        # to the same float (docs/human-stats.md, "Precision").
        table.to_csv(tmp, index=False)
        tmp.replace(out / name)
    tmp = out / ".human_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(out / "human_summary.json")


def analyse(
    trials: pd.DataFrame,
    rules,
    *,
    images: pd.DataFrame | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    joint: bool = False,
    mixed: bool = True,
) -> HumanResult:
    """Exclusions, then the model table, pairwise comparisons and per-image realism."""
    from analysis.exclusions import exclusions, included

    if images is not None:
        unknown = sorted(set(trials["image_id"].dropna()) - set(images["image_id"]))
        if unknown:
            raise PerceptError(
                f"trials.csv: responses to image(s) not in images.csv, e.g. {unknown[0]}; "
                "export the study again"
            )
    excluded = exclusions(trials, rules)
    kept = included(trials, excluded)
    table, samples = model_table(trials, kept, excluded, resamples=resamples, seed=seed)
    per_model = model_trials(kept)
    if joint:
        rng = np.random.default_rng([seed, 1])
        lows, highs = [], []
        for row in table.itertuples(index=False):
            mine = per_model[
                (per_model["dataset"] == row.dataset) & (per_model["model"] == row.model)
            ]
            low, high = joint_interval(mine, resamples, rng) if len(mine) else (np.nan, np.nan)
            lows.append(low)
            highs.append(high)
        table["error_joint_low"], table["error_joint_high"] = lows, highs
    fallbacks: dict[str, str] = {}
    if mixed and len(per_model):
        from analysis.mixed import fallbacks as mixed_fallbacks
        from analysis.mixed import mixed_table

        table = table.merge(mixed_table(per_model), on=["dataset", "model"], how="left")
        fallbacks = mixed_fallbacks(table)
    participants = trials["participant_id"].nunique()
    out_people = excluded.loc[excluded["level"] == "participant", "participant_id"].nunique()
    main = trials[trials["block"] == "main"]
    summary = {
        "counts": {
            "participants": participants,
            "excluded_participants": out_people,
            "included_participants": participants - out_people,
            "excluded_trials": int((excluded["level"] == "trial").sum()),
            "included_trials": len(kept),
        },
        "excluded_by_rule": {
            rule: int(group["participant_id"].nunique()) for rule, group in excluded.groupby("rule")
        },
        "rules": asdict(rules),
        "design": {
            "studies": sorted(trials["study"].dropna().unique().tolist()),
            "study_kinds": study_kinds(trials),
            "platforms": sorted(trials["platform"].dropna().unique().tolist())
            if "platform" in trials
            else [],
            "datasets": sorted(trials["dataset"].dropna().unique().tolist()),
            "main_trials_per_participant": float(main.groupby("participant_id").size().median()),
            "planned_exposures_ms": sorted(
                float(x) for x in main["planned_exposure_ms"].dropna().unique()
            )[:20],
            "unlimited_exposure_trials": int(main["planned_exposure_ms"].isna().sum()),
        },
        "bootstrap": {"resamples": resamples, "seed": seed, "joint": joint},
        # Datasets whose mixed model was not the Laplace fit, with the reason.
        "mixed_fallbacks": fallbacks,
        "versions": package_versions(),
        "simulated": simulated_participants(trials),
    }
    scores = participant_scores(per_model)
    return HumanResult(
        table, pairs_table(table, samples), image_table(kept), excluded, scores, summary
    )


def simulated_participants(trials: pd.DataFrame) -> dict:
    """How many participants were scripted (`percept simulate`, the demo, analysis.simulation)."""
    flags = trials.groupby("participant_id")["simulated"].any() if "simulated" in trials else None
    count = int(flags.sum()) if flags is not None else 0
    return {
        "participants": count,
        "of": int(trials["participant_id"].nunique()),
        "note": "scripted participants, not people (percept simulate or percept demo)"
        if count
        else "",
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages behind the numbers, for methods sections."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "percept",
        "numpy",
        "scipy",
        "pandas",
        "statsmodels",
        "torch",
        "timm",
        "open_clip_torch",
        "matplotlib",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def study_kinds(trials: pd.DataFrame) -> dict[str, str]:
    """{study slug: `pilot` or `main`} from the export's `study_kind` (older exports lack it)."""
    if "study_kind" not in trials:
        return {}
    pairs = trials[["study", "study_kind"]].dropna().drop_duplicates()
    return dict(sorted(zip(pairs["study"], pairs["study_kind"], strict=True)))


def format_table(result: HumanResult) -> str:
    """The per-model table as printed by `percept human`: the study and its kind (pilot or
    main), the exclusion counts, then one line per model."""
    c = result.counts
    design = result.summary.get("design", {})
    kinds = design.get("study_kinds", {})
    studies = [f"{s} ({kinds[s]})" if s in kinds else s for s in design.get("studies", [])]
    lines = [f"Study: {', '.join(studies)}"] if studies else []
    lines += [
        f"{c['participants']} participants: {c['included_participants']} included, "
        f"{c['excluded_participants']} excluded; {c['included_trials']} stimulus trials "
        f"included, {c['excluded_trials']} excluded (reasons in exclusions.csv)",
        "",
        *format_rows(result.human),
    ]
    for dataset, method in result.summary.get("mixed_fallbacks", {}).items():
        lines.append(f"mixed model, {dataset}: {method}")
    return "\n".join(lines)


def format_rows(human: pd.DataFrame) -> list[str]:
    """The per-model table's heading and one line per model (human.csv columns)."""
    lines = [
        f"{'dataset':<12} {'model':<20} {'n':>4}  {'error':>6} {'95% CI':>15}  "
        f"{'fooled':>6}  {'dprime':>6}"
    ]
    for r in human.itertuples(index=False):
        if r.participants == 0:
            lines.append(f"{r.dataset:<12} {r.model:<20} {0:>4}  {r.note}")
            continue
        lines.append(
            f"{r.dataset:<12} {r.model:<20} {r.participants:>4}  {r.error:6.3f} "
            f"[{r.error_low:5.3f}, {r.error_high:5.3f}]  {r.fake_error:6.3f}  {r.dprime:6.2f}"
        )
    return lines
