"""`percept demo`: the whole pipeline on bundled images, with no network.

stimuli → study on SQLite → gunicorn on a free local port → simulated crowd
over HTTP → export → human statistics → features and metrics → report. Every
step writes into one folder; everything started is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from percept.errors import PerceptError

STUDY = """\
# Written by `percept demo`. Every key: docs/study-config.md.
slug = "demo"
title = "Real or generated? (percept demo)"
stimuli = "{stimuli}"
models = "all"
consent = "This is a demonstration study of percept. Nothing you answer is kept beyond this demo."
instructions = "Press F if the image is a real photograph, J if a computer made it."

[design]
real_trials = {trials}
fake_trials = {trials}

[practice]
trials = 4

[attention]
catch_trials = 3
instructed_trials = 1

[timing]
fixation_ms = 500
exposure_ms = 500

[exclusions]
# The simulated crowd answers without waiting for the trials to be shown, which the
# pacing rule would take for a bot: switched off here only (docs/study-config.md).
max_answers_per_second = 0

[recruitment]
platform = "link"
target_per_model = {target}
"""
SLUG = "demo"
ENCODERS = ("pixel", "random:dinov2-vits14")
METRIC_IMAGES = 32
# Bootstrap resamples of every metric (volatility figures): few, to keep the demo quick
# (each costs about one more metrics pass per side; 100+ for real use).
METRIC_RESAMPLES = 10


def percept(*args: str) -> None:
    """Run a `percept` sub-command in a fresh interpreter (its output goes to ours)."""
    code = "from percept.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, *args])
    if result.returncode != 0:
        raise PerceptError(f"`percept {args[0]}` failed (exit {result.returncode}); see above")


def run_demo(
    out: Path,
    *,
    participants: int = 60,
    seed: int = 0,
    trials: int = 50,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run every step into `out`; returns the report's index.html."""
    from percept.simulate.crowd import simulate_crowd
    from percept.simulate.server_process import Server
    from stimuli import audit
    from stimuli.demo import make_demo
    from stimuli.manifest import read_csv, read_manifest, summary_table
    from study_server import create_app
    from study_server.export import write_export
    from study_server.schema import upgrade_schema
    from study_server.studies import create_study
    from study_server.studyconfig import load_config

    start = time.monotonic()

    def step(text: str) -> None:
        echo(f"[{time.monotonic() - start:5.1f} s] {text}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stimdir = out / "stimuli"
    step("1/7 stimuli: two datasets, five models each with planted realism")
    report = make_demo(stimdir, seed=seed, progress=True)
    problems = audit(stimdir)
    if problems:
        raise PerceptError(f"{stimdir}: the demo set failed its own audit: {problems[0]}")
    echo(summary_table(report.rows))
    models = {(r["dataset"], r["model"]) for r in read_manifest(stimdir) if r["model"]}
    target = -(-participants // len(models))

    step(f"2/7 study {SLUG!r} on SQLite: {len(models)} models, target {target} participants each")
    database = out / "demo.sqlite3"
    database.unlink(missing_ok=True)
    db_url = f"sqlite:///{database.resolve()}"
    config_file = out / "demo-study.toml"
    config_file.write_text(STUDY.format(stimuli="stimuli", trials=trials, target=target))
    # The demo keeps its image store beside its database, so `percept serve --demo` finds it.
    image_store = (out / "images").resolve()
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "IMAGE_STORE": str(image_store)})
    upgrade_schema(app)
    with app.app_context():
        create_study(load_config(config_file))

    with Server(db_url, out / "gunicorn.log", image_store=image_store) as server:
        server.wait()
        step(f"3/7 simulated crowd: {participants} participants over HTTP at {server.url}")
        people = simulate_crowd(
            server.url, SLUG, stimdir, participants, concurrency=8, seed=seed, out=out / "crowd"
        )
        done = sum(p.status == "completed" for p in people)
        echo(
            f"  {done} completed, {sum(p.abandons for p in people)} abandoned, "
            f"{sum(p.inattentive for p in people)} inattentive, "
            f"{sum(p.resent for p in people)} answers resent after reloads"
        )

    step("4/7 export")
    with app.app_context():
        write_export(out / "export", slug=SLUG)

    step("5/7 human statistics")
    percept(
        "human",
        str(out / "export"),
        "--out",
        str(out / "human"),
        "--config",
        str(config_file),
        "--resamples",
        "2000",
        "--seed",
        str(seed),
    )

    metrics = out / "metrics.csv"
    if importlib.util.find_spec("analysis.metrics_cli") is None:
        step("6/7 and 7/7 skipped: `percept metrics` is not built yet")
    else:
        step(
            f"6/7 features and metrics: encoders {', '.join(ENCODERS)} (no pretrained weights), "
            f"{METRIC_IMAGES} images per set, {METRIC_RESAMPLES} bootstrap resamples"
        )
        # A randomly initialised ViT runs at a few images/s on a laptop CPU: measure each
        # set on a seeded sample of its images so the demo stays within minutes.
        args = [
            "metrics",
            "--real",
            str(stimdir),
            "--out",
            str(metrics),
            "--seed",
            str(seed),
            "--max-images",
            str(METRIC_IMAGES),
            "--resamples",
            str(METRIC_RESAMPLES),
            "--diagnose",
        ]
        for encoder in ENCODERS:
            args += ["--encoder", encoder]
        percept(*args)
        step("7/7 report")
        percept(
            "report",
            "--human",
            str(out / "human" / "human.csv"),
            "--metrics",
            str(metrics),
            "--out",
            str(out / "report"),
            "--seed",
            str(seed),
        )

    truth = {
        (r["dataset"], r["model"]): float(r["planted_realism"])
        for r in read_csv(stimdir / "ground_truth.csv", ("dataset", "model", "planted_realism"))
    }
    echo(planted_agreement(out / "human" / "human.csv", truth))
    step(f"done. Report: {out / 'report' / 'index.html'}")
    echo(
        f"Open the demo study in a browser: percept serve --demo {out}  "
        f"(then http://127.0.0.1:5000/s/{SLUG})"
    )
    return out / "report" / "index.html"


def planted_agreement(human_csv: Path, truth: dict[tuple[str, str], float]) -> str:
    """One line: Kendall tau between planted realism and measured human error."""
    import pandas as pd
    from scipy.stats import kendalltau

    human = pd.read_csv(human_csv)
    human["planted"] = [
        truth.get((d, m)) for d, m in zip(human["dataset"], human["model"], strict=True)
    ]
    tau = kendalltau(human["planted"], human["error"]).statistic
    return (
        f"Planted realism vs measured human error over {len(human)} models: Kendall tau = {tau:.2f}"
    )
