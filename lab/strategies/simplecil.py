"""SimpleCIL: a frozen pre-trained model and a prototype per class.

Zhou et al. (2023), "Revisiting class-incremental learning with pre-trained models:
generalizability and adaptivity are all you need", arXiv 2303.07338, sec. 4; as
LAMDA-PILOT's models/simplecil.py and backbone/linears.py (CosineLinear) compute it.

With the frozen backbone phi, the prototype of class c is the mean of the features of its
training samples (taken in eval mode, the training set made as the test set is: PILOT's
mode="test" loader for this pass):

    p_c = 1 / n_c * sum_{i: y_i = c} phi(x_i)

and a sample is classified by the cosine to the prototypes, scaled by sigma (PILOT's
CosineLinear's, 1: it is never trained):

    logits_c(x) = sigma * cos(phi(x), p_c),     y_hat = argmax_c logits_c(x)

Nothing trains (train_steps is 0 on every task); the head is as wide as the stream's
classes, and a class with no prototype yet scores -inf (lab.strategies.prototypes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.data import Stream, Task
from lab.models import SOURCE, Classifier
from lab.strategies.base import Strategy
from lab.strategies.prototypes import PrototypeHead, check_class_il, task_features


class SimpleCIL(Strategy):
    name = "simplecil"
    scenarios = ("class",)  # lab.config refuses the others in one line

    def attach(self, model: Classifier, stream: Stream) -> None:
        check_class_il(model, self.name)
        model.requires_grad_(False)  # everything frozen: the heads too
        model.heads[0] = PrototypeHead(model.backbone.out_features, model.heads[0].out_features)
        model.heads[0].to(next(model.backbone.parameters()).device)

    def train_steps(self, task: Task, steps: int) -> int:
        return 0

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if task.id == SOURCE:  # the pre-training source is not a class of the stream
            return
        head = model.heads[0]
        head.add(task_features(model, task), task.train_y, sorted(task.outputs))

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        head = model.heads[0]
        return {
            "simplecil": {
                "prototypes": int(head.known.sum()),
                "feature_width": head.weight.shape[1],
                "scale": head.scale,
            }
        }
