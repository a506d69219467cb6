"""Layer groups: a backbone's parameters from input to output, in the pieces that
fine-tuning acts on (freeze k groups, layer-wise lr decay, progressive unfreezing) and
that CKA reads (the output of each group).

A family says what its groups are: the lab's own models, each parameterised child of
their `layers`; a timm model, timm's own grouping (`group_matcher`: a ViT's stem and
each block; a ResNet's or ConvNeXt's stem and each stage).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn


@dataclass
class LayerGroup:
    """A group's name, the parameters it holds and the module whose output it produces."""

    name: str
    params: list[tuple[str, nn.Parameter]]  # (name within the model, parameter)
    output: nn.Module

    def parameters(self) -> Iterator[nn.Parameter]:
        return (p for _, p in self.params)

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return iter(self.params)

    def requires_grad_(self, requires_grad: bool = True) -> LayerGroup:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self


def sequential_groups(layers: nn.Sequential, prefix: str) -> list[LayerGroup]:
    """Each parameterised child of `layers`, named `prefix.i` (e.g. backbone.layers.1)."""
    return [
        LayerGroup(f"{prefix}.{name}", list(module.named_parameters()), module)
        for name, module in layers.named_children()
        if any(True for _ in module.parameters())
    ]
