"""Whole-process measurements for the benchmark scripts: peak resident memory and wall time."""

from __future__ import annotations

import subprocess
import time

import psutil


def run_measured(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run `command`, sampling its resident memory every 20 ms; (peak RSS in GB, wall s).
    Exits with the command's last error lines if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(process.stderr.read().decode()[-2000:])
    return peak / 2**30, wall
