"""Bots told apart by the server's own clock: the pacing rule, in the dashboard, the export
and `percept human`, which must agree."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from click.testing import CliRunner
from participants import auth, join, session

from analysis.exclusions import ExclusionRules
from analysis.exclusions import too_fast as analysis_too_fast
from percept.cli import cli
from percept.rules import too_fast as rule_too_fast
from study_server import exclusions
from study_server.studies import find_study

# 100 real + 100 fake main images, fixation 500 ms + exposure 500 ms: a person needs
# at least 200 s for the main block.
BIG = {"real": 100, "fake": 100, "target": 10, "exclusions": ""}


def bot(client, token: str, seed: int) -> float:
    """Random answers as fast as the server takes them (reading the instructions, as a
    script can); returns the seconds the whole session took."""
    rng = random.Random(seed)
    started = datetime.now()
    for t in session(client, token)["trials"]:
        choice = t["instruction"] or rng.choice(("real", "fake"))
        body = {"choice": choice, "rt_ms": 650.0, "frames": 30, "frame_ms": 16.7}
        r = client.put(f"/api/v1/trials/{t['id']}/response", json=body, headers=auth(token))
        assert r.status_code == 200
    assert client.post("/api/v1/session/complete", headers=auth(token)).status_code == 200
    return (datetime.now() - started).total_seconds()


def test_a_bot_is_excluded_by_the_dashboard_the_export_and_percept_human(app, make_study, tmp_path):
    make_study(**BIG)
    client = app.test_client()
    token = join(client, client_id="bot-1").json["token"]
    seconds = bot(client, token, seed=1)
    print(f"bot: 207 answers in {seconds:.1f} s")

    with app.app_context():
        excluded = exclusions.excluded_ids(find_study("t"))
        from study_server.export import write_export

        write_export(tmp_path / "export", slug="t")
    ((_, reasons),) = excluded.items()
    assert any("faster than the trials can be shown" in r for r in reasons), reasons
    # The study page says so too.
    admin = app.test_client()
    page = admin.get("/admin/login").text
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    admin.post("/admin/login", data={"csrf_token": csrf, "password": "secret-admin"})
    page = admin.get("/admin/studies/t").text
    assert "faster than the trials can be shown" in page
    with open(tmp_path / "export" / "participants.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["excluded"] == "true"
    assert "faster than the trials can be shown" in row["exclusion_reasons"]

    result = CliRunner().invoke(
        cli,
        ["human", str(tmp_path / "export"), "--out", str(tmp_path / "human"), "--no-mixed"],
    )
    # Everyone is excluded, so there is nothing left to analyse: the exclusions still list
    # the bot with the pacing rule, the same reason as the server's.
    assert (tmp_path / "human" / "exclusions.csv").is_file(), result.output
    table = pd.read_csv(tmp_path / "human" / "exclusions.csv")
    pace = table[table["rule"] == "pace"]
    assert len(pace) == 1 and pace["reason"].iloc[0] in row["exclusion_reasons"]


@pytest.mark.slow
def test_a_paced_simulated_crowd_is_not_taken_for_bots(
    app, make_study, live_server, demo_stimuli, tmp_path
):
    from percept.simulate.crowd import Conditions, simulate_crowd
    from study_server.export import write_export

    # Short trials (100 ms + 100 ms) keep the test short; the crowd waits fixation +
    # exposure + its response time before each answer, as a person would.
    make_study(target=10, exclusions="", extra="[timing]\nfixation_ms = 100\nexposure_ms = 100\n")
    people = simulate_crowd(
        live_server, "t", demo_stimuli, 3, concurrency=3, seed=3, conditions=Conditions(pace=1)
    )
    assert sum(p.status == "completed" for p in people) >= 2, [p.status for p in people]
    with app.app_context():
        excluded = exclusions.excluded_ids(find_study("t"))
        write_export(tmp_path / "export", slug="t")
    assert not any("faster" in r for reasons in excluded.values() for r in reasons), excluded
    result = CliRunner().invoke(
        cli, ["human", str(tmp_path / "export"), "--out", str(tmp_path / "human"), "--no-mixed"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "human" / "exclusions.csv")
    assert "pace" not in set(table["rule"]), table


def test_the_analysis_applies_the_one_pacing_rule_to_export_columns():
    """The rule is percept.rules.too_fast (the server calls it on its rows); the analysis
    calls it on export columns, sorted by arrival. On the same random sessions: the same
    verdict and the same reason, every time."""
    rng = random.Random(0)
    start = datetime(2026, 1, 1)
    verdicts = set()
    for case in range(400):
        n = rng.randint(0, 30)
        # Out of order and tied, as answers sent again after a reconnect arrive.
        arrivals = [
            start
            + timedelta(seconds=rng.choice([0.0, 0.05, 0.3, 0.9, 1.2, 4.0]) * rng.randint(0, n))
            for _ in range(n)
        ]
        durations = [rng.choice([200.0, 600.0, 1000.0, 1500.0]) for _ in range(n)]
        rate = rng.choice([None, None, 0.0, 0.5, 2.0, 20.0])
        least = rng.choice([0, 0, 5, 30])
        # Ties in arrival time stay in trial order on both sides.
        order = sorted(range(n), key=lambda i: arrivals[i])
        server = rule_too_fast(
            [arrivals[i] for i in order], [durations[i] for i in order], rate, least
        )
        person = pd.DataFrame(
            {
                "received_at": pd.to_datetime(arrivals, utc=True),
                "min_duration_ms": durations,
            }
        )
        rules = ExclusionRules(max_answers_per_second=rate, min_session_seconds=least)
        assert analysis_too_fast(person, rules) == server, (case, n, rate, least)
        verdicts.add(server is None)
    assert verdicts == {True, False}
