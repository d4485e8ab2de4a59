"""The `percept` command: one click group with a sub-command per pipeline step."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from percept.errors import PerceptError
from stimuli.cli import stimuli


class UserError(click.ClickException):
    """Shown as one line, without a traceback; exit status 2."""

    exit_code = 2


# Analysis commands are imported only when run, so `percept serve` never loads
# pandas or torch (the study server must run without the ML stack).
LAZY_COMMANDS = {
    "human": (
        "analysis.human_cli:human",
        "Human error rates per model from an export or published summaries.",
    ),
    "features": ("analysis.features_cli:features", "Image features from an encoder (cached)."),
    "metrics": ("analysis.metrics_cli:metrics", "Metrics of each model's images against the real."),
    "report": ("analysis.report_cli:report", "Which metrics agree with people: an HTML report."),
    "heatmaps": (
        "analysis.heatmaps_cli:heatmaps",
        "Which image regions drive FD: Grad-CAM overlays (PNG).",
    ),
}


class PerceptGroup(click.Group):
    """Turns errors a user can fix into one line and exit status 2; loads analysis lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            module, attr = LAZY_COMMANDS[name][0].split(":")
            try:
                command = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name and e.name.split(".")[0] in ("torch", "timm", "open_clip"):
                    raise UserError(
                        f"`percept {name}` needs the ML extra: pip install 'percept[ml]'"
                    ) from None
                raise
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help of lazy commands comes from LAZY_COMMANDS: --help imports nothing heavy.
        rows = [(name, cmd.get_short_help_str(60)) for name, cmd in sorted(self.commands.items())]
        rows += [
            (name, help) for name, (_, help) in LAZY_COMMANDS.items() if name not in self.commands
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PerceptError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            # Disk full, permission denied and the like are the user's to fix too;
            # PERCEPT_DEBUG=1 shows the traceback when it is ours.
            if os.environ.get("PERCEPT_DEBUG"):
                raise
            raise UserError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None


@click.group(cls=PerceptGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="percept")
def cli() -> None:
    """percept: human realism studies of generative image models, and the metrics that agree."""


cli.add_command(stimuli)

DB_OPTION = click.option(
    "--db",
    "db_url",
    envvar="DATABASE_URL",
    help="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/name "
    "[default: $DATABASE_URL, else SQLite in the instance folder]",
)


def make_app(db_url: str | None, **config):
    """The study server app for a CLI command, on the database the user named."""
    from study_server import create_app

    if db_url:
        config["SQLALCHEMY_DATABASE_URI"] = db_url
    return create_app(config)


@cli.group("db")
def db_group() -> None:
    """Database schema migrations."""


@db_group.command("upgrade")
@DB_OPTION
def db_upgrade(db_url: str | None) -> None:
    """Create or migrate the database's tables to the current schema."""
    from study_server.schema import db_url_for_humans, upgrade_schema

    app = make_app(db_url)
    upgrade_schema(app)
    click.echo(f"Database {db_url_for_humans(app)} is at the current schema.")


@cli.group()
def study() -> None:
    """Register, copy, list, open, pause, resume and close studies; set their targets."""


@study.command("create")
@click.argument("config_file", type=click.Path(path_type=Path))
@DB_OPTION
@click.option(
    "--draft",
    is_flag=True,
    help="Create it as a draft that takes no participants until `percept study open SLUG` "
    "[default: open at once].",
)
@click.option(
    "--pilot",
    is_flag=True,
    help="Mark it as a pilot (as `pilot = true` in the config does); `percept study copy` "
    "makes the main study from it later.",
)
def study_create(config_file: Path, db_url: str | None, draft: bool, pilot: bool) -> None:
    """Register the study described by CONFIG_FILE (TOML; see docs/study-config.md).

    Applies pending database migrations first, so a new database needs no other step.
    """
    from dataclasses import replace

    from study_server.schema import db_url_for_humans, upgrade_schema
    from study_server.studies import create_study, study_summary
    from study_server.studyconfig import load_config

    config = load_config(config_file)
    if pilot:
        config = replace(config, pilot=True)
    app = make_app(db_url)
    upgrade_schema(app)
    with app.app_context():
        try:
            created = create_study(config, draft=draft)
        except PerceptError as e:
            raise PerceptError(f"{config_file}: {e}") from None
        summary = study_summary(created)
    kind = "Pilot study" if config.pilot else "Study"
    click.echo(f"{kind} {config.slug!r} created in {db_url_for_humans(app)}:")
    click.echo(summary)
    click.echo(f"Participants start at /s/{config.slug}")
    if draft:
        click.echo(f"It is a draft: `percept study open {config.slug}` lets participants in.")
    if config.pilot:
        click.echo(f"Then `percept study copy {config.slug} NEW-SLUG` makes the main study.")


@study.command("copy")
@click.argument("pilot_slug", metavar="PILOT")
@click.argument("new_slug", metavar="NEW")
@DB_OPTION
@click.option(
    "--open",
    "open_now",
    is_flag=True,
    help="Open the new study at once [default: a draft until `percept study open NEW`].",
)
def study_copy(pilot_slug: str, new_slug: str, db_url: str | None, open_now: bool) -> None:
    """Make the main study NEW from the study PILOT: the same config and images.

    The copy serves the pilot's images from the image store, so the stimulus folder is
    not needed; its participants, answers and audit log start empty. Logged in both
    studies' audit logs.
    """
    from study_server.schema import require_current_schema
    from study_server.studies import copy_study, study_summary

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        source = study_named(pilot_slug)
        copied = copy_study(source, new_slug, draft=not open_now)
        summary, state = study_summary(copied), copied.state
    click.echo(f"Main study {new_slug!r} copied from {pilot_slug!r} ({state}):")
    click.echo(summary)
    click.echo(f"Participants start at /s/{new_slug}")
    if state == "draft":
        click.echo(f"It is a draft: `percept study open {new_slug}` lets participants in.")


@study.command("check")
@click.argument("slug")
@DB_OPTION
@click.option(
    "--restore-from",
    "stimdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write missing or changed images into the store again from this stimulus folder "
    "(the study's own; each file must still have its hash), then check.",
)
def study_check(slug: str, db_url: str | None, stimdir: Path | None) -> None:
    """Verify the study's image store: every image there, unchanged, one byte length."""
    from study_server.imagestore import check_study, restore_study, store_dir
    from study_server.schema import require_current_schema

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        found = study_named(slug)
        store = store_dir()
        if stimdir is not None:
            restored = restore_study(found, stimdir, store)
            click.echo(f"{restored} images of {slug!r} written again into {store} from {stimdir}")
        result = check_study(found, store)
    for problem in result.problems:
        click.echo(problem, err=True)
    if result.problems:
        raise PerceptError(
            f"study {slug!r}: {len(result.problems)} problem(s) in the image store {store}, "
            "listed above"
        )
    click.echo(
        f"study {slug!r}: all {result.images} images are in {store}, unchanged, "
        f"{result.length or 0:,} bytes each"
    )


def study_named(slug: str):
    """The study with this slug (inside an app context), or a PerceptError naming the others."""
    from study_server.studies import find_study, list_studies

    found = find_study(slug)
    if found is None:
        known = ", ".join(line.split()[0] for line in list_studies()) or "none"
        raise PerceptError(f"no study {slug!r} in this database (studies: {known})")
    return found


STATE_ACTIONS = {
    "open": "Let newcomers in: a draft study starts, a closed one opens again.",
    "pause": "Stop taking newcomers for now (sessions in progress follow `on_pause`).",
    "resume": "Take newcomers again after a pause.",
    "close": "Take no more newcomers (sessions in progress follow `on_pause`).",
}


def _state_command(action: str) -> click.Command:
    @click.argument("slug")
    @DB_OPTION
    def command(slug: str, db_url: str | None) -> None:
        from study_server.lifecycle import CLI, change_state
        from study_server.schema import require_current_schema

        app = make_app(db_url)
        require_current_schema(app)
        with app.app_context():
            state = change_state(study_named(slug), action, CLI)
        click.echo(f"study {slug!r} is {state} (logged in its audit log)")

    command.__doc__ = STATE_ACTIONS[action] + " Logged with time in the audit log."
    return study.command(action)(command)


for _action in STATE_ACTIONS:
    _state_command(_action)


@study.command("set-target", context_settings={"ignore_unknown_options": True})
@click.argument("slug")
@click.argument("target", metavar="N")
@click.option(
    "--model",
    help="Only this model (dataset/model, as the dashboard names it) "
    "[default: every model of the study].",
)
@DB_OPTION
def study_set_target(slug: str, target: str, model: str | None, db_url: str | None) -> None:
    """Set the participant target of every model of study SLUG (or of --model) to N.

    N is a whole number from 0 (take no more newcomers for it) to 100000. Logged with
    the old and new targets in the audit log.
    """
    from study_server.lifecycle import CLI, parse_target, set_target
    from study_server.schema import require_current_schema

    number = parse_target(target)
    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        changes = set_target(study_named(slug), number, CLI, model)
    click.echo(f"study {slug!r}: target " + "; ".join(changes) + " (logged in its audit log)")


@study.command("list")
@DB_OPTION
def study_list(db_url: str | None) -> None:
    """The studies in the database: platform, state (draft, open, paused, closed), kind
    (pilot, main) and participants by state."""
    from study_server.schema import db_url_for_humans, require_current_schema
    from study_server.studies import list_studies

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        lines = list_studies()
    click.echo("\n".join(lines) or f"No studies in {db_url_for_humans(app)} yet.")


@cli.group()
def participant() -> None:
    """One participant's data: show it (data-subject access) or delete it (withdrawal)."""


def participant_options(command):
    """--study, and exactly one of --platform-id / --participant, plus --db."""
    command = click.option(
        "--participant",
        "number",
        type=click.IntRange(min=1),
        help="The participant's number (participant_id in the export, Id on the dashboard).",
    )(command)
    command = click.option(
        "--platform-id",
        help="Their Prolific id, MTurk worker id, or a link study's client id.",
    )(command)
    command = click.option("--study", "slug", required=True, help="The study's slug.")(command)
    return DB_OPTION(command)


@participant.command("show")
@participant_options
def participant_show(slug: str, platform_id: str | None, number: int | None, db_url: str | None):
    """Print, as JSON, everything stored about one participant of a study."""
    import json

    from study_server.schema import require_current_schema
    from study_server.withdrawal import find_participant, stored_data

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        person = find_participant(study_named(slug), platform_id=platform_id, number=number)
        data = stored_data(person)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@participant.command("delete")
@participant_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def participant_delete(
    slug: str, platform_id: str | None, number: int | None, db_url: str | None, yes: bool
):
    """Delete every row of one participant (a withdrawal); logged without their raw id.

    Removes their answers, trials, model assignments, tokens and the participant row;
    the audit log keeps who, when, and the salted hash of their platform id.
    """
    from study_server.lifecycle import CLI
    from study_server.schema import require_current_schema
    from study_server.withdrawal import delete_participant, find_participant, row_counts

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        person = find_participant(study_named(slug), platform_id=platform_id, number=number)
        rows = ", ".join(f"{n} {table}" for table, n in row_counts(person).items())
        if not yes:
            click.confirm(
                f"Delete participant {person.id} of study {slug!r} ({rows})? This cannot be undone",
                abort=True,
            )
        number = person.id
        delete_participant(person, CLI)
    click.echo(f"Deleted participant {number} of study {slug!r}: {rows} (logged in the audit log)")


@cli.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--demo",
    "demo_dir",
    is_flag=False,
    flag_value="demo-out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve the database `percept demo` made in this folder [default folder: demo-out].",
)
def serve(db_url: str | None, host: str, port: int, demo_dir: Path | None) -> None:
    """Serve studies with the development server (use gunicorn in production; see README)."""
    from werkzeug.serving import run_simple

    from study_server.schema import require_current_schema

    config = {}
    if demo_dir is not None:
        database = demo_dir / "demo.sqlite3"
        if not database.is_file():
            raise PerceptError(f"{database}: not found; run `percept demo --out {demo_dir}` first")
        db_url = f"sqlite:///{database.resolve()}"
        config["IMAGE_STORE"] = str((demo_dir / "images").resolve())
    app = make_app(db_url, **config)
    require_current_schema(app)
    base = f"http://{host}:{port}"
    click.echo(f"Admin: {base}/admin/")
    with app.app_context():
        slugs = open_study_slugs()
    for slug in slugs:
        click.echo(f"Participants of {slug}: {base}/s/{slug}")
    if not slugs:
        click.echo("No open study yet: `percept study create` makes one.")
    click.echo(f"Serving on {base} (Ctrl-C stops)")
    run_simple(host, port, app, threaded=True)


