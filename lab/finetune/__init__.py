"""How much of the model may move while it learns the stream, and how fast.

finetune.mode
  full          every parameter trains.
  freeze        the first `freeze` layer groups of the backbone (an int), or the modules
                named in `freeze` (a list, e.g. [backbone.layers.1]), are frozen.
  linear_probe  the backbone is frozen; only the heads train.
  lora          low-rank adapters (Hu et al. 2022, via peft) on the backbone's Linear and
                Conv2d layers (`lora.targets`, null: all of them): W x + (alpha/r) B A x
                with A (r x in) and B (out x r, starting at 0) trainable, W frozen. The heads
                train in full.

Layer groups are the backbone's, from input to output, as its family groups them (MLP:
each Linear; CNN: each conv, then the Linear; ResNet-18: the stem, then the four stages;
a timm model: timm's group_matcher, e.g. a ViT's stem, then each block).

Learning rates (discriminative fine-tuning, Howard & Ruder 2018): the heads train at
lr * head_lr_scale; backbone group g, counted from the top (g = 0 next to the heads), at
lr * backbone_lr_scale * layer_decay^g.

Progressive unfreezing (same paper): with `unfreeze_every` = N, each task starts with the
backbone frozen and one more group, from the top, is unfrozen every N epochs; groups the
mode freezes stay frozen. At the end of the task all of them are trainable again, so
that EWC's Fisher and L2's anchor cover what the mode trains.

Frozen parameters have requires_grad=False, so they get no gradient, no momentum and no
weight decay, and stay bit for bit as they were; EWC, L2 and LwF act on what trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lab.errors import ConfigError
from lab.models import Classifier, backbone_groups
from lab.models.groups import LayerGroup

MODES = ("full", "freeze", "linear_probe", "lora")


@dataclass
class Finetune:
    mode: str = "full"
    freeze: int | list[str] = 1
    lora: dict[str, Any] = field(
        default_factory=lambda: {"rank": 8, "alpha": 16, "dropout": 0.0, "targets": None}
    )
    head_lr_scale: float = 1.0
    backbone_lr_scale: float = 1.0
    layer_decay: float = 1.0
    unfreeze_every: int | None = None


def layer_groups(model: Classifier) -> list[tuple[str, LayerGroup]]:
    """(name, group) of the backbone's layer groups, from input to output, as its family
    groups them (lab.models.groups)."""
    return [(group.name, group) for group in backbone_groups(model.backbone)]


def _frozen_modules(model: Classifier, settings: Finetune) -> list[nn.Module | LayerGroup]:
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


def _lora_targets(model: Classifier, settings: Finetune) -> list[str]:
    """The backbone's Linear/Conv2d layers that LoRA adapts: the family's default (all of
    them; a timm model's but its first convolution, e.g. a ViT's patch_embed.proj), or
    those `lora.targets` names. A target names a layer, or every layer whose name ends
    with it (peft's rule: attn.qkv is blocks.0.attn.qkv, blocks.1.attn.qkv, ...)."""
    backbone = model.backbone
    layers = [
        name
        for name, module in backbone.named_modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    ]
    targets = settings.lora["targets"]
    if targets is None:
        default = getattr(backbone, "lora_targets", None)
        if default is None:
            return layers
        return default()
    chosen = []
    for target in targets:
        matched = [n for n in layers if n == target or n.endswith("." + target)]
        if not matched:
            shown = ", ".join(layers[:12]) + (", ..." if len(layers) > 12 else "")
            raise ConfigError(
                f"finetune.lora.targets has {target!r}, not a Linear/Conv2d of the backbone "
                f"nor the end of one's name; valid: {shown}"
            )
        chosen += [n for n in matched if n not in chosen]
    return chosen


def apply(model: Classifier, settings: Finetune) -> None:
    """Freeze what the mode freezes, or add the LoRA adapters; once, before the stream."""
    for module in _frozen_modules(model, settings):
        module.requires_grad_(False)
    if settings.mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model  # seconds to import: only here

        lora = settings.lora
        config = LoraConfig(
            r=lora["rank"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=_lora_targets(model, settings),
        )
        inject_adapter_in_model(config, model.backbone)  # freezes the base weights


def trainable(model: Classifier) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def param_groups(model: Classifier, settings: Finetune, lr: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, each with its learning rate (trainable only)."""
    groups = [
        {
            "params": [p for p in m.parameters() if p.requires_grad],
            "lr": lr * settings.head_lr_scale,
        }
        for m in (model.heads, model.source_head)
        if m is not None
    ]
    seen = {id(p) for g in groups for p in g["params"]}
    for depth, (_, module) in enumerate(reversed(layer_groups(model))):
        scale = settings.backbone_lr_scale * settings.layer_decay**depth
        params = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        groups.append({"params": params, "lr": lr * scale})
        seen.update(id(p) for p in params)
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    groups.append({"params": rest, "lr": lr * settings.backbone_lr_scale})
    # one group per learning rate: the optimizer steps group by group, and every update is
    # the parameter's own, so merging changes no number, only the per-step overhead
    by_lr: dict[float, list[torch.nn.Parameter]] = {}
    for group in groups:
        by_lr.setdefault(group["lr"], []).extend(group["params"])
    return [{"params": params, "lr": rate} for rate, params in by_lr.items() if params]


def unfreeze(model: Classifier, settings: Finetune, epoch: int | None) -> None:
    """Progressive unfreezing at `epoch` of a task (None: the end of the task, all groups
    the mode trains are trainable). Call only with settings.unfreeze_every set."""
    frozen = {id(p) for m in _frozen_modules(model, settings) for p in m.parameters()}
    groups = list(reversed(layer_groups(model)))  # from the top
    open_groups = len(groups) if epoch is None else epoch // settings.unfreeze_every
    for depth, (_, module) in enumerate(groups):
        for name, p in module.named_parameters():
            if id(p) in frozen or (settings.mode == "lora" and "lora_" not in name):
                continue
            p.requires_grad_(depth < open_groups)
