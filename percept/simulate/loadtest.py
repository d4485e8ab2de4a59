"""Load and faults: a simulated crowd on gunicorn + PostgreSQL while workers are killed.

`run_load` builds the demo stimuli and a study in a database of its own, then
measures twice on gunicorn with the same workers and threads: a bare Flask
no-op PUT endpoint under the same number of paced clients (the baseline), and
the study server under the simulated crowd while one worker is killed with
SIGKILL every few seconds and a share of the client's requests are lost and
sent again. It then compares what the database stored with what the server
acknowledged to the clients. Loopback only; every count and wait is bounded.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from percept.simulate.server_process import request_times


@dataclass
class LoadResult:
    """What one load run measured and what it found wrong (`problems` empty: none)."""

    participants: int
    completed: int
    kills: int
    retried: int
    acknowledged: int
    stored: int
    statuses: dict[str, int]
    per_model: dict[str, int]
    submit_ms: np.ndarray
    acknowledge_ms: np.ndarray
    noop_ms: np.ndarray
    # The workers' own milliseconds per request, by route (from gunicorn's access log).
    worker_ms: dict[str, list[float]]
    server_noop_ms: np.ndarray
    # Answer latencies sent after the last participant had signed up: the steady state,
    # without the burst of sign-ups while the crowd arrives.
    steady_submit_ms: np.ndarray
    seconds: float
    interval_s: float  # a paced participant's mean time between answers
    # CPU seconds during the crowd: the client threads, gunicorn (master and workers),
    # and the rest of the machine (PostgreSQL, the kernel, anything else running).
    cpu: CpuClock
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds so far: this process (the clients), its reaped children (gunicorn, once
    stopped: the master counts its workers, killed ones too), and the whole machine."""

    clients: float
    children: float
    machine: float

    @classmethod
    def now(cls) -> CpuClock:
        t = os.times()
        # /proc/stat's first line: user nice system idle iowait irq softirq steal ... (ticks).
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(ticks[:3]) + sum(ticks[5:8])
        return cls(t.user + t.system, t.children_user + t.children_system,
                   busy / os.sysconf("SC_CLK_TCK"))  # fmt: skip


ROUTES = {
    "sign-up": re.compile(r"POST /api/v1/studies/[^/]+/participants"),
    "session": re.compile(r"GET /api/v1/session"),
    "image": re.compile(r"GET /i/.*"),
    "answer": re.compile(r"PUT /api/v1/trials/\d+/response"),
    "complete": re.compile(r"POST /api/v1/session/complete"),
    "no-op": re.compile(r"PUT /noop/\d+"),
}


def route_of(method: str, path: str) -> str:
    """The name of a request's route in ROUTES, or "other"."""
    request = f"{method} {path.split('?', 1)[0]}"
    return next((name for name, rx in ROUTES.items() if rx.fullmatch(request)), "other")


def worker_times(log: Path) -> dict[str, list[float]]:
    """Route name -> the workers' milliseconds on each of its requests, from a Server's log."""
    times: dict[str, list[float]] = {}
    for method, path, ms in request_times(log):
        times.setdefault(route_of(method, path), []).append(ms)
    return times


def percentiles(ms: np.ndarray) -> tuple[float, float]:
    """(p50, p99) in ms."""
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99)


def noop_app():
    """A bare Flask app whose PUT reads the JSON body and answers: the latency floor."""
    from flask import Flask, jsonify, request

    app = Flask("noop")

    @app.put("/noop/<int:trial_id>")
    def noop(trial_id: int):
        body = request.get_json()
        return jsonify(trial_id=trial_id, choice=body.get("choice"))

    @app.get("/api/v1/session")
    def ready():
        return jsonify(ready=True)

    return app


