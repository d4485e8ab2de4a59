"""A scripted participant over real HTTP, checked against the export."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import requests

from study_server.export import write_export


def run_participant(base: str, client_id: str, seed: int) -> list[tuple[str, dict]]:
    """Do the whole study as a browser would; returns every PUT sent (url, body, auth)."""
    rng = random.Random(seed)
    http = requests.Session()
    r = http.post(
        f"{base}/api/v1/studies/t/participants",
        json={"consent": True, "client_id": client_id, "screen": {"width": 1440, "height": 900}},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    http.headers["Authorization"] = f"Bearer {r.json()['token']}"
    trials = http.get(f"{base}/api/v1/session", timeout=30).json()["trials"]
    puts = []
    for t in trials:
        image = http.get(base + t["image"], timeout=30)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        body = {
            "choice": t.get("instruction") or rng.choice(["real", "fake"]),
            "rt_ms": round(rng.uniform(300, 1500), 1),
            "onset_ms": 1000.0 + 2000 * t["position"],
            "displayed_ms": 499.8 if t["exposure_ms"] else None,
            "frames": 30 if t["exposure_ms"] else None,
            "frame_ms": 16.66,
            "valid": True,
            "input": "key",
        }
        url = f"{base}/api/v1/trials/{t['id']}/response"
        r = http.put(url, json=body, timeout=30)
        assert r.status_code == 200, r.text
        puts.append((url, body))
    done = http.post(f"{base}/api/v1/session/complete", timeout=30)
    assert done.status_code == 200 and done.json()["completion_code"]
    return [(url, body, http.headers["Authorization"]) for url, body in puts]


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def export(app, out: Path) -> dict[str, bytes]:
    with app.app_context():
        write_export(out, slug="t")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_scripted_participant_and_replays(app, make_study, live_server, tmp_path):
    make_study()
    puts = run_participant(live_server, "scripted-1", seed=1)
    puts += run_participant(live_server, "scripted-2", seed=2)
    first = export(app, tmp_path / "first")

    trials = read(tmp_path / "first" / "trials.csv")
    assert len(trials) == len(puts) == 2 * (4 + 10 + 10 + 3)
    keys = [(row["participant_id"], row["position"]) for row in trials]
    assert len(set(keys)) == len(keys), "a trial appears twice in the export"
    for row in trials:
        assert row["answered"] == "true" and row["choice"] in ("real", "fake")
        assert row["correct"] == ("true" if row["choice"] == row["expected"] else "false")
        if row["kind"] == "stimulus":
            assert row["expected"] == row["source"]
    assert {p["state"] for p in read(tmp_path / "first" / "participants.csv")} == {"completed"}

    # Every PUT again, twice, in shuffled orders: same answers, nothing changes.
    rng = random.Random(0)
    for _ in range(2):
        for url, body, authorization in rng.sample(puts, len(puts)):
            r = requests.put(url, json=body, headers={"Authorization": authorization}, timeout=30)
            assert r.status_code == 200, r.text
    assert export(app, tmp_path / "second") == first
