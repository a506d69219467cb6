"""WiSE-FT: weight-space ensembles of the pre-trained and the fine-tuned model.

Wortsman et al. (2022), "Robust fine-tuning of zero-shot models", CVPR, eq. 1:

    theta_alpha = (1 - alpha) * theta_0 + alpha * theta_ft

theta_0 is the backbone at the start of the stream (after pretrain=, with the regime's
adapters), theta_ft after fine-tuning. Sequential WiSE-FT: after each task the backbone is
moved back to theta_alpha with `alpha` (strategy.alpha), and the next task fine-tunes from
there; alpha = 1 is plain fine-tuning, alpha = 0 keeps the pre-trained backbone (a linear
probe of it, the heads still train). After the last task the curve over alpha in
{0, 0.1, ..., 1} between theta_0 and the final backbone is evaluated without retraining,
on the stream's tasks and on the pre-training source (results.json `wise_ft_curve`): at
alpha = 0 it gives the source accuracy before the stream exactly.

What is interpolated: every floating tensor of the backbone's state (weights and
BatchNorm statistics, as the paper's code interpolates the state dict). The heads are new
to the stream (there is no zero-shot head to move toward) and keep their fine-tuned
weights. LoRA's delta (alpha/r) B A is interpolated exactly by moving B alone: B starts at
0, so (1 - a) * 0 + a * B scales the delta by a, while moving A too would scale it by a
quadratic in a.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Strategy

CURVE = [round(0.1 * i, 1) for i in range(11)]


def interpolated(start: dict[str, Tensor], end: dict[str, Tensor], alpha: float):
    """(1 - alpha) * start + alpha * end for each tensor of `start` but LoRA's A, which
    stays at its `end` value (see the module's docstring)."""
    return {
        n: end[n] if ".lora_A." in n else torch.lerp(s0, end[n].to(s0.dtype), alpha)
        for n, s0 in start.items()
    }


class WiSEFT(Strategy):
    name = "wise_ft"

    def __init__(self, alpha: float = 0.5):
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
            raise ConfigError(f"strategy.alpha={alpha!r} is invalid; valid: a number in [0, 1]")
        self.alpha = float(alpha)
        self.start: dict[str, Tensor] | None = None  # theta_0

    @staticmethod
    def _floating(model: Classifier) -> dict[str, Tensor]:
        return {
            n: t.detach().clone()
            for n, t in model.backbone.state_dict().items()
            if t.is_floating_point()
        }

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if self.start is None:
            self.start = self._floating(model)

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if self.start is None:  # the pre-training source, before the stream: nothing yet
            return
        self._load(model, interpolated(self.start, self._floating(model), self.alpha))

    @staticmethod
    @torch.no_grad()
    def _load(model: Classifier, values: dict[str, Tensor]) -> None:
        state = model.backbone.state_dict()
        for n, value in values.items():
            state[n].copy_(value)

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        """The WiSE-FT curve of the final backbone: per alpha, each task's accuracy, their
        mean and the source's; the model is left as it was."""
        if self.start is None:
            return {}
        final = self._floating(model)
        curve = []
        for alpha in CURVE:
            self._load(model, interpolated(self.start, final, alpha))
            scored = evaluate(tasks + ([source] if source is not None else []))
            accuracies = scored[: len(tasks)]
            curve.append(
                {
                    "alpha": alpha,
                    "accuracies": accuracies,
                    "acc": sum(accuracies) / len(accuracies),
                    "source": scored[-1] if source is not None else None,
                }
            )
        self._load(model, final)
        return {"wise_ft_curve": curve}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.start = state["start"]
