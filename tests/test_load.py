"""Load and faults, bounded: a paced crowd on gunicorn + PostgreSQL while workers are killed."""

from __future__ import annotations

import pytest

from percept.simulate.loadtest import run_load
from study_server.db import scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_answers_survive_killed_workers_and_lost_requests(
    postgres_database, tmp_path, demo_stimuli
):
    # postgres_database only says whether PostgreSQL answers; this run gets its own database.
    participants = 40
    with scratch_database() as db_url:
        result = run_load(
            db_url,
            tmp_path,
            participants=participants,
            workers=3,
            threads=4,
            trials=10,
            kill_every_s=2,
            drop=0.1,
            pace=0.25,
            ramp_s=2,
            stimdir=demo_stimuli,
            baseline=False,
        )
    # The faults really happened: workers died mid-run and requests were sent again
    # (some after the server had stored them, which must not store them twice).
    assert result.kills >= 2
    assert result.retried >= 20
    assert result.problems == []
    assert result.stored == result.acknowledged > 0
    # The workers' own times come from gunicorn's access log (a worker killed between
    # answering and logging leaves a request out, hence not all of them), and gunicorn's
    # CPU time (killed workers' too, through the master) is counted apart from the clients'.
    assert len(result.worker_ms["answer"]) >= 0.9 * result.acknowledged
    assert 0 < result.cpu.children < result.cpu.machine
    # Everyone who did not abandon by design finished, whatever was killed or dropped.
    assert set(result.statuses) <= {"completed", "abandoned"}
    assert sum(result.per_model.values()) == participants
    assert max(result.per_model.values()) - min(result.per_model.values()) <= 1


def test_percept_simulate_with_lost_requests_stores_each_answer_once(
    app, make_study, live_server, demo_stimuli, tmp_path
):
    import csv

    from click.testing import CliRunner
    from sqlalchemy import func, select

    from percept.cli import cli
    from study_server.db import db
    from study_server.models import Participant, Response, Trial

    slug = make_study(target=10)
    args = ["simulate", "--url", live_server, "--study", slug, "--stimuli", str(demo_stimuli)]
    args += ["--participants", "4", "--concurrency", "4", "--drop", "0.3", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    truth = list(csv.DictReader((tmp_path / "truth.csv").read_text().splitlines()))
    assert len(truth) == 4 and sum(int(row["retried"]) for row in truth) > 0
    with app.app_context():
        stored = db.session.scalar(select(func.count()).select_from(Response))
        answered = sum(int(row["answered"]) for row in truth)
        assert stored == answered
        # A lost sign-up answer, sent again, resumes the same participant.
        assert db.session.scalar(select(func.count()).select_from(Participant)) == 4
        assert db.session.scalar(select(func.count(func.distinct(Trial.participant_id)))) == 4
