"""Shared fixtures: Hydra composition over conf/ and a small, fast experiment config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import lab.avalanche  # noqa: F401 - before any worker imports Avalanche: see its docstring
from lab.config import validate
from lab.run import config_dir

REPO = Path(__file__).resolve().parent.parent

# Under pytest-xdist (`make test` runs a worker per core), each worker's torch and the
# lab-run processes it starts take their share of the cores, not all of them each.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    share = max(1, (os.cpu_count() or 1) // WORKERS)
    os.environ.setdefault("OMP_NUM_THREADS", str(share))
    torch.set_num_threads(share)

# Small enough for seconds on a CPU, real enough to show forgetting.
# W&B in disabled mode: its code path runs, nothing is written.
FAST = ["benchmark=split_digits", "train.epochs=10", "train.batch_size=32", "logger.mode=disabled"]
# FAST for the lab-run processes of tests about other things than W&B: no W&B at all,
# which spares each process W&B's import (two seconds of CPU); the W&B path is tested in
# process (FAST) and, written to disk, in test_wandb
CLI = [*(o for o in FAST if not o.startswith("logger")), "logger=none"]


def compose_config(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


@pytest.fixture
def compose_cfg():
    return compose_config


def run_here(overrides: list[str], run_dir: Path) -> dict:
    """lab-run's run of `overrides` in this process: the uninterrupted reference a resumed
    or preempted lab-run is compared with (the same config, seed and thread count give the
    same matrix in either; a process of its own would only add its start, ~6 s)."""
    from lab.experiment import run_experiment

    return run_experiment(validate(compose_config(overrides)), run_dir)


@pytest.fixture
def fast_config():
    """A validated config for split digits, with extra overrides."""

    def make(*overrides: str) -> dict:
        return validate(compose_config([*FAST, *overrides]))

    return make


# The modules whose tests are whole lab-run processes or sweeps (tens of seconds each)
SLOW_MODULES = {"test_cluster", "test_resume", "test_run", "test_wandb", "test_faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: under `make test`'s workers (work stealing) the long runs then
    overlap each other, and the short tests fill the gaps, instead of one long run
    starting last and the suite waiting for it alone. The order within each part is kept."""

    def slow(item: pytest.Item) -> bool:
        module = item.module.__name__ if item.module is not None else ""
        named = "extending" in item.name or "lab_run" in item.name
        return item.get_closest_marker("e2e") is not None or module in SLOW_MODULES or named

    items.sort(key=lambda item: not slow(item))
