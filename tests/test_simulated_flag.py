"""Simulated participants are recognised from the export on, and said so in the report."""

from __future__ import annotations

import json

from analysis.exclusions import ExclusionRules
from analysis.human import analyse
from analysis.responses import SIMULATED_AGENT, load
from percept.simulate.crowd import USER_AGENT


def test_the_crowd_signs_up_with_the_agent_analysis_looks_for():
    assert USER_AGENT.startswith(SIMULATED_AGENT)


def test_scripted_participants_are_flagged_in_the_export_and_the_summary(app, make_study, tmp_path):
    from study_server.export import write_export

    make_study(target=5)
    client = app.test_client()
    for n, agent in enumerate((USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64)", None)):
        body = {"consent": True, "client_id": f"c-{n:04d}"}
        if agent:
            body["user_agent"] = agent
        token = client.post("/api/v1/studies/t/participants", json=body).json["token"]
        headers = {"Authorization": f"Bearer {token}"}
        for t in client.get("/api/v1/session", headers=headers).json["trials"]:
            answer = {"choice": t.get("instruction") or "fake", "rt_ms": 500.0, "frames": 30}
            client.put(f"/api/v1/trials/{t['id']}/response", json=answer, headers=headers)
        client.post("/api/v1/session/complete", headers=headers)
    with app.app_context():
        write_export(tmp_path / "export", slug="t")
    trials = load(tmp_path / "export")
    flags = trials.groupby("participant_id")["simulated"].first().tolist()
    assert flags == [True, False, False]
    result = analyse(trials, ExclusionRules(), resamples=200, mixed=False)
    assert result.summary["simulated"]["participants"] == 1
    assert result.summary["simulated"]["of"] == 3
    result.write(tmp_path / "human")
    written = json.loads((tmp_path / "human" / "human_summary.json").read_text())
    assert written["simulated"]["participants"] == 1
    assert "not people" in written["simulated"]["note"]
