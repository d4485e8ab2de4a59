"""Helpers that take part in a study through the participant API (Flask test client)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from percept.cli import cli

# A study config's extra lines for a staircase: 300 ms to start, within 250..350 ms.
STAIRCASE = (
    '[timing]\nmode = "staircase"\n'
    "[timing.staircase]\nstart_ms = 300\nmin_ms = 250\nmax_ms = 350\nstep_ms = 50\ndown_after = 2\n"
)


def join(client, slug="t", **body):
    """Sign up (with consent) for study `slug`; the response as returned."""
    return client.post(f"/api/v1/studies/{slug}/participants", json={"consent": True, **body})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session(client, token):
    """The session JSON; fails the test unless the server answers 200."""
    r = client.get("/api/v1/session", headers=auth(token))
    assert r.status_code == 200, r.json
    return r.json


def answer(client, token, trial_id, choice="real", **extra):
    """PUT an answer to one trial; the response as returned."""
    return client.put(
        f"/api/v1/trials/{trial_id}/response",
        json={"choice": choice, "rt_ms": 612.5, **extra},
        headers=auth(token),
    )


def export_and_human_exclusions(tmp_path: Path) -> tuple[dict[int, dict], pd.DataFrame]:
    """The export's participants.csv rows by id, and `percept human`'s exclusions.csv for
    it, with the study's own rules: the export in tmp_path/export, its config tmp_path/t.toml."""
    with open(tmp_path / "export" / "participants.csv", newline="") as f:
        people = {int(p["participant_id"]): p for p in csv.DictReader(f)}
    export, config, out = tmp_path / "export", tmp_path / "t.toml", tmp_path / "human"
    result = CliRunner().invoke(
        cli, ["human", str(export), "--config", str(config), "--out", str(out), "--no-mixed"]
    )
    assert result.exit_code == 0, result.output
    return people, pd.read_csv(out / "exclusions.csv")
