"""A backbone with the output heads a scenario needs, and weight initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Classifier(nn.Module):
    """Backbone followed by one linear head per entry of `head_sizes`.

    Single-head scenarios (domain, class) pass one size and ignore the task id. In
    task-IL there is one head per task; `forward(x, task_ids)` takes one task id for
    the whole batch (an int) or one per sample (a tensor: joint training mixes tasks).
    With one id per sample the heads may differ in width, so the logits are padded to
    the widest head with -inf, which softmax maps to probability 0.
    """

    def __init__(self, backbone: nn.Module, head_sizes: list[int]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(backbone.out_features, n) for n in head_sizes)

    @property
    def multi_head(self) -> bool:
        return len(self.heads) > 1

    def forward(self, x: Tensor, task_ids: int | Tensor | None = None) -> Tensor:
        return self.classify(self.backbone(x), task_ids)

    def classify(self, features: Tensor, task_ids: int | Tensor | None = None) -> Tensor:
        """The logits of the heads for `task_ids` on the backbone's `features`."""
        if not self.multi_head:
            return self.heads[0](features)
        if task_ids is None:
            raise ValueError("a multi-head (task-IL) model needs the task id")
        if isinstance(task_ids, int):
            return self.heads[task_ids](features)
        width = max(head.out_features for head in self.heads)
        logits = features.new_full((len(features), width), float("-inf"))
        for t in task_ids.unique().tolist():
            rows = task_ids == t
            logits[rows, : self.heads[t].out_features] = self.heads[t](features[rows])
        return logits


INITIALISATIONS = ("default", "kaiming", "xavier")


@torch.no_grad()
def initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise the weights of every Linear and Conv2d layer.

    default: PyTorch's own (kaiming-uniform with a=sqrt(5)); kaiming: He et al. 2015
    normal, fan-in, for ReLU; xavier: Glorot & Bengio 2010 uniform. Biases start at 0
    under kaiming and xavier.
    """
    if scheme == "default":
        return
    if scheme not in INITIALISATIONS:
        raise ValueError(f"unknown initialisation {scheme!r}; valid: {', '.join(INITIALISATIONS)}")
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
