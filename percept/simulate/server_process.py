"""gunicorn as a child process on 127.0.0.1, for the demo and the load benchmark."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from percept.errors import PerceptError

ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(D)sus'
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" \d+ \S+ (?P<us>\d+)us$')


def request_times(log: Path) -> list[tuple[str, str, float]]:
    """(method, path, milliseconds) of each request in a `Server`'s log.

    The time a worker spent on the request: from the moment a worker thread took it
    to its last byte sent, so neither the client's own delays nor the wait for a free
    thread count.
    """
    times = []
    for line in Path(log).read_text(errors="replace").splitlines():
        match = ACCESS_LINE.search(line)
        if match:
            times.append((match["method"], match["path"], int(match["us"]) / 1000))
    return times


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving `app` (study_server.wsgi:app) on a free local port, stopped on exit.

    `image_store`: the IMAGE_STORE the studies were created with (default: the app's own).
    """

    def __init__(
        self,
        db_url: str,
        log: Path,
        *,
        workers: int = 2,
        threads: int = 4,
        app: str = "study_server.wsgi:app",
        image_store: Path | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "SECRET_KEY": secrets.token_hex(32),
            # Only the local simulated crowd reaches this server, and each simulated person
            # names its own address in X-Forwarded-For, so per-address limits see people.
            "PERCEPT_TRUSTED_PROXIES": "1",
        }
        if image_store is not None:
            env["PERCEPT_IMAGE_STORE"] = str(Path(image_store).resolve())
        # The app's own production config, found without importing the app into this process.
        config = Path(importlib.util.find_spec("study_server").origin).with_name("gunicorn.conf.py")
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(config),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--access-logfile",
                "-",
                # gunicorn's common format plus the time the worker spent on the request.
                "--access-logformat",
                ACCESS_LOG_FORMAT,
                app,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 60) -> None:
        """Return once a worker answers a real route; raise if gunicorn stopped or never did.

        gunicorn accepts connections before its workers have loaded the app, so a
        connection that is refused, reset or left unanswered (read time-out) only
        means "not yet"; the app's own JSON answer (401 without a token) means ready.
        """
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PerceptError(
                    f"gunicorn stopped (exit {self.process.returncode}); see {self.log.name}"
                )
            try:
                answer = requests.get(f"{self.url}/api/v1/session", timeout=2)
                if answer.headers.get("Content-Type", "").startswith("application/json"):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise PerceptError(f"gunicorn did not answer within {timeout:.0f} s; see {self.log.name}")

    def worker_pids(self) -> list[int]:
        """The worker processes gunicorn runs now (Linux: read from /proc)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children]

    def cpu_seconds(self) -> float:
        """CPU seconds gunicorn has used so far: the master, its workers, and reaped workers."""
        total = 0
        for pid in [self.process.pid, *self.worker_pids()]:
            try:
                # Fields after the command name: utime, stime, cutime, cstime are 12-15.
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # a worker that just exited: the master counts it
                continue
            total += sum(int(v) for v in fields[11:15])
        return total / os.sysconf("SC_CLK_TCK")

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker, as the OOM killer or a crash would; gunicorn starts another."""
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
