"""A backbone with the output heads a scenario needs, and weight initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

SOURCE = -1  # the task id of the pre-training source (lab.pretrain), which has its own head


class Classifier(nn.Module):
    """Backbone followed by one linear head per entry of `head_sizes`.

    Single-head scenarios (domain, class) pass one size and ignore the task id. In
    task-IL there is one head per task; `forward(x, task_ids)` takes one task id for
    the whole batch (an int) or one per sample (a tensor: joint training mixes tasks).
    With one id per sample the heads may differ in width, so the logits are padded to
    the widest head with -inf, which softmax maps to probability 0.

    With `source_classes`, a separate head serves the pre-training source (task id
    SOURCE) in every scenario: the stream never trains it, so its accuracy on the source
    measures what the backbone still knows (Li & Hoiem 2016's old-task head).
    """

    def __init__(self, backbone: nn.Module, head_sizes: list[int], source_classes: int = 0):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(backbone.out_features, n) for n in head_sizes)
        self.source_head = (
            nn.Linear(backbone.out_features, source_classes) if source_classes else None
        )
        # (backbone, x, task_ids) -> features, where the backbone's modules depend on the
        # task (lab.finetune.per_task); None: the backbone alone
        self.select_features = None

    @property
    def multi_head(self) -> bool:
        return len(self.heads) > 1

    def head(self, task_id: int) -> nn.Linear:
        if task_id == SOURCE:
            return self.source_head
        return self.heads[task_id if self.multi_head else 0]

    def forward(self, x: Tensor, task_ids: int | Tensor | None = None) -> Tensor:
        return self.classify(self.features(x, task_ids), task_ids)

    def features(self, x: Tensor, task_ids: int | Tensor | None = None) -> Tensor:
        """The backbone's output on x, for the task(s) of `task_ids` where the backbone
        has modules per task (finetune.per_task); the backbone alone otherwise."""
        if self.select_features is None:
            return self.backbone(x)
        return self.select_features(self.backbone, x, task_ids)

    def classify(self, features: Tensor, task_ids: int | Tensor | None = None) -> Tensor:
        """The logits of the heads for `task_ids` on the backbone's `features`."""
        if isinstance(task_ids, int):
            return self.head(task_ids)(features)
        if task_ids is None:
            if self.multi_head:
                raise ValueError("a multi-head (task-IL) model needs the task id")
            return self.heads[0](features)
        heads = {t: self.head(t) for t in task_ids.unique().tolist()}
        width = max(head.out_features for head in heads.values())
        logits = features.new_full((len(features), width), float("-inf"))
        for t, head in heads.items():
            rows = task_ids == t
            logits[rows, : head.out_features] = head(features[rows])
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
