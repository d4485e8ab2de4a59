"""The participant JSON API, on SQLite and PostgreSQL (see the db_url fixture)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from itertools import pairwise

import pytest
from participants import STAIRCASE, answer, auth, join, session
from sqlalchemy import func, select

from study_server.db import db
from study_server.models import Image, Participant, Response, Study, Trial
from study_server.studies import study_config

LINK = {"consent": True}


def db_snapshot(app) -> tuple:
    """Everything a bad request must leave alone."""
    with app.app_context():
        responses = db.session.execute(
            select(Response.trial_id, Response.choice, Response.body).order_by(Response.trial_id)
        ).all()
        people = db.session.execute(
            select(Participant.id, Participant.state, Participant.last_seen_at).order_by(
                Participant.id
            )
        ).all()
        trials = db.session.scalar(select(func.count()).select_from(Trial))
        db.session.remove()
    return [tuple(r) for r in responses], [tuple(p) for p in people], trials


def test_new_participant_gets_a_balanced_trial_list_without_labels(app, make_study):
    make_study()
    client = app.test_client()
    r = join(client, client_id="browser-1", screen={"width": 1280, "height": 800})
    assert r.status_code == 201
    assert r.json["state"] == "consented" and len(r.json["token"]) >= 40
    data = session(client, r.json["token"])
    trials = data["trials"]
    assert [t["position"] for t in trials] == list(range(len(trials)))
    assert Counter(t["block"] for t in trials) == {"practice": 4, "main": 10 + 10 + 2 + 1}
    assert all(t["block"] == "practice" for t in trials[:4])
    # Nothing in what the browser gets names the label, the model or the source file.
    # Every trial has the same keys, and nothing but an instruction marks a check: a
    # catch trial is timed like any other (the study's exposure, never null).
    keys = {"id", "position", "block", "image", "exposure_ms", "answered", "instruction"}
    assert all(set(t) == keys | {"adaptive"} for t in trials)
    assert sum(t["instruction"] is not None for t in trials) == 1
    assert {t["exposure_ms"] for t in trials} == {500.0}
    assert not any(t["adaptive"] for t in trials)
    text = json.dumps(data)
    for word in ("memoriser", "pca-gauss", "scenes", "source", "expected", "sha256", ".jpg"):
        assert word not in text
    assert len({t["image"] for t in trials}) == len(trials), "an image appears twice"
    with app.app_context():
        rows = db.session.execute(
            select(Trial.block, Trial.kind, Image.source, Image.role, Image.generator_id)
            .join(Image)
            .order_by(Trial.position)
        ).all()
        fake_models = {g for b, k, s, _, g in rows if (b, k, s) == ("main", "stimulus", "fake")}
    main = Counter((s, k) for b, k, s, _, _ in rows if b == "main")
    assert main == {
        ("real", "stimulus"): 10,
        ("fake", "stimulus"): 10,
        ("fake", "catch"): 2,
        ("fake", "instructed"): 1,
    }
    assert {role for b, _, _, role, _ in rows if b == "practice"} == {"practice"}
    assert len(fake_models) == 1 and None not in fake_models  # one model per participant


def test_same_body_again_is_ok_and_a_different_body_conflicts(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-2").json["token"]
    trial = session(client, token)["trials"][0]
    first = answer(client, token, trial["id"], "fake", displayed_ms=500.1, frames=30)
    again = answer(client, token, trial["id"], "fake", displayed_ms=500.1, frames=30)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json
    assert "correct" in first.json["feedback"]  # practice with feedback
    before = db_snapshot(app)
    conflict = answer(client, token, trial["id"], "real", displayed_ms=500.1, frames=30)
    assert conflict.status_code == 409 and conflict.json["error"] == "conflict"
    assert db_snapshot(app) == before
    assert session(client, token)["trials"][0]["answered"] is True


def test_correctness_is_computed_on_the_server_and_not_revealed_in_main(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-3").json["token"]
    trials = session(client, token)["trials"]
    main = [t for t in trials if t["block"] == "main"]
    for t in main:
        r = answer(client, token, t["id"], "fake")
        assert r.status_code == 200 and "feedback" not in r.json
    with app.app_context():
        rows = db.session.execute(
            select(Trial.expected, Response.choice, Response.correct).join(Response)
        ).all()
    assert rows and all(correct == (choice == expected) for expected, choice, correct in rows)


BAD_BODIES = [
    ("malformed JSON", b"{choice: real", 400),
    ("not an object", b"[1, 2]", 400),
    ("wrong type", b'{"choice": "real", "rt_ms": "fast"}', 400),
    ("bool as number", b'{"choice": "real", "rt_ms": true}', 400),
    ("unknown field", b'{"choice": "real", "rt_ms": 5, "correct": true}', 400),
    ("missing field", b'{"choice": "real"}', 400),
    ("bad choice", b'{"choice": "maybe", "rt_ms": 5}', 400),
    ("out of range", b'{"choice": "real", "rt_ms": -1}', 400),
    ("too long", b'{"choice": "real", "rt_ms": 5, "input": "' + b"k" * 40 + b'"}', 400),
    ("over the size limit", b'{"choice": "real", "rt_ms": 5, "x": "' + b"a" * 20_000 + b'"}', 413),
]


@pytest.mark.parametrize(("what", "body", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_response_bodies_change_nothing(app, make_study, what, body, status):
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-4").json["token"]
    trial = session(client, token)["trials"][0]
    before = db_snapshot(app)
    r = client.put(
        f"/api/v1/trials/{trial['id']}/response",
        data=body,
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert r.status_code == status, (what, r.json)
    assert r.is_json and r.json["error"] and r.json["message"]
    assert db_snapshot(app) == before


def test_tokens_and_trial_ownership(app, make_study):
    make_study()
    client = app.test_client()
    mine = join(client, client_id="browser-5").json["token"]
    theirs = join(client, client_id="browser-6").json["token"]
    their_trial = session(client, theirs)["trials"][0]["id"]
    before = db_snapshot(app)
    cases = [
        (client.get("/api/v1/session"), 401),
        (client.get("/api/v1/session", headers=auth("forged" * 8)), 401),
        (client.get("/api/v1/session", headers={"Authorization": mine}), 401),
        (answer(client, "forged-token", their_trial), 401),
        (answer(client, mine, their_trial), 404),
        (answer(client, mine, 10**9), 404),
        (client.post("/api/v1/session/complete", headers=auth("x" * 43)), 401),
    ]
    for r, status in cases:
        assert r.status_code == status and r.is_json, r.json
    assert db_snapshot(app) == before


def test_practice_answers_are_refused_once_the_main_block_began(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-7").json["token"]
    trials = session(client, token)["trials"]
    practice = [t for t in trials if t["block"] == "practice"]
    main = [t for t in trials if t["block"] == "main"]
    assert answer(client, token, practice[0]["id"]).status_code == 200
    assert session(client, token)["state"] == "practice"
    assert answer(client, token, main[0]["id"]).status_code == 200
    assert session(client, token)["state"] == "main"
    before = db_snapshot(app)
    r = answer(client, token, practice[1]["id"])
    assert r.status_code == 409 and r.json["error"] == "practice_over"
    assert db_snapshot(app) == before
    # A replay of an answer stored before the main block is still the same 200.
    assert answer(client, token, practice[0]["id"]).status_code == 200


@pytest.mark.parametrize(
    ("platform", "ids", "redirect"),
    [
        (
            "prolific",
            {"prolific_pid": "5f1a2b3c4d5e6f7a8b9c0d1e", "study_id": "S1", "session_id": "X1"},
            "https://app.prolific.com/submissions/complete?cc=DEMO-CODE",
        ),
        ("link", {"client_id": "c-123456"}, None),
    ],
)
def test_completion_needs_every_main_trial(app, make_study, platform, ids, redirect):
    extra = 'completion_code = "DEMO-CODE"' if platform == "prolific" else ""
    make_study(platform=platform, extra=extra)
    client = app.test_client()
    token = join(client, **ids).json["token"]
    trials = session(client, token)["trials"]
    main = [t for t in trials if t["block"] == "main"]
    for t in main[:-1]:
        assert answer(client, token, t["id"]).status_code == 200
    r = client.post("/api/v1/session/complete", headers=auth(token))
    assert r.status_code == 409 and r.json["error"] == "incomplete"
    assert answer(client, token, main[-1]["id"]).status_code == 200
    r = client.post("/api/v1/session/complete", headers=auth(token))
    assert r.status_code == 200
    assert r.json["redirect_url"] == redirect
    code = r.json["completion_code"]
    assert code == "DEMO-CODE" if platform == "prolific" else len(code) == 10
    again = client.post("/api/v1/session/complete", headers=auth(token))
    assert again.json == r.json
    data = session(client, token)
    assert data["state"] == "completed" and data["completion"]["completion_code"] == code
    # Coming back after completing gets no second session.
    r = join(client, **ids)
    assert r.status_code == 409 and r.json["error"] == "already_completed"


def test_mturk_preview_creates_nothing_and_workers_resume(app, make_study):
    make_study(platform="mturk")
    client = app.test_client()
    before = db_snapshot(app)
    r = join(client, assignment_id="ASSIGNMENT_ID_NOT_AVAILABLE", hit_id="H1")
    assert r.status_code == 200 and r.json["preview"] is True
    assert db_snapshot(app) == before
    worker = {
        "worker_id": "A1B2C3D4E5F6G7",
        "assignment_id": "ASG1",
        "hit_id": "H1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }
    first = join(client, **worker)
    assert first.status_code == 201
    again = join(client, **worker)
    assert again.status_code == 200 and again.json["resumed"] is True
    # Both tokens open the same session (two tabs, or a sign-up retried on a flaky network).
    trials = session(client, again.json["token"])["trials"]
    assert session(client, first.json["token"])["trials"] == trials
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == 1
    for t in (t for t in trials if t["block"] == "main"):
        answer(client, again.json["token"], t["id"])
    done = client.post("/api/v1/session/complete", headers=auth(again.json["token"])).json
    assert done["mturk_submit"] == {
        "action": "https://workersandbox.mturk.com/mturk/externalSubmit",
        "assignmentId": "ASG1",
    }
    bad = join(client, **{**worker, "worker_id": "B2", "turk_submit_to": "https://evil.example"})
    assert bad.status_code == 400


def test_a_worker_who_takes_the_hit_again_submits_to_the_new_assignment(app, make_study):
    make_study(platform="mturk")
    client = app.test_client()
    worker = {
        "worker_id": "A1B2C3D4E5F6G7",
        "assignment_id": "ASG1",
        "hit_id": "H1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }
    assert join(client, **worker).status_code == 201
    # Returned the HIT on MTurk, accepted it again: same worker, a new assignment (and host).
    again = join(
        client, **{**worker, "assignment_id": "ASG2", "turk_submit_to": "https://www.mturk.com"}
    )
    assert again.status_code == 200 and again.json["resumed"] is True
    token = again.json["token"]
    for t in session(client, token)["trials"]:
        if t["block"] == "main":
            answer(client, token, t["id"])
    done = client.post("/api/v1/session/complete", headers=auth(token)).json
    assert done["mturk_submit"] == {
        "action": "https://www.mturk.com/mturk/externalSubmit",
        "assignmentId": "ASG2",
    }


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"consent": False, "client_id": "c1234567"}, 400, "consent_required"),
        ({"client_id": "c1234567"}, 400, "consent_required"),
        ({"consent": True, "prolific_pid": "x"}, 400, "unknown_field"),
        ({"consent": True, "client_id": "bad id with spaces"}, 400, "bad_field"),
        ({"consent": True, "screen": {"width": -5}}, 400, "bad_field"),
        ({"consent": True, "screen": {"depth": 24}}, 400, "bad_field"),
    ],
)
def test_bad_sign_ups_create_nothing(app, make_study, body, status, code):
    make_study()
    client = app.test_client()
    before = db_snapshot(app)
    r = client.post("/api/v1/studies/t/participants", json=body)
    assert (r.status_code, r.json["error"]) == (status, code)
    assert client.post("/api/v1/studies/nope/participants", json=LINK).status_code == 404
    assert db_snapshot(app) == before


def test_least_filled_model_and_study_full(app, make_study):
    make_study(target=2)
    client = app.test_client()
    tokens = [join(client, client_id=f"person-{i}").json["token"] for i in range(4)]
    with app.app_context():
        per_model = Counter(
            g.model for p in db.session.scalars(select(Participant)) for g in p.generators
        )
    assert per_model == {"memoriser": 2, "pca-gauss": 2}
    r = join(client, client_id="person-late")
    assert r.status_code == 409 and r.json["error"] == "study_full"
    # Someone who returns the study frees their place.
    assert client.post("/api/v1/session/return", headers=auth(tokens[0])).status_code == 200
    assert join(client, client_id="person-late").status_code == 201


def test_idle_sessions_stop_holding_a_place_and_can_resume(app, make_study):
    make_study(target=1)
    client = app.test_client()
    tokens = [join(client, client_id=f"idle-{i}").json["token"] for i in range(2)]
    assert join(client, client_id="newcomer").status_code == 409
    with app.app_context():
        for p in db.session.scalars(select(Participant)):
            p.last_seen_at -= timedelta(hours=2)
        db.session.commit()
    assert join(client, client_id="newcomer").status_code == 201
    with app.app_context():
        states = Counter(db.session.scalars(select(Participant.state)))
    assert states == {"abandoned": 2, "consented": 1}
    # The idle participant comes back with their token and goes on where they were.
    data = session(client, tokens[0])
    assert data["state"] == "consented"
    assert answer(client, tokens[0], data["trials"][0]["id"]).status_code == 200


def test_images_are_served_with_identical_headers(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-8").json["token"]
    trials = session(client, token)["trials"]
    headers = set()
    for t in trials:
        r = client.get(t["image"])
        assert r.status_code == 200 and r.data[:8] == b"\x89PNG\r\n\x1a\n"
        h = dict(r.headers)
        h.pop("Content-Length")
        headers.add(tuple(sorted(h.items())))
    assert len(headers) == 1
    (only,) = headers
    assert dict(only)["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Last-Modified" not in dict(only) and "ETag" not in dict(only)
    r = client.get("/i/not-an-image.png")
    assert r.status_code == 404 and r.is_json


def test_interleaved_staircases_step_on_the_server(app, make_study):
    make_study(extra=STAIRCASE)
    client = app.test_client()
    token = join(client, client_id="stairs").json["token"]
    data = session(client, token)
    assert data["next_exposure_ms"] == 300
    practice = [t for t in data["trials"] if t["block"] == "practice"]
    main = [t for t in data["trials"] if t["block"] == "main"]
    assert all(t["exposure_ms"] == 300 and not t["adaptive"] for t in practice)
    # Every main trial, attention checks included, takes its exposure from a staircase.
    assert len(main) == 23 and all(t["adaptive"] and t["exposure_ms"] is None for t in main)
    with app.app_context():
        rows = db.session.execute(select(Trial.id, Trial.expected, Trial.kind, Trial.staircase))
        expected, kind, stair = {}, {}, {}
        for trial_id, right, k, s in rows:
            expected[trial_id], kind[trial_id], stair[trial_id] = right, k, s
    dealt = [stair[t["id"]] for t in main]
    assert set(dealt) == {0, 1, 2}  # three staircases by default
    assert all(a != b for a, b in pairwise(dealt)), "the same staircase twice in a row"

    def respond(trial, right: bool, exposure=None, **extra):
        choice = (
            expected[trial["id"]]
            if right
            else {"real": "fake", "fake": "real"}[expected[trial["id"]]]
        )
        body = {"choice": choice, "rt_ms": 700, **extra}
        if exposure is not None:
            body["exposure_ms"] = exposure
        return client.put(f"/api/v1/trials/{trial['id']}/response", json=body, headers=auth(token))

    before = db_snapshot(app)
    assert respond(main[0], True).status_code == 400  # which exposure was shown?
    assert respond(main[0], True, exposure=400).status_code == 400  # outside 250..350
    assert db_snapshot(app) == before

    def replay(answers: list[bool]) -> float:
        # The documented rule: 2 right in a row -50 ms, an error +50 ms, within 250..350.
        exposure, streak = 300.0, 0
        for right in answers:
            if not right:
                exposure, streak = min(350.0, exposure + 50), 0
            elif streak + 1 >= 2:
                exposure, streak = max(250.0, exposure - 50), 0
            else:
                streak += 1
        return exposure

    # Right, then wrong, then right again: every staircase meets both of its bounds.
    pattern = [True] * 12 + [False] * 8 + [True] * 3
    answers: dict[int, list[bool]] = {0: [], 1: [], 2: []}
    shown = data["next_exposure_ms"]
    for i, (trial, right) in enumerate(zip(main, pattern, strict=True)):
        extra = {"valid": False, "invalid_reason": "hidden"} if i == 13 else {}
        r = respond(trial, right, exposure=shown, **extra)
        # Only what the next trial needs: nothing says whether this answer was right.
        assert r.status_code == 200 and set(r.json) == {
            "trial_id",
            "received_at",
            "next_exposure_ms",
            "repeat",
        }
        # The invalid answer's image comes again at the end of the block.
        assert r.json["repeat"] is bool(extra)
        if kind[trial["id"]] == "stimulus" and not extra:
            answers[stair[trial["id"]]].append(right)  # checks and invalid trials: no step
        if i + 1 < len(main):
            want = replay(answers[stair[main[i + 1]["id"]]])
            assert r.json["next_exposure_ms"] == want, (i, r.json)
            shown = want
    # The repeat of trial 13, last: the same image, on its staircase or (when that was the
    # last trial's) the next one, so no staircase comes twice in a row.
    (repeat,) = [
        t for t in session(client, token)["trials"] if t["block"] == "main" and not t["answered"]
    ]
    assert repeat["image"] == main[13]["image"] and repeat["adaptive"]
    with app.app_context():
        repeat_stair = db.session.get(Trial, repeat["id"]).staircase
    assert repeat_stair == (
        stair[main[13]["id"]]
        if stair[main[13]["id"]] != stair[main[-1]["id"]]
        else (stair[main[13]["id"]] + 1) % 3
    )
    assert r.json["next_exposure_ms"] == replay(answers[repeat_stair])
    expected[repeat["id"]] = expected[main[13]["id"]]
    r = respond(repeat, True, exposure=r.json["next_exposure_ms"])
    assert r.status_code == 200 and r.json["repeat"] is False
    with app.app_context():
        planned = dict(
            db.session.execute(
                select(Trial.id, Trial.planned_exposure_ms).where(
                    Trial.id.in_([t["id"] for t in main])
                )
            ).all()
        )
    assert {planned[t["id"]] for t in main} == {250.0, 300.0, 350.0}
    assert session(client, token)["next_exposure_ms"] is None  # nothing left to show


def test_a_changed_study_config_takes_effect_on_the_next_answer(app, make_study):
    # The answer path caches parsed configs per process: a changed stored config is a new text.
    make_study()
    client = app.test_client()
    token = join(client, client_id="browser-config").json["token"]
    practice = [t for t in session(client, token)["trials"] if t["block"] == "practice"]
    assert "feedback" in answer(client, token, practice[0]["id"]).json
    with app.app_context():
        study = db.session.scalar(select(Study))
        study.config = {**study.config, "practice": {**study.config["practice"], "feedback": False}}
        db.session.commit()
        assert study_config(study).practice.feedback is False
        db.session.remove()
    assert "feedback" not in answer(client, token, practice[1]["id"]).json


def test_a_practice_answer_in_a_staircase_study_gets_feedback_and_the_next_exposure(
    app, make_study
):
    make_study(extra=STAIRCASE)
    client = app.test_client()
    token = join(client, client_id="stairs-practice").json["token"]
    practice = [t for t in session(client, token)["trials"] if t["block"] == "practice"]
    r = answer(client, token, practice[0]["id"])
    assert r.status_code == 200, r.json
    assert set(r.json["feedback"]) == {"correct", "answer"} and r.json["next_exposure_ms"] == 300