def noop_latencies(
    url: str, clients: int, puts: int, interval_s: float, ramp_s: float
) -> list[float]:
    """PUT latencies (ms) of `clients` paced clients sending `puts` answer-sized bodies each."""
    import requests

    def client(number: int) -> list[float]:
        rng = random.Random(number)
        http = requests.Session()
        body = {
            "choice": "real",
            "rt_ms": 712.4,
            "frame_ms": 16.667,
            "valid": True,
            "input": "key",
            "frames": 30,
            "displayed_ms": 500.0,
        }
        time.sleep(rng.uniform(0, ramp_s))
        times = []
        for i in range(puts):
            time.sleep(interval_s * rng.uniform(0.5, 1.5))
            for _ in range(8):
                # As the crowd does: a keep-alive connection the server just closed is
                # reset, and the request is sent again; only the answered one is timed.
                sent = time.perf_counter()
                try:
                    r = http.put(f"{url}/noop/{number * 1000 + i}", json=body, timeout=30)
                except requests.ConnectionError:
                    continue
                times.append((time.perf_counter() - sent) * 1000)
                r.raise_for_status()
                break
            else:
                raise RuntimeError(f"{url}: the no-op endpoint did not answer 8 tries")
        return times

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [ms for times in pool.map(client, range(clients)) for ms in times]


def killer(server, every_s: float, stop: threading.Event, seed: int) -> list[int]:
    """Start a thread that SIGKILLs one gunicorn worker every `every_s`; returns the kill log."""
    rng = random.Random(seed)
    killed: list[int] = []

    def loop() -> None:
        while not stop.wait(every_s):
            pids = server.worker_pids()
            if pids:
                pid = rng.choice(pids)
                server.kill_worker(pid)
                killed.append(pid)

    threading.Thread(target=loop, daemon=True).start()
    return killed


