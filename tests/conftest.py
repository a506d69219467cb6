"""Shared fixtures: Hydra composition over conf/ and a small, fast experiment config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from lab.config import validate
from lab.run import config_dir

REPO = Path(__file__).resolve().parent.parent

# Small enough for seconds on a CPU, real enough to show forgetting.
# W&B in disabled mode: its code path runs, nothing is written.
FAST = ["benchmark=split_digits", "train.epochs=10", "train.batch_size=32", "logger.mode=disabled"]


def compose_config(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture
def fast_config():
    """A validated config for split digits, with extra overrides."""

    def make(*overrides: str) -> dict:
        return validate(compose_config([*FAST, *overrides]))

    return make
