"""Optimizers for each task: SGD (with momentum), Adam, AdamW, and SGD with decoupled
weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class OptimizerSettings:
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    # None: the optimizer's own kind (coupled for sgd and adam, decoupled for adamw)
    decoupled_weight_decay: bool | None = None


class SGDW(torch.optim.SGD):
    """SGD with decoupled weight decay (Loshchilov & Hutter 2019): before each SGD step,
    theta <- theta - lr * weight_decay * theta, outside the momentum, as AdamW does."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float):
        super().__init__(params, lr=lr, momentum=momentum)
        self.decoupled_weight_decay = weight_decay

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * self.decoupled_weight_decay)
        return super().step(closure)


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | list[dict[str, Any]], settings: OptimizerSettings
):
    """A fresh optimizer. The engine makes one per task, as Avalanche and FACIL do, so that
    momentum and Adam's moments from one task do not push the next one.

    Weight decay is coupled (added to the gradient, i.e. an L2 term in the loss) or
    decoupled (a shrinkage step of its own); Adam with decoupled decay is AdamW, and AdamW
    with coupled decay is Adam with weight_decay. `params` may be parameter groups with
    their own "lr" (lab.finetune.param_groups).
    """
    params = list(params)
    if not params or not isinstance(params[0], dict):  # parameter groups come as they are
        params = [p for p in params if p.requires_grad]
    s = settings
    if s.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {s.name!r}; valid: {', '.join(OPTIMIZERS)}")
    decoupled = s.decoupled_weight_decay
    if decoupled is None:
        decoupled = s.name == "adamw"
    if s.name == "sgd":
        if decoupled:
            return SGDW(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    adam = torch.optim.AdamW if decoupled else torch.optim.Adam
    return adam(params, lr=s.lr, weight_decay=s.weight_decay)