def run_load(
    db_url: str,
    workdir: Path,
    *,
    participants: int = 300,
    workers: int = 4,
    threads: int = 4,
    trials: int = 20,
    kill_every_s: float = 10.0,
    drop: float = 0.05,
    pace: float = 1.0,
    ramp_s: float = 10.0,
    seed: int = 0,
    stimdir: Path | None = None,
    baseline: bool = True,
    echo: Callable[[str], None] = print,
) -> LoadResult:
    """Baseline, then the crowd under faults on an empty PostgreSQL database; see the module.

    `stimdir`: a demo stimulus folder to use (default: one is made in `workdir`);
    `baseline=False` skips the no-op measurement (its latencies are then empty).
    """
    from sqlalchemy import select

    from percept.demo import SLUG, STUDY
    from percept.simulate.crowd import Conditions, simulate_crowd
    from percept.simulate.server_process import Server
    from stimuli.demo import make_demo
    from study_server import create_app
    from study_server.db import db
    from study_server.models import Participant, Response, Trial
    from study_server.schema import upgrade_schema
    from study_server.studies import create_study
    from study_server.studyconfig import load_config

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if stimdir is None:
        stimdir = workdir / "stimuli"
        make_demo(stimdir, seed=seed)
    config_file = workdir / "load-study.toml"
    # The demo study, with a target nobody reaches: balance must come from the assignment,
    # not from models filling up.
    config_file.write_text(
        STUDY.format(stimuli=stimdir.resolve(), trials=trials // 2, target=participants)
        # A load test measures capacity: no cap on newcomers per minute.
        + "max_signups_per_minute = 0\n"
    )
    config = load_config(config_file)
    image_store = (workdir / "images").resolve()
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "IMAGE_STORE": str(image_store)})
    upgrade_schema(app)
    with app.app_context():
        create_study(config)
    design, attention = config.design, config.attention
    answers = (
        config.practice.trials
        + design.real_trials
        + design.fake_trials
        + attention.catch_trials
        + attention.instructed_trials
    )
    # Seconds between a participant's answers: fixation + exposure + a typical response time.
    interval_s = (config.timing.fixation_ms + config.timing.exposure_ms + 750) / 1000 * pace

    noop_ms: list[float] = []
    server_noop_ms: list[float] = []
    if baseline:
        echo(f"baseline: a bare Flask no-op PUT, {participants} paced clients x {answers} answers")
        with Server(
            db_url,
            workdir / "gunicorn-noop.log",
            workers=workers,
            threads=threads,
            app="percept.simulate.loadtest:noop_app()",
        ) as server:
            server.wait()
            noop_ms = noop_latencies(server.url, participants, answers, interval_s, ramp_s)
        server_noop_ms = worker_times(server.log.name).get("no-op", [])

    kills = f"a worker SIGKILLed every {kill_every_s:g} s" if kill_every_s > 0 else "no kills"
    echo(
        f"load: {participants} participants, {workers} workers x {threads} threads, "
        f"{kills}, {drop:.0%} of requests dropped"
    )
    before = CpuClock.now()
    stop = threading.Event()
    with Server(
        db_url, workdir / "gunicorn.log", workers=workers, threads=threads, image_store=image_store
    ) as server:
        server.wait()
        # The crowd's cost only: gunicorn's start-up (loading the app) is left out.
        started, clock, boot = time.monotonic(), CpuClock.now(), server.cpu_seconds()
        killed = killer(server, kill_every_s, stop, seed) if kill_every_s > 0 else []
        try:
            people = simulate_crowd(
                server.url,
                SLUG,
                stimdir,
                participants,
                concurrency=participants,
                seed=seed,
                out=workdir / "crowd",
                conditions=Conditions(pace=pace, drop=drop, ramp_s=ramp_s),
            )
        finally:
            stop.set()
    seconds, end = time.monotonic() - started, CpuClock.now()
    # gunicorn's CPU is known in full only once it has exited and been reaped (children).
    cpu = CpuClock(end.clients - clock.clients, end.children - before.children - boot,
                   end.machine - clock.machine)  # fmt: skip
    worker_ms = worker_times(server.log.name)

    acknowledged = {
        (p.client_id, trial_id, choice)
        for p in people
        for trial_id, choice in p.acknowledged.items()
    }
    with app.app_context():
        rows = db.session.execute(
            select(Participant.platform_pid, Response.trial_id, Response.choice)
            .join(Trial, Response.trial_id == Trial.id)
            .join(Participant, Trial.participant_id == Participant.id)
        ).all()
        signed_up = db.session.scalars(select(Participant)).all()
        per_model = Counter(f"{g.dataset}/{g.name}" for p in signed_up for g in p.generators)
        sessions = Counter(p.platform_pid for p in signed_up)
        db.engine.dispose()
    stored = [tuple(r) for r in rows]

    problems = []
    lost = acknowledged - set(stored)
    unacknowledged = set(stored) - acknowledged
    duplicates = len(stored) - len(set(stored))
    if lost:
        problems.append(f"{len(lost)} acknowledged answers are not stored, e.g. {min(lost)}")
    if unacknowledged:
        problems.append(f"{len(unacknowledged)} stored answers were never acknowledged")
    if duplicates:
        problems.append(f"{duplicates} answers are stored twice")
    twice = [pid for pid, n in sessions.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} participants got two sessions, e.g. {twice[0]}")
    if len(sessions) != participants:
        problems.append(f"{len(sessions)} participants signed up, {participants} expected")
    if max(per_model.values()) - min(per_model.values()) > 1:
        problems.append(f"assignment is unbalanced: {dict(per_model)}")
    submit = [ms for p in people for ms in p.submit_ms]
    arrived = max(p.signed_up_at for p in people)
    steady = [
        ms
        for p in people
        for ms, at in zip(p.submit_ms, p.submitted_at, strict=True)
        if at > arrived
    ]
    acknowledge = [ms for p in people for ms in p.acknowledge_ms]
    return LoadResult(
        participants=participants,
        completed=sum(p.status == "completed" for p in people),
        statuses=dict(Counter(p.status for p in people)),
        kills=len(killed),
        retried=sum(p.retried for p in people),
        acknowledged=len(acknowledged),
        stored=len(stored),
        per_model=dict(per_model),
        submit_ms=np.array(submit),
        acknowledge_ms=np.array(acknowledge),
        noop_ms=np.array(noop_ms),
        worker_ms=worker_ms,
        server_noop_ms=np.array(server_noop_ms),
        steady_submit_ms=np.array(steady),
        seconds=seconds,
        interval_s=interval_s,
        cpu=cpu,
        problems=problems,
    )