def open_study_slugs() -> list[str]:
    """Slugs of the studies that take participants (in the app context), sorted."""
    from sqlalchemy import select

    from study_server.db import db
    from study_server.models import Study

    studies = db.session.scalars(select(Study).order_by(Study.slug))
    # Studies without a lifecycle state (before study states existed) are all open.
    return [s.slug for s in studies if getattr(s, "state", "open") == "open"]


@cli.command("export")
@DB_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for trials.csv, participants.csv, images.csv and data_dictionary.md.",
)
@click.option("--study", "slug", help="Export only this study (its slug) [default: every study]")
@click.option(
    "--include-platform-ids",
    is_flag=True,
    help="Write the raw platform ids and completion codes instead of salted hashes.",
)
def export_command(
    db_url: str | None, out: Path, slug: str | None, include_platform_ids: bool
) -> None:
    """Export study data as tidy CSV files with a data dictionary (see docs/export.md)."""
    from study_server.export import write_export
    from study_server.schema import require_current_schema

    app = make_app(db_url)
    require_current_schema(app)
    with app.app_context():
        counts = write_export(out, slug=slug, include_platform_ids=include_platform_ids)
    for name, rows in counts.items():
        click.echo(f"{out / name}: {rows} rows")
    click.echo(f"{out / 'data_dictionary.md'}: what every column means")


