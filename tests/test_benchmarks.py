"""Benchmarks meant for other machines still run here, in their smoke modes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_the_cpu():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--device", "cpu", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["pixel", "dinov2-vits14"]
    for row in rows:
        fp32, amp, error = float(row[2]), float(row[3]), float(row[5])
        assert fp32 > 0 and amp > 0 and 0 <= error < 0.1
