"""RanPAC: a random projection of frozen pre-trained features, and a ridge readout.

McDonnell et al. (2023), "RanPAC: Random projections and pre-trained models for continual
learning", NeurIPS, arXiv 2307.02251, sec. 3-4 (eq. 3-5, Algorithm 1); as LAMDA-PILOT's
models/ranpac.py and Mammoth's models/ranpac.py (models/ranpac_utils/) compute it.

1. Optionally (strategy.adapt, the references' default), first-session adaptation: a PEFT
   module of a ViT (finetune.mode=adapter, vpt or ssf), or the whole backbone (full: PILOT's
   ranpac.py on a plain backbone), trained on the first task alone with a
   trainable cosine head, as APER's (lab.strategies.aper); then everything is frozen.
2. The frozen features f(x) (width d) are projected by a fixed random W (d x M, entries
   N(0, 1), M = strategy.projection) through the paper's nonlinearity:

       h(x) = relu(f(x) W)

3. After each task t, the running Gram matrix and class sums grow by its training samples
   (y one-hot over the stream's classes):

       G <- G + sum_i h_i h_i^T        (M x M)
       C <- C + sum_i h_i y_i^T        (M x classes)

   and the readout is the ridge solution, logits = h W_out (the paper's and Mammoth's):

       W_out = (G + lambda I)^-1 C

   lambda is chosen after each task from the grid {10^-8, ..., 10^8}, as both references
   choose it: the task's samples in a random order, a ridge fitted on the first 80% of them
   alone, and the lambda whose readout gives the least mean squared error against the
   one-hot targets on the other 20% (the first on ties).

G, C and the solve are float32, as the references hold them (torch.zeros, torch.randn):
at M = 10000, G is 400 MB. W and W_out are in the model's state; G, C and the lambdas
chosen in the strategy's; results.json `ranpac` has the projection size and the lambdas.
A class not learnt yet scores -inf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.data import Stream, Task
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier
from lab.strategies.base import Strategy
from lab.strategies.prototypes import FirstSession, check_class_il, task_features

GRID = [10.0**k for k in range(-8, 9)]  # both references' 10.0 ** np.arange(-8, 9)
FIT_FRACTION = 0.8  # of a task's samples, what lambda's trial readouts are fitted on


def ridge(gram: Tensor, targets: Tensor, lambda_: float) -> Tensor:
    """W_out = (G + lambda I)^-1 C, by a solve (as the references: steadier than an inverse)."""
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + lambda_ * eye, targets)


def choose_lambda(h: Tensor, y: Tensor, grid: list[float] = GRID) -> tuple[float, list[float]]:
    """The grid value whose ridge readout, fitted on the first 80% of the rows of (h, y),
    has the least mean squared error on the rest; and the error of each value."""
    fit = int(len(h) * FIT_FRACTION)
    gram, targets = h[:fit].T @ h[:fit], h[:fit].T @ y[:fit]
    errors = [F.mse_loss(h[fit:] @ ridge(gram, targets, lam), y[fit:]).item() for lam in grid]
    best = min(range(len(grid)), key=lambda i: (errors[i], i))
    return grid[best], errors


class RandomProjectionHead(nn.Module):
    """logits = relu(f W) W_out for the classes learnt, -inf for the others."""

    def __init__(self, width: int, classes: int, size: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("projection", torch.randn(width, size, generator=generator))
        self.register_buffer("readout", torch.zeros(size, classes))
        self.register_buffer("known", torch.zeros(classes, dtype=torch.bool))
        self.out_features = classes

    @property
    def weight(self) -> Tensor:  # the engine reads its device (train.seen_classes_only)
        return self.readout

    def expand(self, features: Tensor) -> Tensor:
        """h = relu(f W)."""
        return F.relu(features @ self.projection.to(features.dtype))

    def forward(self, features: Tensor) -> Tensor:
        logits = self.expand(features) @ self.readout.to(features.dtype)
        return logits.masked_fill(~self.known, float("-inf"))


class RanPAC(Strategy):
    name = "ranpac"
    scenarios = ("class",)  # lab.config refuses the others in one line

    def __init__(self, projection: int = 10000, adapt: bool = True):
        if isinstance(projection, bool) or not isinstance(projection, int) or projection < 1:
            raise ConfigError(
                f"strategy.projection={projection!r} is invalid; valid: an integer >= 1 "
                "(the random projection's size M; the paper's 10000)"
            )
        if not isinstance(adapt, bool):
            raise ConfigError(f"strategy.adapt={adapt!r} is invalid; valid: true, false")
        self.projection, self.adapt = projection, adapt
        self.first: int | None = None
        self.gram: Tensor | None = None  # G
        self.targets: Tensor | None = None  # C
        self.lambdas: list[float] = []  # chosen after each task

    def attach(self, model: Classifier, stream: Stream) -> None:
        check_class_il(model, self.name)
        if self.adapt:
            self.first = stream.tasks[0].id
        device = next(model.backbone.parameters()).device
        width, classes = model.backbone.out_features, model.heads[0].out_features
        head = RandomProjectionHead(width, classes, self.projection, self.generator)
        if self.adapt:
            first = sorted(stream.tasks[0].outputs)
            head = FirstSession(width, classes, first, head, self.generator)
        else:
            model.requires_grad_(False)  # nothing trains: the features are phi's
        model.heads[0] = head.to(device)
        self.gram = torch.zeros(self.projection, self.projection, device=device)
        self.targets = torch.zeros(self.projection, classes, device=device)

    def train_steps(self, task: Task, steps: int) -> int:
        return steps if self.adapt and task.id == self.first else 0

    @staticmethod
    def readout_head(model: Classifier) -> RandomProjectionHead:
        head = model.heads[0]
        return head.final if isinstance(head, FirstSession) else head

    def split_order(self, samples: int) -> Tensor:
        """The order of a task's samples that lambda's 80/20 split cuts (PILOT's and
        Mammoth's shuffled loader's), drawn from the strategy's generator."""
        return torch.randperm(samples, generator=self.generator)

    @torch.no_grad()
    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if task.id == SOURCE:  # the pre-training source is not a class of the stream
            return
        head = model.heads[0]
        if isinstance(head, FirstSession) and not head.adapted:
            head.adapted.fill_(True)  # the first session is over: everything frozen
            model.requires_grad_(False)
        readout = self.readout_head(model)
        h = readout.expand(task_features(model, task))
        y = F.one_hot(task.train_y, readout.out_features).to(h.dtype)
        self.gram += h.T @ h
        self.targets += h.T @ y
        order = self.split_order(len(h)).to(h.device)
        lambda_, _ = choose_lambda(h[order], y[order])
        readout.readout.copy_(ridge(self.gram, self.targets, lambda_))
        readout.known[sorted(task.outputs)] = True
        self.lambdas.append(lambda_)

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        return {
            "ranpac": {
                "projection": self.projection,
                "lambdas": self.lambdas,  # chosen after each task
                "grid": GRID,
                "adapted": self.adapt,
                "dtype": str(self.gram.dtype).removeprefix("torch."),
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "first": self.first,
            "gram": self.gram,
            "targets": self.targets,
            "lambdas": list(self.lambdas),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.first = state["first"]
        self.gram, self.targets = state["gram"], state["targets"]
        self.lambdas = list(state["lambdas"])
