"""The answer PUT in process, against a trivial route of the same app: the ratio.

Builds the demo stimuli and a study in a temporary SQLite database (or, with
`--db postgresql`, a scratch PostgreSQL database), signs up one participant per
`--per-participant` answers and reads each session (outside the timing). Then it
times `--answers` answer PUTs (`PUT /api/v1/trials/<id>/response`, each trial
answered once, in order) through the Flask test client, each followed by one
request to a trivial route of the same app (a 404 of the JSON API), so both
see the same machine. Prints per-request mean and median in µs and the ratio
answer / trivial (issue 23 asks for at most 5). With `--profile`, the answer PUTs
run under cProfile and the top entries are printed (the times are then cProfile's).
`--staircase` makes the study adaptive (every main answer replays its staircase);
`--invalid` sends every answer flagged invalid (each main one adds a repeat trial).
Nothing is asserted; loopback only, no network. The app runs with the production
defaults except that one trusted proxy lets each participant sign up from an
address of its own (as behind nginx).

    .venv/bin/python benchmarks/answer_path.py [--answers 2000] [--per-participant 40]
        [--db sqlite|postgresql] [--staircase] [--invalid] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from percept.demo import STUDY
from stimuli.demo import make_demo
from study_server import create_app
from study_server.db import LOCAL_POSTGRES, db, scratch_database
from study_server.schema import upgrade_schema
from study_server.studies import create_study
from study_server.studyconfig import load_config

STAIRCASE = (
    "\n[timing.staircase]\nstart_ms = 300\nmin_ms = 100\nmax_ms = 500\nstep_ms = 50\n"
    "down_after = 2\n"
)
TRIVIAL = "/api/v1/no-such-route"


@contextlib.contextmanager
def database(kind: str, folder: Path, admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'percept.sqlite3'}"
    else:
        with scratch_database(admin_url) as url:
            yield url


def study_text(stimuli: Path, trials: int, staircase: bool) -> str:
    text = STUDY.format(stimuli=stimuli, trials=trials, target=100_000)
    if staircase:
        text = text.replace("[timing]\n", '[timing]\nmode = "staircase"\n') + STAIRCASE
    return text


def answers_to_time(client, people: int, per_person: int) -> list[tuple[str, int, bool]]:
    """(token, trial id, adaptive) for each answer to time, participant after participant."""
    todo = []
    for n in range(people):
        r = client.post(
            "/api/v1/studies/demo/participants",
            json={"consent": True, "client_id": f"bench-{n}"},
            headers={"X-Forwarded-For": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"},
        )
        assert r.status_code == 201, r.json
        token = r.json["token"]
        trials = client.get("/api/v1/session", headers=auth(token)).json["trials"]
        todo += [(token, t["id"], t["adaptive"]) for t in trials[:per_person]]
    return todo


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body(adaptive: bool, invalid: bool) -> dict:
    answer = {"choice": "real", "rt_ms": 612.5, "frame_ms": 16.667, "frames": 30, "valid": True}
    if adaptive:
        answer["exposure_ms"] = 300  # within the staircase's bounds; 18 frames at 60 Hz
        answer["frames"] = 18
    if invalid:
        answer |= {"valid": False, "invalid_reason": "hidden"}
    return answer


def timed(client, todo, invalid: bool, profile: cProfile.Profile | None):
    """(answer PUT times, trivial request times) in seconds, interleaved one for one."""
    puts, trivial = [], []
    for token, trial_id, adaptive in todo:
        url, headers, payload = f"/api/v1/trials/{trial_id}/response", auth(token), None
        payload = body(adaptive, invalid)
        if profile is not None:
            profile.enable()
        start = time.perf_counter()
        r = client.put(url, json=payload, headers=headers)
        puts.append(time.perf_counter() - start)
        if profile is not None:
            profile.disable()
        assert r.status_code == 200, r.json
        start = time.perf_counter()
        r = client.get(TRIVIAL)
        trivial.append(time.perf_counter() - start)
        assert r.status_code == 404
    return puts, trivial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--per-participant", type=int, default=40)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--admin-url", default=LOCAL_POSTGRES)
    parser.add_argument("--staircase", action="store_true")
    parser.add_argument("--invalid", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--dir",
        help="where the temporary folder (and the SQLite file) goes; /dev/shm leaves the "
        "disk's fsync out of the measurement",
    )
    parser.add_argument("--top", type=int, default=30, help="profile lines to print")
    args = parser.parse_args()
    per = args.per_participant
    people = -(-args.answers // per)

    with (
        tempfile.TemporaryDirectory(dir=args.dir) as tmp,
        database(args.db, Path(tmp), args.admin_url) as url,
    ):
        tmp = Path(tmp)
        make_demo(tmp / "stimuli", seed=0, size=32)
        config_file = tmp / "bench.toml"
        # Enough trials for `per` answers: 2 * trials + practice 4 + checks 4.
        config_file.write_text(study_text(tmp / "stimuli", max(1, per // 2), args.staircase))
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "IMAGE_STORE": str(tmp / "images"),
                "SECRET_KEY": "answer-path-benchmark-0123456789",
                "TRUSTED_PROXIES": 1,
            }
        )
        upgrade_schema(app)
        with app.app_context():
            create_study(load_config(config_file))
            db.session.remove()
        client = app.test_client()
        todo = answers_to_time(client, people, per)[: args.answers]
        # A few untimed requests first: the first of each route pays for imports and caches.
        client.get(TRIVIAL)
        profile = cProfile.Profile() if args.profile else None
        puts, trivial = timed(client, todo, args.invalid, profile)
        with app.app_context():
            db.engine.dispose()

    kind = ", ".join(
        [args.db] + ["staircase"] * args.staircase + ["invalid (repeats)"] * args.invalid
    )
    print(f"{len(puts)} answer PUTs ({people} participants, {per} each; {kind})")
    print(f"  {'':10} {'mean µs':>9} {'median µs':>10}")
    for name, times in (("answer", puts), ("trivial", trivial)):
        mean, median = statistics.mean(times) * 1e6, statistics.median(times) * 1e6
        print(f"  {name:10} {mean:9.0f} {median:10.0f}")
    mean_ratio = statistics.mean(puts) / statistics.mean(trivial)
    median_ratio = statistics.median(puts) / statistics.median(trivial)
    print(f"  ratio answer / trivial: mean {mean_ratio:.2f}x, median {median_ratio:.2f}x")
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
