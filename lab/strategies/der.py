"""Dark experience replay: DER and DER++.

Buzzega et al. (2020), "Dark experience for general continual learning: a strong, simple
baseline", NeurIPS, Algorithm 1 and eqs. 4-6. A memory M of `mem_size` samples keeps
each sample's logits z as the network gave them when the sample was trained on. At every
step, with B the current batch and two batches drawn independently from M,

    L = CE(f(B), y_B) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y''),
        (x', z') ~ M,   (x'', y'') ~ M,

after which the samples of B, with the logits of this step, are offered to M by
reservoir sampling (policy=reservoir, the paper's). beta=0 is DER (one memory batch),
beta>0 DER++. policy=class_balanced instead refills M at each task's end with an equal
share per class and the logits of the network at that end, in eval mode: Avalanche's DER.

The MSE is the mean over the logits both sides have: a logit the training masked with
-inf (train.seen_classes_only, or a narrower head in task-IL, padded to the widest) is
left out. mem_size=0 is naive fine-tuning, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy
from lab.strategies.memory import Memory, check_rehearsal


class DER(Strategy):
    name = "der"

    def __init__(
        self,
        mem_size: int = 200,
        replay_batch_size: int | None = None,
        alpha: float = 0.2,
        beta: float = 0.5,
        policy: str = "reservoir",
    ):
        check_rehearsal(mem_size, replay_batch_size, policy)
        for key, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"strategy.{key}={value!r} is invalid; valid: a number >= 0")
        self.replay_batch_size = replay_batch_size
        self.alpha, self.beta = float(alpha), float(beta)
        self.memory = Memory(mem_size, policy)
        self._step: tuple[Batch, Tensor | None] | None = None  # this step's B and z'

    def rehearse(self, batch: Batch) -> Batch:
        n = self.replay_batch_size or len(batch)
        for_mse = self.memory.draw(n, self.generator)
        for_ce = self.memory.draw(n, self.generator) if self.beta else None
        # z' read now: the offer after this step's forward may overwrite its slots
        self._step = (batch, None if for_mse is None else self.memory.logits[for_mse])
        drawn = [self.memory.data.select(i) for i in (for_mse, for_ce) if i is not None]
        return Batch.concat([batch, *drawn]) if drawn else batch

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        current, stored = self._step
        n = len(current)
        if self.memory.policy == "reservoir":
            self.memory.offer(current, self.generator, _widened(model, logits[:n].detach()))
        if stored is None:
            return ce
        m = len(stored)
        loss = F.cross_entropy(logits[:n], batch.y[:n])
        loss = loss + self.alpha * _mse(_widened(model, logits[n : n + m]), stored)
        if len(batch) > n + m:  # DER++
            loss = loss + self.beta * F.cross_entropy(logits[n + m :], batch.y[n + m :])
        return loss

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if self.memory.policy == "class_balanced":
            self.memory.rebalance(Batch.of(task), self.generator, lambda b: _logits(model, b))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory.load_state_dict(state["memory"])


def _widened(model: Classifier, logits: Tensor) -> Tensor:
    """Logits widened with -inf to the widest head, so that every memory row has one width."""
    width = max(head.out_features for head in model.heads)
    return F.pad(logits, (0, width - logits.shape[1]), value=float("-inf"))


@torch.no_grad()
def _logits(model: Classifier, samples: Batch) -> Tensor:
    """The network's logits for `samples` now, in eval mode, each under its task's head."""
    was_training = model.training
    model.eval()
    task_ids = samples.task_ids if model.multi_head else None
    features = model.features(samples.x, task_ids)
    logits = model.classify(features, task_ids)
    model.train(was_training)
    return _widened(model, logits)


def _mse(logits: Tensor, stored: Tensor) -> Tensor:
    """Mean squared difference over the entries finite on both sides: F.mse_loss when all
    are (computed without asking the device which, so that no step waits for it)."""
    both = logits.isfinite() & stored.isfinite()
    difference = torch.where(both, logits - stored, 0.0)
    return difference.square().sum() / both.sum()
