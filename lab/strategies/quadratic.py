"""The quadratic penalty of SI and MAS: after each task a strategy keeps the weights theta*
and an importance Omega per weight, and the next tasks' loss gets

    lambda * sum_i Omega_i (theta_i - theta*_i)^2

(lambda=0 is naive fine-tuning). EWC's is the same quadratic with the Fisher as Omega and
a 1/2, kept per task (lab.strategies.ewc); L2's has Omega = 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy


class Anchored(Strategy):
    """The penalty, with `importance` and `anchor` set by a subclass's after_task."""

    def __init__(self, lambda_: float):
        if not isinstance(lambda_, int | float) or lambda_ < 0:
            raise ConfigError(f"strategy.lambda={lambda_!r} is invalid; valid: a number >= 0")
        self.lambda_ = float(lambda_)
        self.importance: dict[str, Tensor] = {}  # Omega
        self.anchor: dict[str, Tensor] = {}  # theta*

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        if not self.anchor:
            return ce
        return ce + self.lambda_ * quadratic_penalty(model, self.importance, self.anchor)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.importance, self.anchor = state["importance"], state["anchor"]


def quadratic_penalty(
    model: Classifier, importance: dict[str, Tensor], anchor: dict[str, Tensor]
) -> Tensor:
    """sum_i Omega_i (theta_i - theta*_i)^2 over the anchored parameters."""
    params = dict(model.named_parameters())  # all: progressive unfreezing hides some
    names = list(anchor)
    if not names:  # everything it would anchor is frozen
        return torch.zeros(())
    return _Quadratic.apply(
        [importance[n] for n in names], [anchor[n] for n in names], *(params[n] for n in names)
    )


class _Quadratic(torch.autograd.Function):
    """sum Omega (theta - theta*)^2 and its gradient 2 Omega (theta - theta*), over all the
    parameters at once (torch._foreach): a third of autograd's elementwise passes, which
    on a CPU cost as much as the model's step."""

    @staticmethod
    def forward(ctx, importance, anchor, *params):
        difference = torch._foreach_sub(params, anchor)
        weighted = torch._foreach_mul(difference, importance)
        ctx.weighted = weighted
        dots = [
            torch.dot(d.flatten(), w.flatten()) for d, w in zip(difference, weighted, strict=True)
        ]
        return torch.stack(dots).sum()

    @staticmethod
    def backward(ctx, grad):
        grads = torch._foreach_mul(ctx.weighted, 2 * grad)
        needed = ctx.needs_input_grad[2:]
        return None, None, *(g if need else None for g, need in zip(grads, needed, strict=True))
