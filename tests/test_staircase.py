"""Staircases that do not leak the answers, and do not lose steps under concurrent answers."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import requests
from participants import auth, join, session
from sqlalchemy import select

from study_server.db import db
from study_server.models import Response, Trial
from study_server.staircase import deal, replay
from study_server.studyconfig import Staircase

# 200 main images, the defaults of docs/study-config.md (500 ms start, 100..1000, 2-down-1-up).
STAIRS = '[timing]\nmode = "staircase"\n'
FLIP = {"real": "fake", "fake": "real"}


def truth(app) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(select(Trial.id, Trial.expected)).all()
        db.session.remove()
    return dict(rows)


def coin_flip_attack(client, token: str, seed: int, labels) -> tuple[int, int]:
    """The attack of issue 18: answer at random, and read each reply's exposure as
    feedback (shorter: that answer was right; longer: wrong). Returns (inferences, right)."""
    rng = random.Random(seed)
    data = session(client, token)
    shown = data["next_exposure_ms"]
    inferred = right = 0
    main = [t for t in data["trials"] if t["block"] == "main"]
    for t in main:
        choice = t["instruction"] or rng.choice(("real", "fake"))
        body = {"choice": choice, "rt_ms": 700, "exposure_ms": shown}
        r = client.put(f"/api/v1/trials/{t['id']}/response", json=body, headers=auth(token))
        assert r.status_code == 200, r.json
        following = r.json["next_exposure_ms"]
        if following is not None and following != shown and t["instruction"] is None:
            guess = choice if following < shown else FLIP[choice]
            inferred += 1
            right += guess == labels()[t["id"]]
        shown = following if following is not None else shown
    return inferred, right


def test_the_coin_flip_attack_recovers_no_more_than_chance(app, make_study):
    make_study(real=100, fake=100, target=10, extra=STAIRS)
    client = app.test_client()
    known: dict[int, str] = {}

    def labels() -> dict[int, str]:
        if not known:
            known.update(truth(app))
        return known

    results = []
    for seed in range(5):
        known.clear()
        token = join(client, client_id=f"attacker-{seed}").json["token"]
        results.append(coin_flip_attack(client, token, seed, labels))
    inferred = sum(n for n, _ in results)
    right = sum(r for _, r in results)
    print(f"coin-flip attack: {right}/{inferred} inferences right, per seed {results}")
    assert inferred > 300  # the exposures move: the attack has something to read
    assert right / inferred <= 0.60, results


def test_the_same_attack_reads_a_single_staircase_perfectly():
    """What the interleaving defends against: with one staircase, every move of the
    exposure after an answer tells that answer's correctness."""
    rng = random.Random(0)
    rule = Staircase()
    answers: list[bool] = []
    inferred = right = 0
    for _ in range(200):
        before = replay(rule, answers)
        correct = rng.random() < 0.5
        answers.append(correct)
        after = replay(rule, answers)
        if after != before:
            inferred += 1
            right += (after < before) == correct
    assert inferred > 50 and right == inferred


def test_staircases_are_dealt_at_random_never_twice_in_a_row():
    dealt = deal(random.Random(1), 10_000, 3)
    assert all(a != b for a, b in pairwise(dealt))
    counts = [dealt.count(s) for s in range(3)]
    assert all(3000 < c < 3700 for c in counts), counts
    # After A, B and C are equally likely: the next staircase is not predictable.
    after_zero = [b for a, b in pairwise(dealt) if a == 0]
    assert 0.45 < after_zero.count(1) / len(after_zero) < 0.55
    assert deal(random.Random(2), 6, 2) in ([0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0])


def test_answers_sent_at_once_lose_no_staircase_step(app, make_study, live_server):
    make_study(real=20, fake=20, target=10, extra=STAIRS)
    client = app.test_client()
    token = join(client, client_id="twice-at-once").json["token"]
    main = [t for t in session(client, token)["trials"] if t["block"] == "main"]
    labels = truth(app)
    with app.app_context():
        stair = dict(db.session.execute(select(Trial.id, Trial.staircase)).all())
        kinds = dict(db.session.execute(select(Trial.id, Trial.kind)).all())
        db.session.remove()

    def put(trial: dict) -> int:
        body = {"choice": labels[trial["id"]], "rt_ms": 700, "exposure_ms": 500}
        r = requests.put(
            f"{live_server}/api/v1/trials/{trial['id']}/response",
            json=body,
            headers=auth(token),
            timeout=60,
        )
        return r.status_code

    # Pairs of right answers on one staircase, each pair sent at the same moment.
    by_stair: dict[int, list[dict]] = {}
    for t in main:
        if kinds[t["id"]] == "stimulus":
            by_stair.setdefault(stair[t["id"]], []).append(t)
    pairs = [(ts[i], ts[i + 1]) for ts in by_stair.values() for i in range(0, len(ts) - 1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for a, b in pairs[:10]:
            assert list(pool.map(put, (a, b))) == [200, 200]
    # Every answer counts: the exposure the server gives is the rule replayed on all of them.
    with app.app_context():
        answered = db.session.execute(
            select(Trial.staircase, Response.correct)
            .join(Response)
            .where(Trial.block == "main", Trial.kind == "stimulus")
            .order_by(Trial.position)
        ).all()
        db.session.remove()
    assert len(answered) == 20
    upcoming = next(t for t in main if t["id"] not in {x["id"] for p in pairs[:10] for x in p})
    want = replay(Staircase(), [c for s, c in answered if s == stair[upcoming["id"]]])
    assert session(client, token)["next_exposure_ms"] == want
