"""A simulated crowd: scripted participants over real HTTP, using only what a browser uses.

Each simulated participant signs up, loads their session, downloads every
image, answers, and completes, through the public participant API. To answer
they "look" at the image bytes: the image's sha256 (of the stimulus file, once
the study's padding is taken off) is looked up in the stimulus folder (its
manifest and, for demo sets, ground_truth.csv), which gives the latent realness
a person would perceive: 1 for real photographs, 2 * planted_realism - 1 for a
model's fakes, -3 for catch images. They answer "real" with probability

    lapse / 2 + (1 - lapse) * Phi(skill * realness - bias)

(the signal-detection model of analysis/simulation.py). Some participants are
inattentive (random, fast answers: they fail attention checks), some abandon
half-way, some reload (fetch their session again and resend answers already
sent, which the server must treat as the same answers). The truth about every
participant is written to `truth.csv`; the per-model truth is the stimulus folder's
ground_truth.csv.

`Conditions` make the crowd behave in time like a real one, for load tests:
people arrive spread over a ramp, wait as long as a real trial takes before
each answer, and lose a share of their requests on the network (half never
reach the server, half lose the server's answer) and send them again.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from percept.errors import PerceptError
from percept.rules import planned_frames
from stimuli.manifest import MANIFEST, read_csv, read_manifest
from stimuli.padding import unpad_png

FRAME_MS = 1000 / 60
# Sent as the participant's user agent, so that every export, `percept human` and the
# report can tell simulated participants from people (analysis.responses.SIMULATED_AGENT).
USER_AGENT = "percept-simulate/1 (a scripted participant, not a person)"


@dataclass
class Person:
    """One simulated participant and what happened to them."""

    number: int
    client_id: str
    skill: float
    bias: float
    lapse: float
    inattentive: bool
    abandons: bool
    reloads: bool
    status: str = "not started"
    answered: int = 0
    resent: int = 0
    retried: int = 0
    # What the server acknowledged (trial id -> choice) and how long each acknowledged
    # answer took: the last request alone, and from the first try (retries included).
    acknowledged: dict[int, str] = field(default_factory=dict, metadata={"truth": False})
    submit_ms: list[float] = field(default_factory=list, metadata={"truth": False})
    acknowledge_ms: list[float] = field(default_factory=list, metadata={"truth": False})
    # time.monotonic() when the sign-up was answered and when each timed answer was sent.
    signed_up_at: float = field(default=0.0, metadata={"truth": False})
    submitted_at: list[float] = field(default_factory=list, metadata={"truth": False})


TRUTH_COLUMNS = [f.name for f in fields(Person) if f.metadata.get("truth", True)]


@dataclass(frozen=True)
class Conditions:
    """How the crowd behaves in time; the defaults are as fast as the server allows."""

    pace: float = 0.0  # 1: wait fixation + exposure + response time before each answer
    drop: float = 0.0  # share of requests lost on the network, then sent again
    ramp_s: float = 0.0  # arrivals spread uniformly over this many seconds


class Dropped(Exception):
    """A request the simulated network lost."""


def stimulus_bytes(served: bytes) -> bytes:
    """The stimulus file inside a served image: the study pads each to one byte length."""
    try:
        return unpad_png(served)
    except ValueError:
        return served  # a server from before the padding


def realness_table(stimdir: Path) -> dict[str, float]:
    """sha256 -> latent realness, from the stimulus folder's manifest and ground truth."""
    rows = read_manifest(stimdir)
    planted: dict[tuple[str, str], float] = {}
    truth_file = Path(stimdir) / "ground_truth.csv"
    if truth_file.is_file():
        for row in read_csv(truth_file, ("dataset", "model", "planted_realism")):
            planted[row["dataset"], row["model"]] = float(row["planted_realism"])
    table = {}
    for row in rows:
        if row["role"] == "catch":
            table[row["sha256"]] = -3.0
        elif row["source"] == "real":
            table[row["sha256"]] = 1.0
        else:
            # Without planted realism (a user's own stimuli) every model looks middling.
            table[row["sha256"]] = 2 * planted.get((row["dataset"], row["model"]), 0.5) - 1
    return table


