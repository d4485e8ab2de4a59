"""A sign-up when excluded participants free their places: `replace_excluded` on against off.

With `[recruitment] replace_excluded = true` every sign-up judges the study's completed
participants by its exclusion rules (study_server/assignment.py `filled`). This makes
one study of one model on SQLite with `--completed` completed participants of 200 main
trials each (rows written directly, a tenth of them failing an attention check), then
times `--signups` sign-ups through the participant API with the rule off (the baseline:
completed participants are counted, nothing is judged) and on, in the same run. The
first sign-up of a server process judges every completed participant; later ones judge
only those completed since (study_server/exclusions.py `excluded_ids`).

    .venv/bin/python benchmarks/signup_exclusions.py [--completed 300] [--signups 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

STUDY = """
slug = "{slug}"
title = "Benchmark"
stimuli = "{stimuli}"
models = ["scenes/memoriser"]
consent = "I agree."
[design]
real_trials = 100
fake_trials = 100
[practice]
trials = 2
[attention]
catch_trials = 2
instructed_trials = 1
[recruitment]
target_per_model = 100000
max_signups_per_minute = 0
replace_excluded = {replace}
"""


def fill(study, completed: int) -> None:
    """`completed` completed participants with answered main trials, written in bulk."""
    from study_server.db import db, utcnow
    from study_server.models import Image, Participant, Response, Trial, participant_generator

    images = list(db.session.scalars(select(Image.id).where(Image.study_id == study.id)))
    generator = study.generators[0]
    now = utcnow()
    for n in range(completed):
        person = Participant(
            study=study,
            platform="link",
            platform_pid=f"done-{n}",
            state="completed",
            seed=n,
            created_at=now,
            last_seen_at=now,
            completed_at=now,
        )
        db.session.add(person)
        db.session.flush()
        db.session.execute(
            insert(participant_generator).values(
                participant_id=person.id, generator_id=generator.id
            )
        )
        trial_ids = db.session.scalars(
            insert(Trial).returning(Trial.id),
            [
                {
                    "participant_id": person.id,
                    "position": i,
                    "block": "main",
                    "kind": "catch" if i < 3 else "stimulus",
                    "image_id": images[i % len(images)],
                    "expected": "fake",
                    "planned_exposure_ms": 500.0,
                }
                for i in range(200)
            ],
        ).all()
        db.session.execute(
            insert(Response),
            [
                {
                    "trial_id": trial_id,
                    "choice": "real" if i == 0 and n % 10 == 0 else "fake",
                    "correct": not (i == 0 and n % 10 == 0),
                    "rt_ms": 600.0,
                    "valid": True,
                    "received_at": now + timedelta(seconds=2 * i),
                    "body": {},
                }
                for i, trial_id in enumerate(trial_ids)
            ],
        )
    db.session.commit()


def time_signups(client, slug: str, signups: int) -> list[float]:
    """Seconds of each of `signups` sign-ups of newcomers (POST .../participants)."""
    seconds = []
    for n in range(signups):
        start = time.perf_counter()
        r = client.post(
            f"/api/v1/studies/{slug}/participants",
            json={"consent": True, "client_id": f"{slug}-new-{n}"},
        )
        seconds.append(time.perf_counter() - start)
        assert r.status_code == 201, r.json
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completed", type=int, default=300)
    parser.add_argument("--signups", type=int, default=20)
    args = parser.parse_args()

    from stimuli.demo import make_demo
    from study_server import create_app
    from study_server.db import db
    from study_server.exclusions import _judged, excluded_ids
    from study_server.schema import upgrade_schema
    from study_server.studies import create_study
    from study_server.studyconfig import load_config

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_demo(folder / "stimuli", seed=0, size=32)
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.sqlite3'}",
                "IMAGE_STORE": str(folder / "store"),
                "SECRET_KEY": "benchmark",
                "RATELIMIT_ENABLED": False,
            }
        )
        upgrade_schema(app)
        medians = {}
        for replace in ("false", "true"):
            slug = f"replace-{replace}"
            path = folder / f"{slug}.toml"
            path.write_text(STUDY.format(slug=slug, stimuli=folder / "stimuli", replace=replace))
            with app.app_context():
                study = create_study(load_config(path))
                fill(study, args.completed)
                excluded = len(excluded_ids(study))
                db.session.remove()
            # A fresh process judges every completed participant at its first sign-up.
            _judged.clear()
            seconds = time_signups(app.test_client(), slug, args.signups)
            medians[replace] = statistics.median(seconds[1:])
            print(
                f"replace_excluded = {replace:<5}: {args.completed} completed "
                f"({excluded} excluded) x 200 trials: first sign-up {1000 * seconds[0]:.1f} ms, "
                f"then {1000 * medians[replace]:.1f} ms per sign-up (median of {args.signups - 1})"
            )
        print(f"ratio on / off: {medians['true'] / medians['false']:.2f}")


if __name__ == "__main__":
    main()
