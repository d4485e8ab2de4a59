"""Exporting study data as tidy CSV files with a data dictionary.

Four files: trials.csv (one row per trial, answered or not), participants.csv,
images.csv and data_dictionary.md. The columns and their descriptions live in
one place (the *_COLUMNS tuples below); the data dictionary and docs/export.md
are both made from them, and a test keeps the docs in step.

Rows stream from the database in batches of YIELD_PER and are written as they
come, so memory stays bounded however many trials a study has. The functions
run inside a Flask app context and only read.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import select

from percept.errors import PerceptError
from study_server.db import db
from study_server.exclusions import (
    ParticipantStats,
    exclusion_reasons,
    participant_stats,
    trial_min_duration_ms,
)
from study_server.models import (
    Generator,
    Image,
    Participant,
    Response,
    Study,
    Trial,
    participant_generator,
)
from study_server.studies import study_config
from study_server.studyconfig import Timing

# Rows fetched from the database per round trip: enough to keep the round trips cheap,
# few enough that a batch is a few megabytes at most.
YIELD_PER = 2000


@dataclass(frozen=True)
class Column:
    """One column of an exported file: its name, type and what it means."""

    name: str
    type: str
    description: str


TRIAL_COLUMNS = (
    Column("study", "text", "Slug of the study."),
    Column("participant_id", "integer", "The participant (`participant_id` in participants.csv)."),
    Column(
        "condition",
        "text",
        "The models assigned to the participant, each as `dataset/model`, joined by `+`.",
    ),
    Column("trial_id", "integer", "The server's id of the trial (the id in the API's URLs)."),
    Column(
        "position",
        "integer",
        "Order of the trial in the participant's session, from 0; practice trials come first.",
    ),
    Column("block", "text", "`practice` or `main`."),
    Column(
        "repeat_of",
        "integer",
        "For a repeat, the `trial_id` of the trial whose invalid answer added it: the same "
        "image, kind and expected answer again, at the end of the main block (the study's "
        "`[timing] repeat_invalid`); empty for every planned trial.",
    ),
    Column(
        "kind",
        "text",
        "`stimulus` (an image to judge), `catch` (an unmistakable fake shown until the answer) "
        "or `instructed` (the participant is told which button to press).",
    ),
    Column("image_id", "text", "Opaque public id of the image shown (`image_id` in images.csv)."),
    Column("image_sha256", "text", "SHA-256 of the shown image's PNG file, 64 hex digits."),
    Column("dataset", "text", "Dataset the image belongs to."),
    Column("source", "text", "`real` (a photograph of the dataset) or `fake` (generated)."),
    Column(
        "model",
        "text",
        "Model that generated the image; empty for real images and for catch images, "
        "which percept makes itself.",
    ),
    Column("role", "text", "The image's role: `main`, `practice` or `catch`."),
    Column(
        "expected",
        "text",
        "The right answer, `real` or `fake`: the image's source for stimulus trials, "
        "`fake` for catch trials, the instructed button for instructed trials.",
    ),
    Column(
        "planned_exposure_ms",
        "number",
        "Milliseconds the image was meant to be shown; empty when it stays until the answer.",
    ),
    Column(
        "min_duration_ms",
        "number",
        "Shortest time the trial takes in the trial runner: the study's fixation, the "
        "planned exposure (0 when unlimited) and the mask, in milliseconds. The pacing "
        "exclusion rule compares answer arrival times with it.",
    ),
    Column("answered", "boolean", "`true` when the trial has a response, else `false`."),
    Column("choice", "text", "The answer, `real` or `fake`; empty when not answered."),
    Column(
        "correct",
        "boolean",
        "`true` when `choice` equals `expected`, computed on the server; empty when not answered.",
    ),
    Column(
        "rt_ms",
        "number",
        "Response time in milliseconds, as measured in the browser; empty when not answered.",
    ),
    Column(
        "onset_ms",
        "number",
        "When the stimulus appeared, in milliseconds on the browser's page clock "
        "(`performance.now()`); empty when not reported.",
    ),
    Column(
        "displayed_ms",
        "number",
        "Milliseconds the image was actually on screen, as measured in the browser; "
        "empty when not reported.",
    ),
    Column(
        "frames",
        "integer",
        "Display frames the image was on screen; empty when not reported.",
    ),
    Column(
        "frame_ms",
        "number",
        "Duration of one display frame in milliseconds, measured at the start of the session; "
        "empty when not reported.",
    ),
    Column(
        "valid",
        "boolean",
        "`false` when the trial is invalid: the tab was hidden or the window lost focus "
        "while the image was up, or the display missed its frames (`frames` differs from "
        "max(1, round(`planned_exposure_ms` / `frame_ms`)), halves rounded up; decided by "
        "the server), else `true`; empty when not answered. Answers stored before the "
        "server checked frames may say `true` for a frame miss: the exclusion rules "
        "(`invalid_trials`, `percept human`) check the frames of every trial again.",
    ),
    Column(
        "invalid_reason",
        "text",
        "Why the trial is invalid: `hidden`, `blur` or `frames`; empty for valid and "
        "unanswered trials.",
    ),
    Column(
        "input",
        "text",
        "How the participant answered, as reported by the browser (e.g. `key`, `button`); "
        "empty when not reported.",
    ),
    Column(
        "client_sent_at",
        "number",
        "When the browser sent the answer, in milliseconds since 1970-01-01 UTC on the "
        "participant's clock (`Date.now()`); empty when not reported.",
    ),
    Column(
        "received_at",
        "timestamp",
        "When the server stored the answer, ISO 8601 in UTC (`Z`); empty when not answered.",
    ),
)

# Stored ids that could identify a person on the recruitment platform: hashed unless asked.
PLATFORM_ID_COLUMNS = (
    "platform_pid",
    "platform_study_id",
    "platform_session_id",
    "assignment_id",
    "hit_id",
    "completion_code",
)
HASHED = " Hashed unless exported with `--include-platform-ids` (see Platform ids)."

PARTICIPANT_COLUMNS = (
    Column("participant_id", "integer", "Number of the participant in this database."),
    Column("study", "text", "Slug of the study."),
    Column(
        "study_kind",
        "text",
        "`pilot` or `main`: the kind of the study (`percept study create --pilot` makes a "
        "pilot, `percept study copy` the main study from it). Analyse the two apart.",
    ),
    Column("platform", "text", "Recruitment platform: `prolific`, `mturk` or `link`."),
    Column(
        "platform_pid",
        "text",
        "Prolific PROLIFIC_PID, MTurk workerId, or for plain links the browser's own "
        "client id; empty when none was given." + HASHED,
    ),
    Column("platform_study_id", "text", "Prolific STUDY_ID; empty for other platforms." + HASHED),
    Column(
        "platform_session_id", "text", "Prolific SESSION_ID; empty for other platforms." + HASHED
    ),
    Column("assignment_id", "text", "MTurk assignmentId; empty for other platforms." + HASHED),
    Column("hit_id", "text", "MTurk hitId; empty for other platforms." + HASHED),
    Column(
        "turk_submit_to",
        "text",
        "MTurk host the completion form goes to: `https://www.mturk.com` (live) or "
        "`https://workersandbox.mturk.com` (sandbox); empty for other platforms.",
    ),
    Column(
        "condition",
        "text",
        "The models assigned to the participant, each as `dataset/model`, joined by `+`.",
    ),
    Column(
        "state",
        "text",
        "`consented`, `practice`, `main` (still taking part), `completed`, "
        "`abandoned` (idle too long) or `returned` (withdrew).",
    ),
    Column("created_at", "timestamp", "Sign-up time, ISO 8601 in UTC (`Z`)."),
    Column(
        "last_seen_at",
        "timestamp",
        "The participant's last answer, completion or return (sign-up time before any), "
        "ISO 8601 in UTC (`Z`); reading the session does not count.",
    ),
    Column(
        "completed_at",
        "timestamp",
        "Completion time, ISO 8601 in UTC (`Z`); empty when not completed.",
    ),
    Column(
        "completion_code",
        "text",
        "The completion code the participant was given (the study's fixed code, or a personal "
        "one that the platform shows next to the worker's id); empty when not completed." + HASHED,
    ),
    Column(
        "main_trials",
        "integer",
        "Trials in the main block, attention checks and repeats included.",
    ),
    Column("answered_main", "integer", "Main-block trials answered, repeats included."),
    Column("attention_checks", "integer", "Catch and instructed trials in the main block."),
    Column("attention_failures", "integer", "Attention checks answered wrongly."),
    Column(
        "invalid_trials",
        "integer",
        "Answered main-block trials that are invalid (hidden tab, lost focus or missed "
        "display frames; repeats included). The invalid fraction of the exclusion rule "
        "`max_invalid_fraction` is `invalid_trials` / `answered_main`.",
    ),
    Column(
        "median_rt_ms",
        "number",
        "Median response time of the answered main-block trials, in milliseconds; "
        "empty when none is answered.",
    ),
    Column(
        "excluded",
        "boolean",
        "For a completed participant, `true` when the study's exclusion rules drop them, "
        "`false` when they keep them; empty for everyone who did not complete, whom the "
        "rules do not judge (analyse completed participants only).",
    ),
    Column(
        "exclusion_reasons",
        "text",
        "Why the rules drop the participant, reasons separated by `; `; empty when kept "
        "or not completed.",
    ),
    Column("screen_width", "integer", "Screen width in CSS pixels; empty when not reported."),
    Column("screen_height", "integer", "Screen height in CSS pixels; empty when not reported."),
    Column(
        "device_pixel_ratio",
        "number",
        "Device pixels per CSS pixel; empty when not reported.",
    ),
    Column(
        "user_agent",
        "text",
        "The browser's user agent string; empty when not reported. `percept simulate` and "
        "`percept demo` send `percept-simulate/...`: such participants are scripted, not people.",
    ),
)

IMAGE_COLUMNS = (
    Column("study", "text", "Slug of the study."),
    Column("image_id", "text", "Opaque public id of the image, as in its URL `/i/<image_id>.png`."),
    Column("sha256", "text", "SHA-256 of the image's PNG file, 64 hex digits."),
    Column("dataset", "text", "Dataset the image belongs to."),
    Column("source", "text", "`real` or `fake`."),
    Column("model", "text", "Model that generated the image; empty for real and catch images."),
    Column(
        "role",
        "text",
        "`main` (judged in the main block), `practice` or `catch` (attention checks).",
    ),
    Column("width", "integer", "Width in pixels."),
    Column("height", "integer", "Height in pixels."),
    Column("original_path", "text", "The file the image was ingested from."),
)

FILES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "trials.csv": (
        "One row per trial of every participant, answered or not, in participant and "
        "position order.",
        TRIAL_COLUMNS,
    ),
    "participants.csv": (
        "One row per participant, in `participant_id` order.",
        PARTICIPANT_COLUMNS,
    ),
    "images.csv": ("One row per image of the study.", IMAGE_COLUMNS),
}
DICTIONARY = "data_dictionary.md"
# OWASP's list for CSV injection: a spreadsheet runs a cell that begins with one of these.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Put before such a cell (and before a cell that begins with it, so reading back is exact).
NEUTRALISER = "'"
FORMAT_NOTE = """\
All files are UTF-8 CSV with a header row. `true`/`false` are booleans; an
empty cell is a missing value; numbers are written plainly (`612.5`, never
`6.125e2`); timestamps are ISO 8601 in UTC, e.g. `2025-01-31T14:05:09.123456Z`.

