"""full, freeze and linear_probe: what trains is a subset of the model's own parameters.

full          every parameter trains.
freeze        the first `freeze` layer groups of the backbone (an int), or the modules
              named in `freeze` (a list, e.g. [backbone.layers.1]), are frozen.
linear_probe  the backbone is frozen; only the heads train.

Layer groups are the backbone's, from input to output, as its family groups them (MLP:
each Linear; CNN: each conv, then the Linear; ResNet-18: the stem, then the four stages;
a timm model: timm's group_matcher, e.g. a ViT's stem, then each block).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lab.errors import ConfigError
from lab.finetune.registry import Mode, register
from lab.models import Classifier, backbone_groups
from lab.models.groups import LayerGroup

if TYPE_CHECKING:
    from lab.finetune import Finetune


def layer_groups(model: Classifier) -> list[tuple[str, LayerGroup]]:
    """(name, group) of the backbone's layer groups, from input to output, as its family
    groups them (lab.models.groups)."""
    return [(group.name, group) for group in backbone_groups(model.backbone)]


def frozen_modules(model: Classifier, settings: Finetune) -> list[nn.Module | LayerGroup]:
    """What full, freeze and linear_probe freeze (nothing for the other modes)."""
    groups = layer_groups(model)
    if settings.mode == "linear_probe":
        return [model.backbone]
    if settings.mode != "freeze":
        return []
    if isinstance(settings.freeze, int):
        if not 0 <= settings.freeze <= len(groups):
            raise ConfigError(
                f"finetune.freeze={settings.freeze} is invalid; valid: 0..{len(groups)} (the "
                f"backbone's layer groups: {', '.join(n for n, _ in groups)}), or a list of them"
            )
        return [module for _, module in groups[: settings.freeze]]
    modules = dict(model.named_modules())
    for name in settings.freeze:
        if name not in modules or name == "":
            raise ConfigError(
                f"finetune.freeze has {name!r}, not a module of the model; valid: "
                f"{', '.join(n for n, _ in groups)} (or any other module name)"
            )
    return [modules[name] for name in settings.freeze]


def apply(model: Classifier, settings: Finetune) -> None:
    for module in frozen_modules(model, settings):
        module.requires_grad_(False)


register(Mode("full", apply, order=0))
register(Mode("freeze", apply, order=1))
register(Mode("linear_probe", apply, order=2))
