"""Forgetting-mitigation strategies, one file each, behind the hooks of `base.Strategy`."""

from __future__ import annotations

import inspect

from lab.errors import ConfigError
from lab.strategies.base import Batch, Strategy
from lab.strategies.joint import Joint
from lab.strategies.naive import Naive

STRATEGIES: dict[str, type[Strategy]] = {"naive": Naive, "joint": Joint}


def check_hyperparameters(name: str, params: dict) -> None:
    """ConfigError unless `name` is a strategy taking every key of `params`."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy={name!r} is not a strategy; valid: {', '.join(STRATEGIES)}")
    valid = [p for p in inspect.signature(STRATEGIES[name]).parameters if p != "self"]
    for key in params:
        if key not in valid:
            raise ConfigError(
                f"strategy.{key} is not a hyperparameter of {name}; "
                f"valid: {', '.join(valid) or 'none'}"
            )


def build_strategy(name: str, **params) -> Strategy:
    """Instantiate strategy `name` with its hyperparameters."""
    check_hyperparameters(name, params)
    return STRATEGIES[name](**params)


__all__ = ["STRATEGIES", "Batch", "Strategy", "build_strategy", "check_hyperparameters"]