Text cells are safe to open in a spreadsheet: a text cell that begins with
`=`, `+`, `-`, `@`, a tab or a carriage return (which a spreadsheet would run
as a formula), or with `'`, is written with one `'` in front, as OWASP
recommends against CSV injection. To get the value back, remove that first
`'` from every text cell that begins with one; `percept human` does."""
PLATFORM_IDS_NOTE = {
    False: """\
Platform ids in this export are hashed: each is replaced by HMAC-SHA256 of the
id, keyed with the study's secret salt, as the first 16 hex digits. The same id
gives the same hash in every export of the study, and different hashes in
different studies.""",
    True: """\
Platform ids in this export are the raw ids the platform sent (exported with
`--include-platform-ids`): this file identifies people on the platform; keep it
private.""",
}


def column_table(columns: tuple[Column, ...]) -> str:
    """A Markdown table of the columns, as in data_dictionary.md and docs/export.md."""
    lines = ["| column | type | description |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.description} |" for c in columns]
    return "\n".join(lines)


def data_dictionary(include_platform_ids: bool = False) -> str:
    """The text of data_dictionary.md: every column of every exported file."""
    parts = ["# Data dictionary", "", FORMAT_NOTE, ""]
    for name, (about, columns) in FILES.items():
        parts += [f"## {name}", "", about, "", column_table(columns), ""]
    parts += ["## Platform ids", "", PLATFORM_IDS_NOTE[include_platform_ids], ""]
    return "\n".join(parts)


def write_export(
    out_dir: Path, *, slug: str | None = None, include_platform_ids: bool = False
) -> dict[str, int]:
    """Write the export files into out_dir (made if missing); returns rows per CSV file.

    Every study when slug is None. Each file is written under a temporary name and
    renamed once all four are complete, so a failed export leaves no half file.
    """
    studies = _studies(slug)
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary: dict[str, Path] = {}

    @contextmanager
    def open_text(name: str) -> Iterator[TextIO]:
        temporary[name] = out_dir / f".{name}.partial"
        with open(temporary[name], "w", encoding="utf-8", newline="") as f:
            yield f

    try:
        counts = _write_all(open_text, studies, include_platform_ids)
        for name, path in temporary.items():
            os.replace(path, out_dir / name)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    return counts


def export_zip(fileobj: BinaryIO, *, slug: str, include_platform_ids: bool = False) -> None:
    """Write the four export files of one study into a zip archive on fileobj.

    fileobj need not be seekable (a streamed download works).
    """
    studies = _studies(slug)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        @contextmanager
        def open_text(name: str) -> Iterator[TextIO]:
            # The size is unknown up front; zip64 lets trials.csv grow past 2 GiB.
            entry = archive.open(name, "w", force_zip64=name == "trials.csv")
            with io.TextIOWrapper(entry, encoding="utf-8", newline="") as f:
                yield f

        _write_all(open_text, studies, include_platform_ids)


def _studies(slug: str | None) -> list[Study]:
    query = select(Study).order_by(Study.id)
    if slug is None:
        return list(db.session.scalars(query))
    study = db.session.scalar(query.where(Study.slug == slug))
    if study is None:
        known = ", ".join(db.session.scalars(select(Study.slug).order_by(Study.slug))) or "none"
        raise PerceptError(f"no study {slug!r} in this database (studies: {known})")
    return [study]


def _write_all(
    open_text: Callable[[str], AbstractContextManager[TextIO]],
    studies: list[Study],
    include_platform_ids: bool,
) -> dict[str, int]:
    study_ids = [s.id for s in studies]
    conditions = _conditions(study_ids)
    counts = {}
    with open_text("trials.csv") as f:
        timing = {s.slug: study_config(s).timing for s in studies}
        counts["trials.csv"] = _write_trials(f, study_ids, conditions, timing)
    with open_text("participants.csv") as f:
        counts["participants.csv"] = _write_participants(
            f, studies, conditions, include_platform_ids
        )
    with open_text("images.csv") as f:
        counts["images.csv"] = _write_images(f, study_ids)
    with open_text(DICTIONARY) as f:
        f.write(data_dictionary(include_platform_ids))
    return counts


def _conditions(study_ids: list[int]) -> dict[int, str]:
    """Each participant's assigned models; memory grows with participants, not trials."""
    rows = db.session.execute(
        select(participant_generator.c.participant_id, Generator.dataset, Generator.model)
        .join(Generator, Generator.id == participant_generator.c.generator_id)
        .where(Generator.study_id.in_(study_ids))
        .order_by(participant_generator.c.participant_id, Generator.id)
    )
    models: dict[int, list[str]] = {}
    for participant_id, dataset, model in rows:
        models.setdefault(participant_id, []).append(f"{dataset}/{model}")
    return {pid: "+".join(names) for pid, names in models.items()}