def answer_probability(person: Person, realness: float) -> float:
    """P(answer 'real') for this person and image."""
    if person.inattentive:
        return 0.5
    phi = 0.5 * (1 + math.erf((person.skill * realness - person.bias) / math.sqrt(2)))
    return person.lapse / 2 + (1 - person.lapse) * phi


def run_person(
    base: str,
    slug: str,
    person: Person,
    table: dict[str, float],
    seed: int,
    conditions: Conditions = Conditions(),
) -> Person:
    """One whole session over HTTP; returns the person with what happened."""
    import requests

    rng = random.Random(seed)
    # The network's own randomness, so that faults do not change the person's answers.
    network = random.Random(seed + 1)
    http = requests.Session()
    # Each simulated person has an address of their own (the server trusts it only
    # when told to, TRUSTED_PROXIES: a simulation server, never one behind nginx).
    http.headers["X-Forwarded-For"] = (
        f"10.{person.number >> 16 & 255}.{person.number >> 8 & 255}.{person.number & 255}"
    )
    last_ms = 0.0

    def call(method: str, path: str, **kwargs):
        nonlocal last_ms
        # A flaky network: retry transport errors and 5xx, as the runner's outbox does.
        for attempt in range(8):
            if attempt:
                person.retried += 1
                time.sleep(0.1 * 2**attempt)
            try:
                if network.random() < conditions.drop / 2:
                    raise Dropped("lost on the way to the server")
                sent = time.perf_counter()
                response = http.request(method, base + path, timeout=30, **kwargs)
                last_ms = (time.perf_counter() - sent) * 1000
                if network.random() < conditions.drop / 2:
                    raise Dropped("the server's answer was lost")
            except (requests.RequestException, Dropped):
                continue
            if response.status_code >= 500:
                continue
            if response.status_code == 429:
                # Rate limited, as the runner is: wait as told (briefly), then try again.
                time.sleep(min(float(response.headers.get("Retry-After") or 1), 5))
                continue
            return response
        raise PerceptError(f"{base}{path}: no answer after 8 tries; is the server running?")

    def wait(ms: float) -> None:
        if conditions.pace:
            time.sleep(ms * conditions.pace / 1000)

    if conditions.ramp_s:
        time.sleep(network.uniform(0, conditions.ramp_s))

    r = call(
        "POST",
        f"/api/v1/studies/{slug}/participants",
        json={
            "consent": True,
            "client_id": person.client_id,
            "screen": {"width": 1920, "height": 1080, "device_pixel_ratio": 1},
            "user_agent": USER_AGENT,
        },
    )
    if r.status_code == 409:
        person.status = r.json().get("error", "refused")
        return person
    if r.status_code not in (200, 201):
        raise PerceptError(f"sign-up refused: {r.status_code} {r.text[:200]}")
    http.headers["Authorization"] = f"Bearer {r.json()['token']}"
    person.signed_up_at = time.monotonic()
    session = call("GET", "/api/v1/session").json()
    fixation = session["study"]["timing"]["fixation_ms"] or 0
    # Staircase studies: the exposure of the next main trial, as the server last said.
    next_exposure = session.get("next_exposure_ms") or 500
    sent: list[tuple[int, dict]] = []

    def answer(trial: dict) -> bool:
        """Look at the image and answer; True when the server repeats the trial."""
        nonlocal next_exposure
        image = call("GET", trial["image"]).content
        realness = table.get(hashlib.sha256(stimulus_bytes(image)).hexdigest())
        if realness is None:
            raise PerceptError(
                f"{trial['image']}: an image the stimulus folder does not list; "
                "simulate with the stimulus folder the study was made from"
            )
        if trial.get("instruction") and not person.inattentive:
            choice = trial["instruction"]
        else:
            choice = "real" if rng.random() < answer_probability(person, realness) else "fake"
        fast = person.inattentive
        rt = rng.uniform(90, 140) if fast else math.exp(rng.gauss(math.log(750), 0.35))
        exposure = next_exposure if trial.get("adaptive") else trial.get("exposure_ms")
        body = {
            "choice": choice,
            "rt_ms": round(rt, 1),
            "frame_ms": round(FRAME_MS, 3),
            "valid": True,
            "input": "key",
        }
        if exposure:
            # A display that never misses: exactly the frames the server plans.
            frames = planned_frames(exposure, body["frame_ms"])
            body.update(frames=frames, displayed_ms=round(frames * FRAME_MS, 2))
        if trial.get("adaptive"):
            body["exposure_ms"] = exposure
        wait(fixation + (exposure or 0) + rt)
        first_try = time.perf_counter()
        person.submitted_at.append(time.monotonic())
        r = call("PUT", f"/api/v1/trials/{trial['id']}/response", json=body)
        if r.status_code != 200:
            raise PerceptError(f"answer refused: {r.status_code} {r.text[:200]}")
        reply = r.json()
        next_exposure = reply.get("next_exposure_ms") or next_exposure
        person.acknowledge_ms.append((time.perf_counter() - first_try) * 1000)
        person.submit_ms.append(last_ms)
        person.acknowledged[trial["id"]] = choice
        sent.append((trial["id"], body))
        person.answered += 1
        return bool(reply.get("repeat"))

    trials = [t for t in session["trials"] if not t["answered"]]
    stop_at = len(trials) // 2 if person.abandons else len(trials)
    repeated = False
    for i, trial in enumerate(trials[:stop_at]):
        repeated |= answer(trial)
        if person.reloads and i == stop_at // 2:
            # A reload: the session again, and the last few answers resent as they were.
            call("GET", "/api/v1/session")
            for trial_id, old in sent[-3:]:
                again = call("PUT", f"/api/v1/trials/{trial_id}/response", json=old)
                if again.status_code != 200:
                    raise PerceptError(f"a resent answer was refused: {again.status_code}")
                person.resent += 1
    # An invalid answer's image comes again at the end of the main block, as in the
    # runner (this crowd sends only valid answers, so it meets none unless the server
    # disagrees about the frames).
    while repeated and not person.abandons:
        session = call("GET", "/api/v1/session").json()
        repeated = False
        for trial in [t for t in session["trials"] if not t["answered"]]:
            repeated |= answer(trial)
    if person.abandons:
        person.status = "abandoned"
        return person
    r = call("POST", "/api/v1/session/complete")
    person.status = "completed" if r.status_code == 200 else f"complete refused: {r.status_code}"
    return person


