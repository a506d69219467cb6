"""The heads the pre-trained-model learners share (SimpleCIL, APER, RanPAC): class-mean
prototypes scored by cosine, and first-session adaptation's cosine classifier.

A class-IL head here is as wide as all the stream's classes; a class the method has not
built yet (no prototype, no ridge column) scores -inf, so it never wins (LAMDA-PILOT's head
holds the classes seen so far alone: utils/inc_net.py update_fc). Before any class is built,
every output is -inf and the argmax is output 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.features import features_of

# what first-session adaptation trains (finetune.mode): the whole backbone (PILOT's
# models/aper_finetune.py, and its ranpac.py on a plain backbone) or a PEFT module of a ViT
# (its _adapter, _vpt and _ssf backbones)
ADAPTATION_MODES = ("full", "adapter", "vpt", "ssf")


def cosine(features: Tensor, weight: Tensor) -> Tensor:
    """cos(f, w_c) for every row f of `features` and w_c of `weight` (PILOT's CosineLinear:
    F.normalize's eps 1e-12 makes a zero row's cosine 0)."""
    return F.linear(F.normalize(features, p=2, dim=1), F.normalize(weight, p=2, dim=1))


def class_means(features: Tensor, labels: Tensor, classes: list[int]) -> Tensor:
    """p_c = mean of the features of the samples of label c, one row per class."""
    return torch.stack([features[labels == c].mean(0) for c in classes])


class CosineClassifier(nn.Module):
    """logits_c = sigma * cos(f, w_c), w and sigma trained (PILOT backbone/linears.py
    CosineLinear: w ~ U(-1/sqrt(d), 1/sqrt(d)), sigma = 1 at the start)."""

    def __init__(self, width: int, classes: int, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(width)
        weight = torch.rand(classes, width, generator=generator) * 2 * bound - bound
        self.weight = nn.Parameter(weight)
        self.sigma = nn.Parameter(torch.ones(1))

    def forward(self, features: Tensor) -> Tensor:
        return self.sigma * cosine(features, self.weight)


class PrototypeHead(nn.Module):
    """logits_c = scale * cos(f, p_c) for a class c with a prototype, -inf otherwise. The
    scale is PILOT's: its CosineLinear's sigma, 1 at the start and never trained after the
    prototypes replace its weights (SimpleCIL trains nothing; APER's dual-branch head is a
    new CosineLinear: utils/inc_net.py construct_dual_branch_network)."""

    def __init__(self, width: int, classes: int, scale: float = 1.0):
        super().__init__()
        self.register_buffer("weight", torch.zeros(classes, width))  # the prototypes p_c
        self.register_buffer("known", torch.zeros(classes, dtype=torch.bool))
        self.scale = scale
        self.out_features = classes

    def forward(self, features: Tensor) -> Tensor:
        logits = self.scale * cosine(features, self.weight.to(features.dtype))
        return logits.masked_fill(~self.known, float("-inf"))

    @torch.no_grad()
    def add(self, features: Tensor, labels: Tensor, classes: list[int]) -> None:
        """The prototypes of `classes`, from the features of their samples."""
        self.weight[classes] = class_means(features, labels, classes).to(self.weight.dtype)
        self.known[classes] = True


class FirstSession(nn.Module):
    """A head that first adapts: until `adapted`, first-session adaptation's cosine
    classifier over the first task's classes (the rest -inf, as PILOT's head then has those
    alone); after it, the method's own head `final`."""

    def __init__(self, width: int, classes: int, first: list[int], final: nn.Module, gen):
        super().__init__()
        self.adapt = CosineClassifier(width, classes, gen)
        self.final = final
        mask = torch.ones(classes, dtype=torch.bool)
        mask[first] = False
        self.register_buffer("outside_first", mask)
        self.register_buffer("adapted", torch.zeros((), dtype=torch.bool))
        self.out_features = classes

    @property
    def weight(self) -> Tensor:  # the engine reads its device (train.seen_classes_only)
        return self.adapt.weight

    def forward(self, features: Tensor) -> Tensor:
        if self.adapted:
            return self.final(features)
        return self.adapt(features).masked_fill(self.outside_first, float("-inf"))


def check_class_il(model: Classifier, strategy: str) -> None:
    if model.multi_head:
        raise ConfigError(f"strategy={strategy} is class-incremental; valid: scenario=class")


def task_features(model: Classifier, task: Task) -> Tensor:
    """The task's training features, as PILOT's prototype pass takes them: the model in eval
    mode, its training set made as the test set is (no augmentation)."""
    return features_of(model, task.train_x)