def _write_trials(
    f: TextIO, study_ids: list[int], conditions: dict[int, str], timing: dict[str, Timing]
) -> int:
    rows = db.session.execute(
        select(
            Study.slug.label("study"),
            Trial.participant_id,
            Trial.id.label("trial_id"),
            Trial.position,
            Trial.block,
            Trial.repeat_of,
            Trial.kind,
            Image.public_id.label("image_id"),
            Image.sha256.label("image_sha256"),
            Image.dataset,
            Image.source,
            Generator.model,
            Image.role,
            Trial.expected,
            Trial.planned_exposure_ms,
            Response.id.label("response_id"),
            Response.choice,
            Response.correct,
            Response.rt_ms,
            Response.onset_ms,
            Response.displayed_ms,
            Response.frames,
            Response.frame_ms,
            Response.valid,
            Response.invalid_reason,
            Response.input,
            Response.client_sent_at,
            Response.received_at,
        )
        .select_from(Trial)
        .join(Participant, Participant.id == Trial.participant_id)
        .join(Study, Study.id == Participant.study_id)
        .join(Image, Image.id == Trial.image_id)
        .outerjoin(Generator, Generator.id == Image.generator_id)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Participant.study_id.in_(study_ids))
        .order_by(Trial.participant_id, Trial.position)
        .execution_options(yield_per=YIELD_PER)
    )
    write = _csv_writer(f, TRIAL_COLUMNS)
    count = 0
    for row in rows:
        values = dict(row._mapping)
        values["answered"] = values.pop("response_id") is not None
        values["condition"] = conditions.get(row.participant_id, "")
        values["min_duration_ms"] = trial_min_duration_ms(
            timing[row.study], row.planned_exposure_ms
        )
        write(values)
        count += 1
    return count


