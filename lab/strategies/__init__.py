"""Forgetting-mitigation strategies, one file each, behind the hooks of `base.Strategy`."""

from __future__ import annotations

import inspect
import keyword
import math

from lab.errors import ConfigError
from lab.strategies.agem import AGEM
from lab.strategies.aper import APER
from lab.strategies.base import Batch, Strategy
from lab.strategies.coda_prompt import CODAPrompt
from lab.strategies.der import DER
from lab.strategies.dualprompt import DualPrompt
from lab.strategies.ewc import EWC, OnlineEWC
from lab.strategies.joint import Joint
from lab.strategies.l2 import L2
from lab.strategies.l2_sp import L2SP
from lab.strategies.l2p import L2P
from lab.strategies.lwf import LwF
from lab.strategies.mas import MAS
from lab.strategies.naive import Naive
from lab.strategies.ranpac import RanPAC
from lab.strategies.replay import Replay
from lab.strategies.si import SI
from lab.strategies.simplecil import SimpleCIL
from lab.strategies.slca import SLCA
from lab.strategies.weight_decay import WeightDecay
from lab.strategies.wise_ft import WiSEFT

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        *(Naive, Joint, EWC, OnlineEWC, LwF, L2, WeightDecay, Replay, DER, AGEM, SI, MAS),
        *(SimpleCIL, APER, RanPAC),
        *(L2P, DualPrompt, CODAPrompt),  # prompts on a frozen pre-trained ViT (issue 31)
        SLCA,  # above the next line, which docs/extending.md's example patches
        *(L2SP, WiSEFT),
    )
}


def _argument(key: str) -> str:
    """A config key as a constructor argument: `lambda` is a Python keyword, so the
    constructors take `lambda_` (PEP 8's trailing underscore), configs say `lambda`."""
    return key + "_" if keyword.iskeyword(key) else key


def check_hyperparameters(name: str, params: dict) -> None:
    """ConfigError unless `name` is a strategy taking every key of `params`."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy={name!r} is not a strategy; valid: {', '.join(STRATEGIES)}")
    valid = [p.rstrip("_") for p in inspect.signature(STRATEGIES[name]).parameters]
    for key, value in params.items():
        if key not in valid:
            raise ConfigError(
                f"strategy.{key} is not a hyperparameter of {name}; "
                f"valid: {', '.join(valid) or 'none'}"
            )
        # nan compares false with every bound, so a strategy's own range check lets it in
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"strategy.{key}={value} is invalid; valid: a finite number (a strength of "
                "nan or inf makes every update non-finite)"
            )


def build_strategy(name: str, **params) -> Strategy:
    """Instantiate strategy `name` with its hyperparameters."""
    check_hyperparameters(name, params)
    return STRATEGIES[name](**{_argument(k): v for k, v in params.items()})


__all__ = [
    "AGEM",
    "APER",
    "DER",
    "EWC",
    "MAS",
    "SI",
    "L2",
    "L2SP",
    "WiSEFT",
    "SLCA",
    "L2P",
    "DualPrompt",
    "CODAPrompt",
    "RanPAC",
    "SimpleCIL",
    "Joint",
    "LwF",
    "Naive",
    "OnlineEWC",
    "Replay",
    "WeightDecay",
    "STRATEGIES",
    "Batch",
    "Strategy",
    "build_strategy",
    "check_hyperparameters",
]
