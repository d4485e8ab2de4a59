"""Helpers that take part in a study through the participant API (Flask test client)."""

from __future__ import annotations

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
