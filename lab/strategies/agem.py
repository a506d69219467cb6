"""Averaged gradient episodic memory (A-GEM).

Chaudhry et al. (2019), "Efficient lifelong learning with A-GEM", ICLR, eq. 11. An
episodic memory keeps `patterns_per_exp` samples of each past task. At every step, with
g the gradient of the current batch's loss and g_ref the gradient of the loss on
`sample_size` samples drawn uniformly from the memory (without replacement), the step
follows

    g~ = g - (g^T g_ref / g_ref^T g_ref) g_ref   if g^T g_ref < 0,   else g~ = g,

so that it never increases the memory's loss to first order (g~^T g_ref >= 0): one
projection over the whole parameter vector, no quadratic program (GEM's). In task-IL each
memory sample takes its own task's head, so an old head gets the projection's component
along g_ref. patterns_per_exp=0 is naive fine-tuning.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy
from lab.strategies.memory import Memory


class AGEM(Strategy):
    name = "agem"

    def __init__(self, patterns_per_exp: int = 256, sample_size: int = 256):
        for key, value, low in (
            ("patterns_per_exp", patterns_per_exp, 0),
            ("sample_size", sample_size, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"strategy.{key}={value!r} is invalid; valid: an integer >= {low}"
                )
        self.sample_size = sample_size
        self.memory = Memory(patterns_per_exp, "per_task")

    def after_backward(self, model: Classifier) -> None:
        if not len(self.memory):
            return
        index = torch.randperm(len(self.memory), generator=self.generator)[: self.sample_size]
        reference = self.memory.data.select(index.to(self.memory.data.y.device))
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.enable_grad():
            task_ids = reference.task_ids if model.multi_head else None
            features = model.features(reference.x, task_ids)
            logits = model.classify(features, task_ids)
            g_ref = torch.autograd.grad(
                F.cross_entropy(logits, reference.y), params, allow_unused=True
            )
        g = [p.grad for p in params]
        dot = sum(
            (a * r).sum() for a, r in zip(g, g_ref, strict=True) if a is not None and r is not None
        )
        if not dot < 0:  # a tensor, or 0 when no parameter has both
            return
        scale = dot / sum(r.square().sum() for r in g_ref if r is not None)
        for p, r in zip(params, g_ref, strict=True):
            if r is not None:
                p.grad = -scale * r if p.grad is None else p.grad - scale * r

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        self.memory.keep_per_task(Batch.of(task), self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory.load_state_dict(state["memory"])
