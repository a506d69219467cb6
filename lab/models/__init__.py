"""Backbones (MLP, CNN) wrapped with the scenario's output heads."""

from __future__ import annotations

from lab.models.classifier import INITIALISATIONS, SOURCE, Classifier, initialise
from lab.models.cnn import CNN
from lab.models.mlp import ACTIVATIONS, MLP
from lab.models.resnet import ResNet18

MODELS = ("mlp", "cnn", "resnet18")


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
    if name == "mlp":
        backbone = MLP(input_shape, **options)
    elif name == "cnn":
        backbone = CNN(input_shape, **options)
    elif name == "resnet18":
        backbone = ResNet18(input_shape, **options)
    else:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    model = Classifier(backbone, head_sizes, source_classes)
    if name != "resnet18" or backbone.weights is None:  # keep pre-trained weights as loaded
        initialise(model, init)
    return model


__all__ = [
    "ACTIVATIONS",
    "INITIALISATIONS",
    "MODELS",
    "SOURCE",
    "Classifier",
    "build_model",
    "initialise",
]