def _write_participants(
    f: TextIO, studies: list[Study], conditions: dict[int, str], include_platform_ids: bool
) -> int:
    by_id = {s.id: s for s in studies}
    rules = {s.id: study_config(s) for s in studies}
    in_export = select(Participant.id).where(Participant.study_id.in_(list(by_id)))
    rows = db.session.execute(
        select(
            Participant.id,
            Participant.study_id,
            Participant.platform,
            *(getattr(Participant, name) for name in PLATFORM_ID_COLUMNS),
            Participant.turk_submit_to,
            Participant.state,
            Participant.created_at,
            Participant.last_seen_at,
            Participant.completed_at,
            Participant.screen_width,
            Participant.screen_height,
            Participant.device_pixel_ratio,
            Participant.user_agent,
        )
        .where(Participant.study_id.in_(list(by_id)))
        .order_by(Participant.id)
        .execution_options(yield_per=YIELD_PER)
    )
    # Both streams come in participant id order: walk them side by side.
    stats_stream = participant_stats(in_export)
    pending = next(stats_stream, None)
    write = _csv_writer(f, PARTICIPANT_COLUMNS)
    count = 0
    for p in rows:
        while pending is not None and pending.participant_id < p.id:
            pending = next(stats_stream, None)  # signed up after the participant query began
        stats = ParticipantStats(p.id)
        if pending is not None and pending.participant_id == p.id:
            stats, pending = pending, next(stats_stream, None)
        study = by_id[p.study_id]
        # The rules judge whole sessions only, as the admin dashboard does.
        completed = p.state == "completed"
        reasons = exclusion_reasons(stats, rules[p.study_id]) if completed else []
        values: dict[str, Any] = dict(p._mapping)
        values.update(
            participant_id=p.id,
            study=study.slug,
            study_kind=study.kind,
            condition=conditions.get(p.id, ""),
            main_trials=stats.main_trials,
            answered_main=stats.answered_main,
            attention_checks=stats.attention_checks,
            attention_failures=stats.attention_failures,
            invalid_trials=stats.invalid_trials,
            median_rt_ms=stats.median_rt_ms,
            excluded=bool(reasons) if completed else None,
            exclusion_reasons="; ".join(reasons),
        )
        if not include_platform_ids:
            for name in PLATFORM_ID_COLUMNS:
                values[name] = hash_platform_id(study.salt, values[name])
        write(values)
        count += 1
    return count


