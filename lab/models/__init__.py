"""Backbones (MLP, CNN) wrapped with the scenario's output heads."""

from __future__ import annotations

from lab.models.classifier import INITIALISATIONS, Classifier, initialise
from lab.models.cnn import CNN
from lab.models.mlp import ACTIVATIONS, MLP

MODELS = ("mlp", "cnn")


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    head_sizes: list[int],
    init: str = "default",
    **options,
) -> Classifier:
    """The backbone `name` (built from `options`) with one head per entry of head_sizes."""
    if name == "mlp":
        backbone = MLP(input_shape, **options)
    elif name == "cnn":
        backbone = CNN(input_shape, **options)
    else:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    model = Classifier(backbone, head_sizes)
    initialise(model, init)
    return model


__all__ = ["ACTIVATIONS", "INITIALISATIONS", "MODELS", "Classifier", "build_model", "initialise"]