def crowd(
    participants: int,
    seed: int,
    inattentive: float = 0.08,
    abandon: float = 0.05,
    reload: float = 0.1,
) -> list[Person]:
    """The simulated people, drawn from one seed."""
    rng = random.Random(seed)
    return [
        Person(
            number=i,
            client_id=f"sim-{seed}-{i:05d}",
            skill=math.exp(rng.gauss(math.log(1.6), 0.3)),
            bias=rng.gauss(0, 0.25),
            lapse=0.04,
            inattentive=rng.random() < inattentive,
            abandons=rng.random() < abandon,
            reloads=rng.random() < reload,
        )
        for i in range(participants)
    ]


def simulate_crowd(
    url: str,
    slug: str,
    stimdir: Path,
    participants: int,
    *,
    concurrency: int = 8,
    seed: int = 0,
    out: Path | None = None,
    progress=None,
    conditions: Conditions = Conditions(),
) -> list[Person]:
    """Run `participants` simulated people against a live server; write the truth to `out`."""
    if not (Path(stimdir) / MANIFEST).is_file():
        raise PerceptError(f"{stimdir}: no {MANIFEST}; pass the study's stimulus folder")
    table = realness_table(stimdir)
    people = crowd(participants, seed)
    base = url.rstrip("/")
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [
            pool.submit(run_person, base, slug, p, table, seed * 100_003 + p.number, conditions)
            for p in people
        ]
        for future in futures:
            future.result()
            if progress:
                progress()
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "truth.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=TRUTH_COLUMNS)
            writer.writeheader()
            writer.writerows({c: getattr(p, c) for c in TRUTH_COLUMNS} for p in people)
    return people