def hash_platform_id(salt: str, value: str | None) -> str | None:
    """HMAC-SHA256 of a platform id keyed with the study's salt, as 16 hex digits."""
    if value is None:
        return None
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def _write_images(f: TextIO, study_ids: list[int]) -> int:
    rows = db.session.execute(
        select(
            Study.slug.label("study"),
            Image.public_id.label("image_id"),
            Image.sha256,
            Image.dataset,
            Image.source,
            Generator.model,
            Image.role,
            Image.width,
            Image.height,
            Image.original_path,
        )
        .join(Study, Study.id == Image.study_id)
        .outerjoin(Generator, Generator.id == Image.generator_id)
        .where(Image.study_id.in_(study_ids))
        .order_by(Image.id)
        .execution_options(yield_per=YIELD_PER)
    )
    write = _csv_writer(f, IMAGE_COLUMNS)
    count = 0
    for row in rows:
        write(row._mapping)
        count += 1
    return count


def _csv_writer(f: TextIO, columns: tuple[Column, ...]) -> Callable[[Any], None]:
    """Writes the header now; the returned function writes one row from a mapping.

    A column missing from the mapping is a KeyError, so no column is ever silently empty.
    """
    writer = csv.writer(f, lineterminator="\n")
    # The csv module quotes a cell with "\n" in it but not one with a lone "\r", which
    # readers take for a line end: such a row is written with every cell quoted.
    quoting_all = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([c.name for c in columns])

    def write(values) -> None:
        cells = [
            neutralise(_cell(values[c.name])) if c.type == "text" else _cell(values[c.name])
            for c in columns
        ]
        (quoting_all if any("\r" in cell for cell in cells) else writer).writerow(cells)

    return write


def neutralise(text: str) -> str:
    """A text cell no spreadsheet runs as a formula; `'` + text for a formula start or a `'`.

    Reversible: drop the first character of every text cell that begins with `'`.
    """
    if text.startswith((*FORMULA_START, NEUTRALISER)):
        return NEUTRALISER + text
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Shortest round-trip digits, never in exponent form (1e-05 -> 0.00001).
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    return str(value)
