"""L2 toward the previous task's weights.

The "L2" baseline of Kirkpatrick et al. (2017, PNAS, fig. 2A) and Hsu et al. (2018,
"Re-evaluating continual learning scenarios"): while training task t,

    Omega(theta) = lambda/2 * ||theta - theta*_{t-1}||^2

anchored at the weights at the end of the previous task. It is EWC with every Fisher
entry set to 1 and only the latest anchor. Heads as in EWC: in task-IL only the shared
backbone is anchored (base.penalised_parameters).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy, penalised_parameters


class L2(Strategy):
    name = "l2"

    def __init__(self, lambda_: float = 10.0):
        if not isinstance(lambda_, int | float) or lambda_ < 0:
            raise ConfigError(f"strategy.lambda={lambda_!r} is invalid; valid: a number >= 0")
        self.lambda_ = float(lambda_)
        self.anchor: dict[str, Tensor] | None = None

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        self.anchor = {n: p.detach().clone() for n, p in penalised_parameters(model).items()}

    def penalty(self, model: Classifier) -> Tensor:
        """||theta - theta*||^2, without the lambda/2."""
        params = dict(model.named_parameters())  # all: progressive unfreezing hides some
        return sum((params[n] - anchor).square().sum() for n, anchor in self.anchor.items())

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        if self.anchor is None:
            return ce
        return ce + self.lambda_ / 2 * self.penalty(model)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.anchor = state["anchor"]
