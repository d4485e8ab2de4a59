"""Many participants at once over real HTTP: balanced models, complete trial lists."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from study_server.db import db
from study_server.models import Participant, Trial

PEOPLE = 50


def test_concurrent_sign_ups_stay_balanced(app, make_study, live_server):
    # Five models with room for everyone: balance must come from the assignment alone.
    models = (
        '["scenes/memoriser", "scenes/pca-gauss", "scenes/colour-shift", '
        '"textures/memoriser", "textures/mild-degrade"]'
    )
    make_study(models=models, target=100)

    def sign_up(i: int) -> tuple[int, str]:
        # Ten people send their sign-up twice at once: one session each, never two.
        body = {"consent": True, "client_id": f"person-{i % PEOPLE:03d}"}
        r = requests.post(f"{live_server}/api/v1/studies/t/participants", json=body, timeout=60)
        return r.status_code, r.json()["token"]

    with ThreadPoolExecutor(max_workers=PEOPLE + 10) as pool:
        results = list(pool.map(sign_up, range(PEOPLE + 10)))
    assert Counter(status for status, _ in results) == {201: PEOPLE, 200: 10}

    def first_read(token: str) -> int:
        # The trial list is made when the session is first read; the two tokens of the
        # people who signed up twice read it at once.
        r = requests.get(
            f"{live_server}/api/v1/session",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=PEOPLE + 10) as pool:
        assert set(pool.map(first_read, [token for _, token in results])) == {200}

    with app.app_context():
        people = db.session.scalars(select(Participant)).all()
        assert len(people) == PEOPLE
        per_model = Counter(g.name for p in people for g in p.generators)
        assert len(per_model) == 5
        assert max(per_model.values()) - min(per_model.values()) <= 1, per_model
        for p in people:
            trials = db.session.scalars(
                select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)
            ).all()
            assert [t.position for t in trials] == list(range(4 + 10 + 10 + 3))
            assert len({t.image_id for t in trials}) == len(trials)
            main = Counter((t.kind, t.expected) for t in trials if t.block == "main")
            assert main["stimulus", "real"] == main["stimulus", "fake"] == 10
            (model,) = p.generators
            assert all(
                t.image.generator_id == model.id
                for t in trials
                if (t.block, t.kind, t.expected) == ("main", "stimulus", "fake")
            )
    # Every token opens its own session.
    tokens = {token for _, token in results}
    for token in list(tokens)[:5]:
        r = requests.get(
            f"{live_server}/api/v1/session",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code in (200, 401)  # a resumed id rotates the earlier token
