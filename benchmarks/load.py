"""Load and faults on gunicorn + PostgreSQL: a ladder of paced crowds, with and without kills.

For each rung (a number of participants) and each fault setting, builds the demo
stimuli and a study in a scratch PostgreSQL database, then measures a bare Flask
no-op PUT endpoint (the baseline) and the study server under the simulated crowd
(`percept.simulate.crowd`), both on gunicorn with the same workers and threads
and the same number of paced clients. With kills on, one worker is killed with
SIGKILL every `--kill-every` seconds; `--drop` of the client's requests are lost
(half on the way to the server, half on the way back) and sent again. Prints,
per rung, answer p50/p99 against the no-op in the same run and their ratios,
errors, and lost or duplicated answers (stored must equal acknowledged, none
twice, assignment balanced; exit 1 if not). Writes `load.csv` and `load.png`
(latency against participants) to `--out`. Loopback only; bounded by the counts.

    .venv/bin/python benchmarks/load.py [--participants 100 200 300 600 1000] [--kills both]
        [--workers 4] [--threads 4] [--trials 20] [--kill-every 10] [--drop 0.05]
        [--pace 1.0] [--ramp 10] [--out load-out]

`--pace 1` makes each simulated person wait as long as a real trial takes
(fixation 500 ms + exposure 500 ms + a response time around 750 ms) before
each answer, so 300 people send about 170 answers a second. The clients run as
threads of this process, on the same cores as the server: at the top rungs the
clients themselves may be what limits (the load average printed says how busy
the machine was).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from math import nan
from pathlib import Path

import numpy as np

from percept.simulate.loadtest import percentiles, run_load
from stimuli.demo import make_demo
from study_server.db import LOCAL_POSTGRES, scratch_database

FIELDS = (
    "participants", "kills", "workers", "threads", "answer_p50_ms", "answer_p99_ms",
    "noop_p50_ms", "noop_p99_ms", "ratio_p50", "ratio_p99", "steady_p50_ms", "steady_p99_ms",
    "server_answer_p50_ms", "server_answer_p99_ms", "server_noop_p99_ms", "signup_worker_s",
    "session_worker_s", "image_worker_s", "answer_worker_s", "errors", "lost", "duplicated",
    "workers_killed", "cpu_busy", "client_cpu_ms", "gunicorn_cpu_ms", "rest_cpu_ms",
    "server_capacity", "load_average",
)  # fmt: skip


def rung(args, stimdir: Path, participants: int, kills: bool) -> dict:
    """One run of the crowd (and its baseline) at this size; the row for load.csv."""
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.admin_url) as db_url:
        result = run_load(
            db_url,
            Path(tmp),
            participants=participants,
            workers=args.workers,
            threads=args.threads,
            trials=args.trials,
            kill_every_s=args.kill_every if kills else 0.0,
            drop=args.drop,
            pace=args.pace,
            ramp_s=args.ramp,
            seed=args.seed,
            stimdir=stimdir,
        )
    noop50, noop99 = percentiles(result.noop_ms)
    put50, put99 = percentiles(result.submit_ms)
    server50, server99 = percentiles(np.array(result.worker_ms["answer"]))
    _, server_noop99 = percentiles(result.server_noop_ms)
    steady50, steady99 = (
        percentiles(result.steady_submit_ms) if len(result.steady_submit_ms) else (nan, nan)
    )
    worker_s = {route: sum(ms) / 1000 for route, ms in result.worker_ms.items()}
    errors = sum(n for status, n in result.statuses.items() if status != "completed")
    lost = sum("not stored" in p for p in result.problems)
    duplicated = sum("stored twice" in p for p in result.problems)
    cpu, answers, cores = result.cpu, max(result.acknowledged, 1), os.cpu_count() or 1
    per_answer = {
        "clients": cpu.clients * 1000 / answers,
        "gunicorn": cpu.children * 1000 / answers,
        "rest": (cpu.machine - cpu.clients - cpu.children) * 1000 / answers,
    }
    # How many paced participants the server side alone (gunicorn + PostgreSQL) could keep
    # up with on every core of this machine at full use: an upper bound, not a target.
    capacity = cores * 1000 / (per_answer["gunicorn"] + per_answer["rest"]) * result.interval_s
    busy = cpu.machine / (result.seconds * cores)
    print(
        f"  {participants} participants, kills {'on' if kills else 'off'}: "
        f"{result.completed} completed in {result.seconds:.0f} s, {result.kills} workers killed, "
        f"{result.retried} requests sent again; answers acknowledged {result.acknowledged}, "
        f"stored {result.stored}"
    )
    print(f"  {'':28} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"  {'no-op PUT (baseline)':28} {noop50:8.1f} {noop99:8.1f}")
    print(f"  {'answer PUT':28} {put50:8.1f} {put99:8.1f}")
    print(f"  {'  ratio to the no-op':28} {put50 / noop50:8.2f} {put99 / noop99:8.2f}")
    print(f"  {'  after the last sign-up':28} {steady50:8.1f} {steady99:8.1f}")
    print(f"  {'answer PUT in the worker':28} {server50:8.1f} {server99:8.1f}")
    print(
        "  worker seconds by route: "
        + ", ".join(
            f"{route} {s:.1f}" for route, s in sorted(worker_s.items(), key=lambda i: -i[1])
        )
    )
    print(
        f"  CPU {busy:.0%} busy; per answer: clients {per_answer['clients']:.1f} ms, "
        f"gunicorn {per_answer['gunicorn']:.1f} ms, PostgreSQL and the rest "
        f"{per_answer['rest']:.1f} ms (server side alone on {cores} cores: at most "
        f"~{capacity:.0f} paced participants)"
    )
    for problem in result.problems:
        print(f"  PROBLEM: {problem}")
    return dict(
        participants=participants, kills="on" if kills else "off", workers=args.workers,
        threads=args.threads, answer_p50_ms=round(put50, 1), answer_p99_ms=round(put99, 1),
        noop_p50_ms=round(noop50, 1), noop_p99_ms=round(noop99, 1),
        ratio_p50=round(put50 / noop50, 2), ratio_p99=round(put99 / noop99, 2),
        steady_p50_ms=round(steady50, 1), steady_p99_ms=round(steady99, 1),
        server_answer_p50_ms=round(server50, 1), server_answer_p99_ms=round(server99, 1),
        signup_worker_s=round(worker_s.get("sign-up", 0), 1),
        session_worker_s=round(worker_s.get("session", 0), 1),
        image_worker_s=round(worker_s.get("image", 0), 1),
        answer_worker_s=round(worker_s.get("answer", 0), 1),
        server_noop_p99_ms=round(server_noop99, 1), errors=errors, lost=lost,
        duplicated=duplicated, workers_killed=result.kills, cpu_busy=round(busy, 2),
        client_cpu_ms=round(per_answer["clients"], 2),
        gunicorn_cpu_ms=round(per_answer["gunicorn"], 2), rest_cpu_ms=round(per_answer["rest"], 2),
        server_capacity=round(capacity), load_average=round(os.getloadavg()[0], 1),
        problems=len(result.problems),
    )  # fmt: skip


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kills, style in (("off", "-"), ("on", "--")):
        mine = [r for r in rows if r["kills"] == kills]
        if not mine:
            continue
        x = [r["participants"] for r in mine]
        for column, colour in (("answer_p99_ms", "C3"), ("answer_p50_ms", "C0")):
            label = f"answer {column.split('_')[1]}, kills {kills}"
            ax.plot(x, [r[column] for r in mine], style, color=colour, marker="o", label=label)
        ax.plot(x, [r["noop_p99_ms"] for r in mine], style, color="grey", marker=".",
                label=f"no-op p99, kills {kills}")  # fmt: skip
    ax.axhline(100, color="black", linewidth=0.8, linestyle=":")
    ax.set_xlabel("paced participants at once")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Answer PUT latency, gunicorn + PostgreSQL on this machine", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[100, 200, 300, 600, 1000])
    parser.add_argument("--kills", choices=["on", "off", "both"], default="both")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20, help="main trials per participant")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--drop", type=float, default=0.05)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--ramp", type=float, default=10.0, help="arrivals spread over seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("load-out"))
    parser.add_argument(
        "--admin-url", default=LOCAL_POSTGRES, help="PostgreSQL to create a database on"
    )
    args = parser.parse_args()
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.kills]
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        stimdir = Path(tmp) / "stimuli"
        make_demo(stimdir, seed=args.seed)
        rows = [rung(args, stimdir, n, kills) for n in args.participants for kills in settings]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "load.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*FIELDS, "problems"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "load.png")
    print(f"\n{'participants':>12} {'kills':>5} {'p50':>7} {'p99':>7} {'no-op p99':>9} "
          f"{'ratio p99':>9} {'steady p99':>10} {'worker p99':>10} {'CPU busy':>8} "
          f"{'lost':>4} {'dup':>4}")  # fmt: skip
    for r in rows:
        print(
            f"{r['participants']:>12} {r['kills']:>5} {r['answer_p50_ms']:>7} "
            f"{r['answer_p99_ms']:>7} {r['noop_p99_ms']:>9} {r['ratio_p99']:>9} "
            f"{r['steady_p99_ms']:>10} {r['server_answer_p99_ms']:>10} {r['cpu_busy']:>8.0%} "
            f"{r['lost']:>4} {r['duplicated']:>4}"
        )
    print(f"wrote {args.out / 'load.csv'} and {args.out / 'load.png'}; "
          f"load {os.getloadavg()[0]:.1f} at end")  # fmt: skip
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
