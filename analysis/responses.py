"""Loading a study export into one tidy DataFrame: one row per trial, one column per variable.

The export's own `data_dictionary.md` says which columns each file has and of
which type; `load` checks the CSV files against it, so a missing or mistyped
column is one clear error rather than a wrong number later.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from percept.errors import PerceptError

DICTIONARY = "data_dictionary.md"
FILES = ("trials.csv", "participants.csv", "images.csv")
# Participant columns joined onto every trial (prefixed where the names would clash).
PARTICIPANT_COLUMNS = (
    "study_kind",
    "platform",
    "platform_pid",
    "state",
    "completed_at",
    "main_trials",
    "answered_main",
)
# The user agent `percept simulate` (and so `percept demo`) signs its scripted participants
# up with (percept.simulate.crowd.USER_AGENT starts with it): they are no people.
SIMULATED_AGENT = "percept-simulate/"
# The sentence of data_dictionary.md saying that text cells carry a leading `'` against
# spreadsheet formulas (study_server/export.py FORMAT_NOTE); older exports lack it.
NEUTRALISED = "is written with one `'` in front"


def read_dictionary(export_dir: Path) -> dict[str, dict[str, str]]:
    """{file name: {column: type}} from an export's data dictionary.

    Text columns of an export whose text cells are neutralised against spreadsheet
    formulas have the type `text'` here, which `convert` reads back to the original.
    """
    path = export_dir / DICTIONARY
    if not path.is_file():
        raise PerceptError(
            f"{export_dir}: no {DICTIONARY}; is this a folder written by `percept export`?"
        )
    columns: dict[str, dict[str, str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (\S+\.csv)\s*$", line)
        if heading:
            current = columns.setdefault(heading.group(1), {})
            continue
        row = re.match(r"^\| `([^`]+)` \| (\w+) \|", line)
        if row and current is not None:
            current[row.group(1)] = row.group(2)
    missing = [f for f in FILES if not columns.get(f)]
    if missing:
        raise PerceptError(f"{path}: no column table for {', '.join(missing)}")
    if NEUTRALISED in " ".join(path.read_text(encoding="utf-8").split()):
        for types in columns.values():
            for column, kind in types.items():
                if kind == "text":
                    types[column] = "text'"
    return columns


def read_table(path: Path, types: dict[str, str]) -> pd.DataFrame:
    """One export CSV, every column converted to its documented type."""
    if not path.is_file():
        raise PerceptError(f"{path}: file not found; export the study again")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PerceptError(f"{path}: not a readable CSV file ({e})") from None
    missing = [c for c in types if c not in frame.columns]
    if missing:
        raise PerceptError(
            f"{path}: missing column(s) {', '.join(missing)} that {DICTIONARY} lists"
        )
    for column, kind in types.items():
        frame[column] = convert(frame[column], kind, path, column)
    return frame


def convert(values: pd.Series, kind: str, path: Path, column: str) -> pd.Series:
    """A text column as its dictionary type; names the first bad row when a value does not fit."""
    try:
        if kind == "integer":
            return pd.to_numeric(values, errors="raise").astype("Int64")
        if kind == "number":
            return pd.to_numeric(values, errors="raise").astype("float64")
        if kind == "boolean":
            bad = ~values.isin(["true", "false"]) & values.notna()
            if bad.any():
                raise ValueError(values[bad].iloc[0])
            return values.map({"true": True, "false": False}).astype("boolean")
        if kind == "timestamp":
            return pd.to_datetime(values, utc=True, format="ISO8601", errors="raise")
        if kind == "text'":
            return unneutralise(values)
        return values.astype("string")
    except (ValueError, TypeError) as e:
        row = _first_bad_row(values, kind)
        raise PerceptError(
            f"{path}: column {column} should hold {kind} values, "
            f"but row {row} has {values.iloc[row - 2]!r} ({e})"
        ) from None


def unneutralise(values: pd.Series) -> pd.Series:
    """Text cells as they were before the export put `'` in front (formula injection guard)."""
    text = values.astype("string")
    marked = text.str.startswith("'", na=False)
    return text.where(~marked, text.str.slice(1))


def _first_bad_row(values: pd.Series, kind: str) -> int:
    """The 1-based file line (header is line 1) of the first value that does not convert."""
    for i, value in enumerate(values):
        if pd.isna(value):
            continue
        try:
            if kind in ("integer", "number"):
                float(value)
                if kind == "integer" and float(value) != int(float(value)):
                    raise ValueError
            elif kind == "boolean" and value not in ("true", "false"):
                raise ValueError
            elif kind == "timestamp":
                pd.Timestamp(value)
        except (ValueError, TypeError):
            return i + 2
    return 2


def load(source: str | Path) -> pd.DataFrame:
    """All trials of an export, with their participant's variables, as one tidy frame.

    `source` is a folder written by `percept export`, or a database URL (then the
    export is made into a temporary folder first, by the study server's own exporter).
    """
    text = str(source)
    if "://" in text:
        with tempfile.TemporaryDirectory() as tmp:
            export_database(text, Path(tmp))
            return load(tmp)
    export_dir = Path(source)
    if not export_dir.is_dir():
        raise PerceptError(f"{export_dir}: no such folder; run `percept export --out {text}`")
    columns = read_dictionary(export_dir)
    trials = read_table(export_dir / "trials.csv", columns["trials.csv"])
    participants = read_table(export_dir / "participants.csv", columns["participants.csv"])
    if trials.empty:
        raise PerceptError(f"{export_dir / 'trials.csv'}: no trials; nobody has taken part yet")
    unknown = set(trials["participant_id"].dropna()) - set(participants["participant_id"])
    if unknown:
        raise PerceptError(
            f"{export_dir / 'trials.csv'}: trials of participant(s) not in participants.csv, "
            f"e.g. {sorted(unknown)[0]}; export the study again"
        )
    if "study_kind" not in participants:  # an export made before study kinds existed
        participants["study_kind"] = pd.Series(pd.NA, index=participants.index, dtype="string")
    agent = participants.get("user_agent", pd.Series(pd.NA, index=participants.index))
    participants["simulated"] = agent.fillna("").str.startswith(SIMULATED_AGENT).astype(bool)
    joined = participants[["participant_id", *PARTICIPANT_COLUMNS, "simulated"]].rename(
        columns={"state": "participant_state"}
    )
    frame = trials.merge(joined, on="participant_id", how="left", validate="many_to_one")
    return frame.sort_values(["participant_id", "position"], ignore_index=True)


def load_images(export_dir: str | Path) -> pd.DataFrame:
    """images.csv of an export, typed."""
    export_dir = Path(export_dir)
    return read_table(export_dir / "images.csv", read_dictionary(export_dir)["images.csv"])


def one_study(
    trials: pd.DataFrame, images: pd.DataFrame, slug: str | None, source: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and images of study `slug`, or of the only study there is.

    A pilot and the main study in one database would otherwise be pooled unnoticed.
    """
    studies = sorted(trials["study"].dropna().unique())
    if slug is None:
        if len(studies) > 1:
            raise PerceptError(
                f"{source}: holds {len(studies)} studies ({', '.join(studies)}); "
                "choose one with --study"
            )
        return trials, images
    if slug not in studies:
        raise PerceptError(
            f"{source}: no trials of study {slug!r}; it has {', '.join(studies) or 'none'}"
        )
    chosen = trials[trials["study"] == slug].reset_index(drop=True)
    return chosen, images[images["study"] == slug].reset_index(drop=True)


def export_database(db_url: str, out: Path, slug: str | None = None) -> None:
    """Run the study server's exporter in its own process (analysis never imports Flask)."""
    code = "from percept.cli import main; main()"
    study = ["--study", slug] if slug else []
    result = subprocess.run(
        [sys.executable, "-c", code, "export", "--db", db_url, "--out", str(out), *study],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["export failed"])[-1]
        raise PerceptError(message.removeprefix("Error: "))
