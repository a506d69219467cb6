"""Backbone families, wrapped with the scenario's output heads.

A family is a class registered under its `model=` name. It is built from the stored
image shape and its config options, and says what the rest of the lab needs to know:

    backbone.out_features      the width of the features the heads read
    backbone.inputs            optional: what its inputs must look like (ModelInputs;
                               default: as stored, standardised by the training set)
    backbone.layer_groups()    optional: its parameters from input to output, in groups
                               (lab.models.groups; default: each parameterised child of
                               its nn.Sequential `layers`)
    backbone.pretrained        optional: whether it holds pre-trained weights (kept as
                               loaded; default: no)
    backbone.lora_targets()    optional: the layers LoRA adapts by default (all Linear/Conv2d)
    backbone.tokenizer         a text family's (hf): what the text benchmarks are tokenised
                               with (lab.data.text); its batches are packed token rows

Adding a family is one module and one `register` call; nothing else in the lab asks
which family it has.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lab.data.inputs import ModelInputs
from lab.models.classifier import INITIALISATIONS, SOURCE, Classifier, initialise
from lab.models.cnn import CNN
from lab.models.groups import LayerGroup, sequential_groups
from lab.models.mlp import ACTIVATIONS, MLP
from lab.models.resnet import ResNet18

FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, family: Callable[..., nn.Module]) -> None:
    """Make `family` (a class taking the input shape and its options) model=`name`."""
    FAMILIES[name] = family


def _timm(*args, **options) -> nn.Module:
    from lab.models.timm_backbone import TimmBackbone  # timm imports in ~1 s: only if asked

    return TimmBackbone(*args, **options)


def _hf(*args, **options) -> nn.Module:
    from lab.models.hf_backbone import HFBackbone  # transformers imports in ~1 s: only if asked

    return HFBackbone(*args, **options)


register("mlp", MLP)
register("cnn", CNN)
register("resnet18", ResNet18)
register("hf", _hf)
register("timm", _timm)
MODELS = tuple(FAMILIES)


def backbone_inputs(backbone: nn.Module) -> ModelInputs:
    """What the backbone's inputs must look like (its family's say, or as stored)."""
    return getattr(backbone, "inputs", None) or ModelInputs()


def backbone_groups(backbone: nn.Module) -> list[LayerGroup]:
    """The backbone's layer groups from input to output (its family's say, or each
    parameterised child of its `layers`)."""
    groups = getattr(backbone, "layer_groups", None)
    return groups() if groups is not None else sequential_groups(backbone.layers, "backbone.layers")


def build_backbone(name: str, input_shape: tuple[int, int, int], **options) -> nn.Module:
    """The backbone of family `name` for images stored as `input_shape` (C, H, W)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name](input_shape, **options)


def attach_heads(
    backbone: nn.Module, head_sizes: list[int], init: str = "default", source_classes: int = 0
) -> Classifier:
    """The backbone under one head per entry of head_sizes (and a head of
    `source_classes` outputs for the pre-training source, if any), initialised by `init`
    unless its weights are pre-trained (those are kept as loaded; the heads then keep
    PyTorch's default initialisation)."""
    model = Classifier(backbone, head_sizes, source_classes)
    if not getattr(backbone, "pretrained", False):
        initialise(model, init)
    return model


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    head_sizes: list[int],
    init: str = "default",
    source_classes: int = 0,
    **options,
) -> Classifier:
    """The backbone `name` (built from `options`) with one head per entry of head_sizes
    (and a head of `source_classes` outputs for the pre-training source, if any)."""
    backbone = build_backbone(name, input_shape, **options)
    return attach_heads(backbone, head_sizes, init, source_classes)


__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "INITIALISATIONS",
    "MODELS",
    "SOURCE",
    "Classifier",
    "attach_heads",
    "backbone_groups",
    "backbone_inputs",
    "build_backbone",
    "build_model",
    "initialise",
    "register",
]
