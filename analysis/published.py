"""Published human data as input: per-participant and per-image summaries of earlier studies.

Three layouts are read (docs/published-data.md describes them in full):
- Stein et al. 2023's per-participant files (one per dataset, e.g. `cifar10.csv`):
  id, model, num_correct, err_rt, f_err_rt, r_err_rt, r_ans_rt and response times;
  every participant judged 100 real and 100 fake images;
- a generic per-participant layout for any other study: dataset, model,
  participant, n_trials, n_correct and, where known, n_fake, n_fake_correct,
  n_real, n_real_correct;
- Stein et al.'s per-image files (e.g. `cifar10_labeled_data.csv`): model,
  generated, image_path, number_guesses, number_guesses_generated, soft_label.

Every value is checked before anything is computed: one bad value stops the
import with one message naming the file and line. From per-participant counts
the same per-participant scores as a full study follow (analysis.human's
`scores_from_counts`), and from them the same human.csv (`scores_table`) and
pairs.csv (`pairs_table`); what needs trial-level data is listed in
human_summary.json under "not_available", with the reason.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bootstrap import wilson
from analysis.human import (
    RESAMPLES,
    format_rows,
    package_versions,
    pairs_table,
    scores_from_counts,
    scores_table,
    write_outputs,
)
from percept.errors import PerceptError

# Stein et al. 2023: each participant judged 100 real and 100 fake images of one model.
STEIN_FAKE = 100
STEIN_REAL = 100
STEIN_TRIALS = STEIN_FAKE + STEIN_REAL

# A rate agrees with a count if it is within this of count / n: rates rounded to three
# decimals still agree, while one trial off (0.005 of 200, 0.01 of 100) does not.
RATE_TOLERANCE = 5e-4
# Counts written as floats ("171.0") must be whole to within float noise.
COUNT_TOLERANCE = 1e-6

STEIN_PARTICIPANTS = "stein-participants"
GENERIC_PARTICIPANTS = "generic-participants"
STEIN_IMAGES = "stein-images"

# Required columns of each layout, and optional ones that are checked when present.
LAYOUTS = {
    STEIN_PARTICIPANTS: (
        ("id", "model", "num_correct", "err_rt", "f_err_rt", "r_err_rt", "r_ans_rt"),
        ("resp_time", "f_resp_time", "r_resp_time"),
    ),
    GENERIC_PARTICIPANTS: (
        ("dataset", "model", "participant", "n_trials", "n_correct"),
        ("n_fake", "n_fake_correct", "n_real", "n_real_correct"),
    ),
    STEIN_IMAGES: (
        ("model", "generated", "image_path", "number_guesses", "number_guesses_generated"),
        ("soft_label",),
    ),
}
DESCRIPTIONS = {
    STEIN_PARTICIPANTS: "Stein et al.'s per-participant file",
    GENERIC_PARTICIPANTS: "the generic per-participant layout",
    STEIN_IMAGES: "Stein et al.'s per-image file",
}
SPLIT = LAYOUTS[GENERIC_PARTICIPANTS][1]

# Stein et al. name the per-image files after the dataset without its resolution
# (ffhq_labeled_data.csv) and the per-participant files with it (ffhq256.csv);
# map the former to the latter so both kinds of file meet on the same dataset.
STEIN_IMAGE_DATASETS = {"ffhq": "ffhq256", "imagenet": "imagenet256", "lsun": "lsun256"}
STEIN_IMAGE_SUFFIX = "_labeled_data"

HELP = "fix the file or leave it out (formats: docs/published-data.md)"
TRIAL_LEVEL = "needs each trial's participant, image and answer; summaries hold only counts"
NOT_AVAILABLE = [
    {
        "statistic": "mixed model",
        "columns": ["mixed_error", "mixed_low", "mixed_high"],
        "reason": f"the logistic mixed model {TRIAL_LEVEL}",
    },
    {
        "statistic": "image-level and joint participant x image bootstrap",
        "columns": ["error_joint_low", "error_joint_high"],
        "reason": f"resampling images {TRIAL_LEVEL}",
    },
    {
        "statistic": "exclusions (display timing, attention checks, response speed, "
        "incomplete sessions, repeated ids)",
        "columns": ["exclusions.csv"],
        "reason": "percept's rules need trial-level responses and display timings; the "
        "published files hold the participants the original authors kept, after their "
        "own exclusions, and percept excludes no one from them",
    },
]


@dataclass
class SummaryFile:
    """One input file, and the dataset named for it on the command line (if any)."""

    path: Path
    dataset: str | None = None  # from NAME=FILE on the command line; else from the file

    @classmethod
    def parse(cls, text: str) -> SummaryFile:
        """'FILE' or 'DATASET=FILE' (a file whose own name holds '=' is taken whole)."""
        if "=" in text and not Path(text).exists():
            dataset, _, path = text.partition("=")
            if not dataset or not path:
                raise PerceptError(f"{text!r}: expected FILE or DATASET=FILE")
            return cls(Path(path), dataset)
        return cls(Path(text))


@dataclass
class PublishedResult:
    """What `percept human --summary/--image-summary` writes; tables absent when not given."""

    human: pd.DataFrame | None
    pairs: pd.DataFrame | None
    participants: pd.DataFrame | None
    images: pd.DataFrame | None
    summary: dict = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        named = {
            "human.csv": self.human,
            "pairs.csv": self.pairs,
            "participant_errors.csv": self.participants,
            "images.csv": self.images,
        }
        return {name: table for name, table in named.items() if table is not None}

    def outputs(self) -> list[str]:
        return [*self.tables(), "human_summary.json"]

    def write(self, out) -> None:
        """The tables given, and human_summary.json."""
        write_outputs(out, self.tables(), self.summary)


# --- Reading and checking -------------------------------------------------------------------


def read_csv(path: Path) -> pd.DataFrame:
    """Every cell as text, indexed by its line in the file (to name a bad value's line).

    Blank lines are dropped; a pandas index column saved with the file is dropped too.
    """
    path = Path(path)
    if not path.is_file():
        raise PerceptError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PerceptError(f"{path}: not a readable CSV file ({e})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # Files saved from pandas with their index (Stein et al.'s per-image files) start
    # with an unnamed column of row numbers.
    if len(frame.columns) and re.fullmatch(r"Unnamed: 0|", frame.columns[0]):
        frame = frame.drop(columns=frame.columns[0])
    # Line 1 is the header; blank lines were read as empty rows so that this stays true.
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    frame = frame[(frame != "").any(axis=1)]
    if frame.empty:
        raise PerceptError(f"{path}: no rows below the header; {HELP}")
    return frame


def layout_of(frame: pd.DataFrame, path: Path) -> str:
    """Which layout the columns are; an unknown layout is an error naming what is missing."""
    columns = set(frame.columns)
    for layout, (required, _) in LAYOUTS.items():
        if set(required) <= columns:
            return layout
    # The nearest layout, to say what is missing from it.
    nearest = max(LAYOUTS, key=lambda name: len(set(LAYOUTS[name][0]) & columns))
    missing = [c for c in LAYOUTS[nearest][0] if c not in columns]
    found = ", ".join(frame.columns) or "none"
    if len(missing) < len(LAYOUTS[nearest][0]) / 2:
        raise PerceptError(
            f"{path}: unknown column layout: looks like {DESCRIPTIONS[nearest]} but lacks "
            f"{', '.join(missing)} (columns found: {found}); {HELP}"
        )
    raise PerceptError(
        f"{path}: unknown column layout (columns found: {found}); expected "
        + "; or ".join(f"{DESCRIPTIONS[n]}: {', '.join(LAYOUTS[n][0])}" for n in LAYOUTS)
        + f"; {HELP}"
    )


class Checker:
    """Raises one PerceptError naming the file, line and row of the first bad value."""

    def __init__(self, frame: pd.DataFrame, path: Path, who: list[str]):
        self.frame, self.path, self.who = frame, Path(path), who

    def fail(self, row: int, message: str) -> None:
        """`row` counts rows of the frame; the frame's index holds their lines in the file."""
        names = ", ".join(f"{c} {self.frame[c].iloc[row]}" for c in self.who)
        line = self.frame.index[row]
        raise PerceptError(f"{self.path}, line {line} ({names}): {message}; {HELP}")

    def where(self, bad, message) -> None:
        """Fail at the first row where `bad` holds; `message` is text or a function of the row."""
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            row = int(np.argmax(bad))
            self.fail(row, message(row) if callable(message) else message)

    def text(self, column: str) -> pd.Series:
        """A column of names: stripped, never empty."""
        values = self.frame[column].str.strip()
        self.where(values == "", f"{column} is empty")
        return values

    def numbers(self, column: str, *, optional: bool = False) -> np.ndarray:
        """A column of numbers (NaN where empty, if `optional`); names the first bad value."""
        raw = self.frame[column].str.strip()
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        empty = (raw == "").to_numpy()
        if not optional:
            self.where(empty, f"{column} is empty")
        self.where(
            ~empty & ~np.isfinite(values), lambda i: f"{column} = {raw.iloc[i]!r} is not a number"
        )
        return values

    def rate(self, column: str) -> np.ndarray:
        values = self.numbers(column)
        self.where(
            (values < 0) | (values > 1), lambda i: f"{column} = {values[i]:g} is outside [0, 1]"
        )
        return values

    def count(self, column: str, *, optional: bool = False) -> np.ndarray:
        """Whole numbers >= 0 (NaN where empty, if `optional`)."""
        values = self.numbers(column, optional=optional)
        known = ~np.isnan(values)
        self.where(known & (values < 0), lambda i: f"{column} = {values[i]:g} is negative")
        self.where(
            known & (np.abs(values - np.round(values)) > COUNT_TOLERANCE),
            lambda i: f"{column} = {values[i]:g} is not a whole number",
        )
        return np.round(values)

    def unique(self, keys: pd.DataFrame, what: str) -> None:
        """No two rows with the same keys (e.g. a participant id twice within a model)."""
        repeated = keys.duplicated(keep=False).to_numpy()
        if repeated.any():
            first = int(np.argmax(repeated))
            same = (keys == keys.iloc[first]).all(axis=1).to_numpy()
            lines = [str(line) for line in self.frame.index[same]]
            self.fail(first, f"{what} appears more than once (lines {', '.join(lines)})")


def whole_count(check: Checker, rate: np.ndarray, n: int, column: str) -> np.ndarray:
    """The count a rate of n trials stands for; an error unless it is whole (within rounding)."""
    count = np.round(rate * n)
    check.where(
        np.abs(rate - count / n) > RATE_TOLERANCE,
        lambda i: (
            f"{column} = {rate[i]:g} is not a whole number of its {n} trials ({rate[i] * n:g})"
        ),
    )
    return count


def stein_participants(frame: pd.DataFrame, path: Path, dataset: str) -> pd.DataFrame:
    """Per-participant counts from one of Stein et al.'s per-participant files."""
    check = Checker(frame, path, ["id", "model"])
    ids, models = check.text("id"), check.text("model")
    err, f_err, r_err, r_ans = (
        check.rate(c) for c in ("err_rt", "f_err_rt", "r_err_rt", "r_ans_rt")
    )
    correct = check.count("num_correct")
    check.where(
        correct > STEIN_TRIALS,
        lambda i: f"num_correct = {correct[i]:g} is more than the {STEIN_TRIALS} trials",
    )
    fakes_wrong = whole_count(check, f_err, STEIN_FAKE, "f_err_rt")
    reals_wrong = whole_count(check, r_err, STEIN_REAL, "r_err_rt")
    check.where(
        np.abs(err - (1 - correct / STEIN_TRIALS)) > RATE_TOLERANCE,
        lambda i: (
            f"err_rt = {err[i]:g} but 1 - num_correct/{STEIN_TRIALS} = "
            f"{1 - correct[i] / STEIN_TRIALS:g}"
        ),
    )
    from_split = (STEIN_FAKE - fakes_wrong) + (STEIN_REAL - reals_wrong)
    check.where(
        correct != from_split,
        lambda i: (
            f"num_correct = {correct[i]:g} but f_err_rt and r_err_rt give "
            f"{STEIN_FAKE:g} - {fakes_wrong[i]:g} + {STEIN_REAL:g} - {reals_wrong[i]:g} = "
            f"{from_split[i]:g} correct"
        ),
    )
    # Answered "real": the fakes judged real and the reals judged real.
    said_real = (fakes_wrong + STEIN_REAL - reals_wrong) / STEIN_TRIALS
    check.where(
        np.abs(r_ans - said_real) > RATE_TOLERANCE,
        lambda i: (
            f"r_ans_rt = {r_ans[i]:g} but f_err_rt and r_err_rt give {said_real[i]:g} "
            "answers 'real'"
        ),
    )
    for column in LAYOUTS[STEIN_PARTICIPANTS][1]:
        if column in frame.columns:
            seconds = check.numbers(column, optional=True)
            check.where(seconds < 0, lambda i, c=column, s=seconds: f"{c} = {s[i]:g} is negative")
    check.unique(
        pd.DataFrame({"model": models, "id": ids}), "this participant id within this model"
    )
    return pd.DataFrame(
        {
            "dataset": dataset,
            "model": models,
            "participant_id": ids,
            "n_trials": STEIN_TRIALS,
            "n_fake": STEIN_FAKE,
            "fakes_said_fake": STEIN_FAKE - fakes_wrong,
            "n_real": STEIN_REAL,
            "reals_said_fake": reals_wrong,
        }
    )


def generic_participants(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Per-participant counts from the generic layout; the fake/real split where given."""
    check = Checker(frame, path, ["participant", "model"])
    datasets, models, ids = check.text("dataset"), check.text("model"), check.text("participant")
    n_trials, n_correct = check.count("n_trials"), check.count("n_correct")
    check.where(n_trials < 1, "n_trials is 0")
    check.where(
        n_correct > n_trials,
        lambda i: f"n_correct = {n_correct[i]:g} is more than n_trials = {n_trials[i]:g}",
    )
    present = [c for c in SPLIT if c in frame.columns]
    if present and len(present) < len(SPLIT):
        lacking = ", ".join(c for c in SPLIT if c not in present)
        raise PerceptError(
            f"{path}: has {', '.join(present)} but not {lacking}: give all four of "
            f"{', '.join(SPLIT)} (a row may leave all four empty) or none; {HELP}"
        )
    if present:
        n_fake, fake_correct, n_real, real_correct = (check.count(c, optional=True) for c in SPLIT)
        empty = np.isnan(np.vstack([n_fake, fake_correct, n_real, real_correct]))
        check.where(
            empty.any(axis=0) & ~empty.all(axis=0),
            f"{', '.join(SPLIT)} must be all given or all empty",
        )
        check.where(
            fake_correct > n_fake,
            lambda i: f"n_fake_correct = {fake_correct[i]:g} is more than n_fake = {n_fake[i]:g}",
        )
        check.where(
            real_correct > n_real,
            lambda i: f"n_real_correct = {real_correct[i]:g} is more than n_real = {n_real[i]:g}",
        )
        split = ~empty.any(axis=0)  # NaN != x holds, so compare only rows with the split
        check.where(
            split & (n_fake + n_real != n_trials),
            lambda i: f"n_fake + n_real = {n_fake[i] + n_real[i]:g} but n_trials = {n_trials[i]:g}",
        )
        check.where(
            split & (fake_correct + real_correct != n_correct),
            lambda i: (
                f"n_fake_correct + n_real_correct = {fake_correct[i] + real_correct[i]:g} "
                f"but n_correct = {n_correct[i]:g}"
            ),
        )
    else:
        n_fake = fake_correct = n_real = real_correct = np.full(len(frame), np.nan)
    check.unique(
        pd.DataFrame({"dataset": datasets, "model": models, "participant": ids}),
        "this participant within this model",
    )
    return pd.DataFrame(
        {
            "dataset": datasets,
            "model": models,
            "participant_id": ids,
            "n_trials": n_trials,
            "n_correct": n_correct,
            "n_fake": n_fake,
            "fakes_said_fake": fake_correct,
            "n_real": n_real,
            "reals_said_fake": n_real - real_correct,
        }
    )


def stein_images(frame: pd.DataFrame, path: Path, dataset: str) -> pd.DataFrame:
    """Per-image judgements from one of Stein et al.'s per-image files."""
    check = Checker(frame, path, ["image_path", "model"])
    models, images = check.text("model"), check.text("image_path")
    flag = frame["generated"].str.strip().str.lower()
    check.where(
        ~flag.isin(["0", "1", "0.0", "1.0", "true", "false"]),
        lambda i: f"generated = {frame['generated'].iloc[i]!r} is neither 0 nor 1",
    )
    generated = flag.isin(["1", "1.0", "true"])
    guesses = check.count("number_guesses")
    said_fake = check.count("number_guesses_generated")
    check.where(
        said_fake > guesses,
        lambda i: (
            f"number_guesses_generated = {said_fake[i]:g} is more than number_guesses = "
            f"{guesses[i]:g}"
        ),
    )
    if "soft_label" in frame.columns:
        soft = check.rate("soft_label")
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(guesses > 0, said_fake / guesses, 0.0)
        check.where(
            np.abs(soft - share) > RATE_TOLERANCE,
            lambda i: (
                f"soft_label = {soft[i]:g} but number_guesses_generated / number_guesses "
                f"= {share[i]:g}"
            ),
        )
    check.unique(
        pd.DataFrame({"model": models, "generated": generated, "image_path": images}),
        "this image within this model",
    )
    return pd.DataFrame(
        {
            "dataset": dataset,
            "model": models,
            "image_id": images,
            "source": np.where(generated, "fake", "real"),
            "judgements": guesses.astype(int),
            "judged_fake": said_fake.astype(int),
        }
    )


def stein_dataset(path: Path, layout: str) -> str:
    """The dataset a Stein file is about, from its name: cifar10.csv, ffhq_labeled_data.csv."""
    name = Path(path).stem
    if layout == STEIN_IMAGES and name.endswith(STEIN_IMAGE_SUFFIX):
        name = name[: -len(STEIN_IMAGE_SUFFIX)]
        name = STEIN_IMAGE_DATASETS.get(name, name)
    return name


def read_participants(source: SummaryFile) -> tuple[pd.DataFrame, dict]:
    """Per-participant counts from one file, and a note of what it was."""
    frame = read_csv(source.path)
    layout = layout_of(frame, source.path)
    if layout == STEIN_IMAGES:
        raise PerceptError(
            f"{source.path}: this is a per-image file; give it with --image-summary, not --summary"
        )
    if layout == GENERIC_PARTICIPANTS:
        if source.dataset:
            raise PerceptError(
                f"{source.path}: the generic layout names each row's dataset in its dataset "
                f"column; give the file without {source.dataset}="
            )
        counts = generic_participants(frame, source.path)
    else:
        counts = stein_participants(
            frame, source.path, source.dataset or stein_dataset(source.path, layout)
        )
    return counts, describe(source, layout, frame, counts)


def read_images(source: SummaryFile) -> tuple[pd.DataFrame, dict]:
    """Per-image judgements from one file, and a note of what it was."""
    frame = read_csv(source.path)
    layout = layout_of(frame, source.path)
    if layout != STEIN_IMAGES:
        raise PerceptError(
            f"{source.path}: this is a per-participant file ({DESCRIPTIONS[layout]}); give it "
            "with --summary, not --image-summary"
        )
    dataset = source.dataset or stein_dataset(source.path, layout)
    images = stein_images(frame, source.path, dataset)
    return images, describe(source, layout, frame, images)


def describe(source: SummaryFile, layout: str, frame: pd.DataFrame, table: pd.DataFrame) -> dict:
    """What human_summary.json records of one input file."""
    known = {*LAYOUTS[layout][0], *LAYOUTS[layout][1]}
    return {
        "path": str(source.path),
        "layout": layout,
        "datasets": sorted(table["dataset"].unique().tolist()),
        "rows": len(frame),
        "ignored_columns": [c for c in frame.columns if c not in known],
    }


# --- Statistics -------------------------------------------------------------------------------


def participant_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """participant_errors.csv rows: the same scores a full study gives, from counts.

    Where the fake/real split is unknown (generic rows without it) the error is the
    overall share of wrong answers, and fake error, real error, d' and c stay empty.
    """
    with warnings.catch_warnings():
        # Rows without the split: every score NaN, which the next lines fill in.
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = scores_from_counts(
            counts["fakes_said_fake"], counts["n_fake"], counts["reals_said_fake"], counts["n_real"]
        )
    unsplit = counts["n_fake"].isna().to_numpy()
    if unsplit.any():
        overall = 1 - counts["n_correct"].to_numpy(dtype=np.float64) / counts["n_trials"]
        scores["error"] = np.where(unsplit, overall, scores["error"])
    table = counts[["dataset", "model", "participant_id", "n_trials", "n_fake", "n_real"]]
    table = table.assign(**scores).reset_index(drop=True)
    return table.astype({"n_trials": int, "n_fake": "Int64", "n_real": "Int64"})


def model_table(
    scores: pd.DataFrame, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """human.csv from participant scores: the columns of a full study, mixed model marked absent."""
    models = (
        scores[["dataset", "model"]].drop_duplicates().sort_values(["dataset", "model"])
    ).reset_index(drop=True)
    table, samples = scores_table(scores, models, {}, resamples=resamples, seed=seed)
    # The columns a full study has, empty, with the reason in mixed_method.
    note = table.pop("note")
    table["mixed_error"] = table["mixed_low"] = table["mixed_high"] = np.nan
    table["mixed_method"] = "not available: " + TRIAL_LEVEL
    table.insert(table.columns.get_loc("mixed_error"), "note", note)
    return table, samples


def image_table(images: pd.DataFrame) -> pd.DataFrame:
    """images.csv: per image shown at least once, shares judged real and fake (Wilson 95%)."""
    shown = images[images["judgements"] > 0].copy()
    shown["image_sha256"] = ""  # the published files name images by path, not by content
    shown["judged_real"] = shown["judgements"] - shown["judged_fake"]
    n = shown["judgements"].to_numpy()
    for answer in ("real", "fake"):
        k = shown[f"judged_{answer}"].to_numpy()
        shown[f"share_{answer}"] = k / n
        shown[f"share_{answer}_low"], shown[f"share_{answer}_high"] = wilson(k, n)
    columns = [
        "image_id",
        "image_sha256",
        "dataset",
        "source",
        "model",
        "judgements",
        "judged_real",
        "share_real",
        "share_real_low",
        "share_real_high",
        "judged_fake",
        "share_fake",
        "share_fake_low",
        "share_fake_high",
    ]
    # As in a full study: within each model, the most convincing images first.
    return (
        shown[columns]
        .sort_values(
            ["dataset", "source", "model", "share_real"], ascending=[True, True, True, False]
        )
        .reset_index(drop=True)
    )


def analyse(
    participant_files: list[SummaryFile],
    image_files: list[SummaryFile] = (),
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PublishedResult:
    """Read and check every file first (one error stops all), then compute the tables."""
    if not participant_files and not image_files:
        raise PerceptError("no published files given: use --summary and/or --image-summary")
    counts, notes = [], []
    for source in participant_files:
        table, note = read_participants(source)
        counts.append(table)
        notes.append(note)
    images, image_notes = [], []
    for source in image_files:
        table, note = read_images(source)
        images.append(table)
        image_notes.append(note)
    if counts:
        every = pd.concat(counts, ignore_index=True)
        keys = ["dataset", "model", "participant_id"]
        twice = every[every.duplicated(keys, keep=False)]
        if len(twice):
            dataset, model, who = twice.iloc[0][keys]
            files = [n["path"] for n in notes if dataset in n["datasets"]]
            raise PerceptError(
                f"participant {who} of model {model} in dataset {dataset} appears in more than "
                f"one file ({', '.join(files)}); {HELP}"
            )
    not_available = [dict(item) for item in NOT_AVAILABLE]
    human = pairs = scores = None
    if counts:
        scores = participant_scores(every)
        human, samples = model_table(scores, resamples=resamples, seed=seed)
        pairs = pairs_table(human, samples)
        unsplit = scores["n_fake"].isna()
        if unsplit.any():
            not_available.append(
                {
                    "statistic": "fake error, real error, d' and c of participants without "
                    "n_fake/n_real",
                    "columns": ["fake_error", "real_error", "dprime", "criterion"],
                    "reason": f"{int(unsplit.sum())} participant(s) in the generic layout lack "
                    "the fake/real split; their error is the overall share wrong (not "
                    "real/fake balanced) and they count only towards error",
                }
            )
    else:
        not_available.append(
            {
                "statistic": "per-model human error (human.csv, pairs.csv)",
                "columns": ["human.csv", "pairs.csv", "participant_errors.csv"],
                "reason": "needs per-participant files (--summary); per-image counts do not "
                "say which answers came from which participant",
            }
        )
    image_rows, never = None, None
    if images:
        every_image = pd.concat(images, ignore_index=True)
        image_rows = image_table(every_image)
        never = int((every_image["judgements"] == 0).sum())
    else:
        not_available.append(
            {
                "statistic": "per-image realism",
                "columns": ["images.csv"],
                "reason": "needs per-image files (--image-summary)",
            }
        )
    participants = 0 if scores is None else len(scores)
    trials = 0 if scores is None else int(scores["n_trials"].sum())
    summary = {
        "source": "published summaries",
        "files": notes + image_notes,
        "counts": {
            "participants": participants,
            "excluded_participants": 0,
            "included_participants": participants,
            "excluded_trials": 0,
            "included_trials": trials,
        },
        "excluded_by_rule": {},
        "rules": {
            "note": "exclusions as applied by the original authors; percept applied none "
            "to the published summaries"
        },
        "published": {
            "datasets": sorted(
                {d for n in notes + image_notes for d in n["datasets"]},
            ),
            "models": 0 if human is None else len(human),
            "trials_per_participant": None
            if scores is None
            else float(scores["n_trials"].median()),
            "images_judged": None if image_rows is None else len(image_rows),
            "images_never_judged": never,
            "image_models_without_participants": image_models_without_participants(
                human, image_rows
            ),
        },
        "not_available": not_available,
        "bootstrap": {"resamples": resamples, "seed": seed, "joint": False},
        "versions": package_versions(),
    }
    return PublishedResult(human, pairs, scores, image_rows, summary)


def image_models_without_participants(
    human: pd.DataFrame | None, images: pd.DataFrame | None
) -> list[str]:
    """dataset/model pairs in the per-image files but not the per-participant ones (a typo?)."""
    if human is None or images is None:
        return []
    known = set(zip(human["dataset"], human["model"], strict=True))
    seen = images[["dataset", "model"]].drop_duplicates().itertuples(index=False)
    return sorted(f"{d}/{m}" for d, m in seen if (d, m) not in known)


def format_result(result: PublishedResult) -> str:
    """What `percept human --summary` prints: counts, the per-model table, what is missing."""
    c, published = result.summary["counts"], result.summary["published"]
    lines = [
        f"Published summaries: {c['participants']} participants, {published['models']} models, "
        f"datasets {', '.join(published['datasets'])}; no exclusions applied by percept"
    ]
    if result.human is not None:
        lines += ["", *format_rows(result.human)]
    if result.images is not None:
        lines.append(
            f"{len(result.images)} images judged at least once "
            f"({published['images_never_judged']} never shown left out of images.csv)"
        )
    strays = published["image_models_without_participants"]
    if strays:
        lines.append(f"Models in per-image files only (no participants): {', '.join(strays)}")
    lines.append(
        "Not available from summaries: "
        + "; ".join(item["statistic"] for item in result.summary["not_available"])
        + " (reasons in human_summary.json)"
    )
    return "\n".join(lines)
