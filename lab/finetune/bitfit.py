"""bitfit: the bias terms alone train (Ben Zaken et al. 2022), and the heads.

Every layer keeps its weights W frozen and trains its bias b:

    h = W x + b,     W frozen, b trainable

(the backbone's every parameter named `bias`: its Linear and Conv2d layers', and its
normalisation layers' shifts). It applies to any backbone that has bias terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lab.finetune.registry import Mode, register
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune


def is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias")


def apply(model: Classifier, settings: Finetune) -> None:
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(is_bias(name))


def has_biases(backbone: nn.Module) -> bool:
    return any(is_bias(n) for n, _ in backbone.named_parameters())


register(Mode("bitfit", apply, "bias terms", has_biases, adds_modules=True, order=5))
