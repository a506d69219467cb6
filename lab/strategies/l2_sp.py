"""L2-SP: an L2 penalty toward the pre-trained weights, the starting point.

Li, Grandvalet & Davoine (2018), "Explicit inductive bias for transfer learning with
convolutional networks", ICML, eq. 3:

    Omega(w) = alpha/2 * ||w_S - w_S^0||^2  +  beta/2 * ||w_Sbar||^2

w_S are the parameters of the pre-trained part (the backbone), w_S^0 their values at the
start of the stream (after pretrain=, with the fine-tuning regime's adapters: LoRA's
start at B = 0, so what moves is anchored at no change), and w_Sbar the parameters that
are new to the target (the stream's heads), decayed toward zero. The anchor is the
starting point for the whole stream, never a later task's weights (that is lab's `l2`,
Kirkpatrick et al.'s baseline). The pre-training source's head is in neither term: the
stream never trains it. The paper's defaults for ResNet fine-tuning: alpha = 0.1,
beta = 0.01.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy


def _strength(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"strategy.{name}={value!r} is invalid; valid: a number >= 0")
    return float(value)


class L2SP(Strategy):
    name = "l2_sp"

    def __init__(self, alpha: float = 0.1, beta: float = 0.01):
        self.alpha = _strength("alpha", alpha)
        self.beta = _strength("beta", beta)
        self.start: dict[str, Tensor] | None = None  # w_S^0: the backbone at the stream's start

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if self.start is None:
            self.start = {
                n: p.detach().clone()
                for n, p in model.backbone.named_parameters()
                if p.requires_grad  # what the regime trains
            }

    def penalty(self, model: Classifier) -> tuple[Tensor, Tensor]:
        """(||w_S - w_S^0||^2, ||w_Sbar||^2), without the halves and strengths."""
        params = dict(model.backbone.named_parameters())
        toward_start = sum(
            (params[n] - start).square().sum()
            for n, start in self.start.items()
            if params[n].requires_grad
        )
        heads = sum(p.square().sum() for p in model.heads.parameters() if p.requires_grad)
        return toward_start, heads

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        toward_start, heads = self.penalty(model)
        return ce + self.alpha / 2 * toward_start + self.beta / 2 * heads

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.start = state["start"]
