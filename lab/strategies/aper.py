"""APER (a.k.a. ADAM): first-session adaptation, then prototypes of the pre-trained and the
adapted model's features together.

Zhou et al. (2023), "Revisiting class-incremental learning with pre-trained models:
generalizability and adaptivity are all you need", arXiv 2303.07338, sec. 5 (eq. 5-6); as
LAMDA-PILOT's models/aper_adapter.py, aper_vpt.py and aper_ssf.py compute it.

1. First session (the stream's first task only): the pre-trained model phi is adapted
   into phi*, with finetune.mode's PEFT module of a ViT (adapter, vpt or ssf: PILOT's
   backbone/vit_adapter.py, vpt.py, vit_ssf.py) or by fine-tuning all of it (full: APER-
   Finetune, PILOT's models/aper_finetune.py), with a trainable cosine head over the first
   task's classes (PILOT's CosineLinear: sigma * cos(phi*(x), w_c), w and sigma trained),
   by cross-entropy.
2. Then everything is frozen and the feature of x is the concatenation of the pre-trained
   model's and the adapted model's (width 2d):

       f(x) = [phi(x), phi*(x)]

   The prototype of every class c of every task (the first one's too) is the mean of f
   over its training samples, and

       logits_c(x) = sigma * cos(f(x), p_c),    sigma = 1 (PILOT's new CosineLinear's)

No step is taken after the first task (train_steps is 0). The frozen copy of phi is made
in attach, before the regime's modules exist (model.frozen_backbone); a class with no
prototype yet scores -inf.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lab.data import Stream, Task
from lab.models import SOURCE, Classifier
from lab.strategies.base import Strategy
from lab.strategies.prototypes import (
    FirstSession,
    PrototypeHead,
    check_class_il,
    task_features,
)


def concatenated(frozen: nn.Module, head: FirstSession) -> Callable[..., Tensor]:
    """Classifier.select_features of APER: phi*(x) during the first session, then
    [phi(x), phi*(x)] (`frozen` is phi, the backbone the regime adapted is phi*). The
    pre-training source's own head (task id SOURCE) reads phi*(x), the features it was
    trained on as the adaptation has moved them: its column is what the adapted backbone
    keeps of the source (phi keeps all of it, by construction)."""

    def features(backbone: nn.Module, x: Tensor, task_ids: Any) -> Tensor:
        if not head.adapted or (isinstance(task_ids, int) and task_ids == SOURCE):
            return backbone(x)
        return torch.cat([frozen(x), backbone(x)], dim=1)

    return features


class APER(Strategy):
    name = "aper"
    scenarios = ("class",)  # lab.config refuses the others in one line

    def __init__(self) -> None:
        self.first: int | None = None  # the id of the stream's first task

    def attach(self, model: Classifier, stream: Stream) -> None:
        check_class_il(model, self.name)
        self.first = stream.tasks[0].id
        device = next(model.backbone.parameters()).device
        width, classes = model.backbone.out_features, model.heads[0].out_features
        model.frozen_backbone = copy.deepcopy(model.backbone).requires_grad_(False)
        final = PrototypeHead(2 * width, classes)
        first = sorted(stream.tasks[0].outputs)
        model.heads[0] = FirstSession(width, classes, first, final, self.generator).to(device)
        model.select_features = concatenated(model.frozen_backbone, model.heads[0])

    def train_steps(self, task: Task, steps: int) -> int:
        return steps if task.id == self.first else 0

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if task.id == SOURCE:  # the pre-training source is not a class of the stream
            return
        head = model.heads[0]
        if not head.adapted:  # the first session is over: everything frozen from here on
            head.adapted.fill_(True)
            model.requires_grad_(False)
        head.final.add(task_features(model, task), task.train_y, sorted(task.outputs))

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        final = model.heads[0].final
        return {
            "aper": {
                "feature_width": final.weight.shape[1],  # 2d: [phi(x), phi*(x)]
                "prototypes": int(final.known.sum()),
                "scale": final.scale,
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "first": self.first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.first = state["first"]
