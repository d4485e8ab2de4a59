"""Load and faults on gunicorn + PostgreSQL: 300 paced participants while workers are killed.

Builds the demo stimuli and a study in a scratch PostgreSQL database, then, in
this one process, measures a bare Flask no-op PUT endpoint (the baseline) and
the study server under the simulated crowd (`percept.simulate.crowd`), both on
gunicorn with the same workers and threads and the same number of paced
clients. During the crowd run one worker is killed with SIGKILL every
`--kill-every` seconds and `--drop` of the client's requests are lost (half on
the way to the server, half on the way back) and sent again. Prints p50/p99
response-submit latency against the baseline, and checks that the answers
stored equal the answers acknowledged, none twice, and that assignment stayed
balanced (exit 1 if not). Loopback only; bounded by the counts given.

    .venv/bin/python benchmarks/load.py [--participants 300] [--workers 4] [--threads 4]
        [--trials 20] [--kill-every 10] [--drop 0.05] [--pace 1.0] [--ramp 10]

`--pace 1` makes each simulated person wait as long as a real trial takes
(fixation 500 ms + exposure 500 ms + a response time around 750 ms) before
each answer, so 300 people send about 170 answers a second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from percept.simulate.loadtest import percentiles, run_load
from study_server.db import LOCAL_POSTGRES, scratch_database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20, help="main trials per participant")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--drop", type=float, default=0.05)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--ramp", type=float, default=10.0, help="arrivals spread over seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--admin-url", default=LOCAL_POSTGRES, help="PostgreSQL to create a database on"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.admin_url) as db_url:
        result = run_load(
            db_url,
            Path(tmp),
            participants=args.participants,
            workers=args.workers,
            threads=args.threads,
            trials=args.trials,
            kill_every_s=args.kill_every,
            drop=args.drop,
            pace=args.pace,
            ramp_s=args.ramp,
            seed=args.seed,
        )
    noop50, noop99 = percentiles(result.noop_ms)
    put50, put99 = percentiles(result.submit_ms)
    ack50, ack99 = percentiles(result.acknowledge_ms)
    print(
        f"\n{result.participants} participants in {result.seconds:.0f} s: "
        f"{result.completed} completed, {result.kills} workers killed, "
        f"{result.retried} requests sent again"
    )
    print(", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())))
    print(f"answers acknowledged {result.acknowledged}, stored {result.stored}")
    print(f"participants per model: {sorted(result.per_model.values())}")
    print(f"{'':32} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'no-op PUT (baseline)':32} {noop50:8.1f} {noop99:8.1f}")
    print(f"{'response submit':32} {put50:8.1f} {put99:8.1f}")
    print(f"{'  ratio to baseline':32} {put50 / noop50:8.2f} {put99 / noop99:8.2f}")
    print(f"{'submit to acknowledgement':32} {ack50:8.1f} {ack99:8.1f}  (retries included)")
    print(f"goal p99 <= 50 ms: {'met' if put99 <= 50 else 'NOT met'}")
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    print("stored == acknowledged, no duplicates, balanced" if not result.problems else "")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