@cli.command()
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for everything the demo writes.",
)
@click.option(
    "--participants",
    type=click.IntRange(min=10),
    default=60,
    show_default=True,
    help="Simulated participants.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of every random choice.",
)
def demo(out: Path, participants: int, seed: int) -> None:
    """Run the whole pipeline on bundled images, with no network.

    Builds the demo stimuli (two datasets, five models each with planted
    realism), creates the study on SQLite, serves it with gunicorn on a free
    local port, runs a simulated crowd over HTTP, exports, computes human
    statistics, features and metrics (encoders without pretrained weights, said
    so everywhere) and writes the report. Everything started is stopped.
    """
    from percept.demo import run_demo

    run_demo(out, participants=participants, seed=seed, echo=click.echo)


@cli.command()
@click.option(
    "--url", required=True, help="Base URL of the study server, e.g. http://127.0.0.1:5000"
)
@click.option("--study", "slug", required=True, help="The study's slug.")
@click.option(
    "--stimuli",
    "stimdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The study's stimulus folder: the simulated observers recognise images by content.",
)
@click.option("--participants", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1, max=500), default=8, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--pace",
    type=click.FloatRange(min=0, max=10),
    default=0.0,
    show_default=True,
    help="1: wait as long as a real trial takes before each answer; 0: as fast as possible.",
)
@click.option(
    "--drop",
    type=click.FloatRange(min=0, max=0.5),
    default=0.0,
    show_default=True,
    help="Share of requests lost on the network (then sent again), to test resilience.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for truth.csv (who was simulated how) [default: none written].",
)
def simulate(
    url: str,
    slug: str,
    stimdir: Path,
    participants: int,
    concurrency: int,
    seed: int,
    pace: float,
    drop: float,
    out: Path | None,
) -> None:
    """Scripted participants over HTTP, using only what a browser uses (docs in the module)."""
    from tqdm import tqdm

    from percept.simulate.crowd import Conditions, simulate_crowd

    with tqdm(total=participants, unit="participant", disable=None) as bar:
        people = simulate_crowd(
            url,
            slug,
            stimdir,
            participants,
            concurrency=concurrency,
            seed=seed,
            out=out,
            progress=bar.update,
            conditions=Conditions(pace=pace, drop=drop),
        )
    statuses: dict[str, int] = {}
    for p in people:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    if out:
        click.echo(f"Truth: {out / 'truth.csv'}")


def main() -> None:
    """Console-script entry point."""
    cli()
