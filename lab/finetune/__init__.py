"""How much of the model may move while it learns the stream, and how fast.

finetune.mode, one module of this package each (its equation in its docstring):

  full, freeze, linear_probe   a subset of the model's own parameters (freezing.py)
  lora      low-rank adapters, through peft (lora.py)
  ia3       learned rescaling of keys, values and the MLP's activation, through peft (ia3.py)
  bitfit    the bias terms alone (bitfit.py)
  adapter   bottleneck adapters, AdaptFormer's parallel or Houlsby's sequential (adapter.py)
  vpt       visual prompt tokens, shallow or deep (vpt.py)
  prefix    prefix keys and values in the attention (prefix.py; model=hf: peft's)
  prompt    prompt tuning of a Hugging Face encoder, through peft (prompt.py)
  ssf       a learned scale and shift after a ViT's ops (SSF, Lian et al. 2022; ssf.py)

Each registers itself (registry.py) with the backbones it applies to, and is refused in
one line elsewhere. In every mode the heads train in full. `finetune.per_task` keeps one
set of a mode's modules per task (per_task.py).

Learning rates (discriminative fine-tuning, Howard & Ruder 2018): the heads train at
lr * head_lr_scale; backbone group g, counted from the top (g = 0 next to the heads), at
lr * backbone_lr_scale * layer_decay^g (modules outside the groups, e.g. the per-task
sets: lr * backbone_lr_scale).

Progressive unfreezing (same paper): with `unfreeze_every` = N, each task starts with the
backbone frozen and one more group, from the top, is unfrozen every N epochs; what the
mode freezes stays frozen. At the end of the task all of them are trainable again, so
that EWC's Fisher and L2's anchor cover what the mode trains.

LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features and underperform
out-of-distribution"): with `lp_epochs` = N, each task first trains its heads alone for N
epochs (a linear probe on the features as they are: plain cross-entropy, the rest of the
model frozen; lab.engine.linear_probe), then the model as the mode says, with the
strategy. The paper fits the probe to convergence (logistic regression) and fine-tunes
from it; N epochs of the configured optimizer stand in for that.

Frozen parameters have requires_grad=False, so they get no gradient, no momentum and no
weight decay, and stay bit for bit as they were; EWC, L2 and LwF act on what trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lab.errors import ConfigError
from lab.finetune import (
    adapter,
    bitfit,
    freezing,
    ia3,
    lora,
    per_task,
    prefix,
    prompt,
    ssf,
    vpt,
)
from lab.finetune.freezing import frozen_modules, layer_groups
from lab.finetune.registry import REGISTRY, Mode, check, modes, register
from lab.models import Classifier

MODES = modes()
ADAPTER_KINDS = adapter.KINDS
VPT_KINDS = vpt.KINDS


@dataclass
class Finetune:
    mode: str = "full"
    freeze: int | list[str] = 1
    lora: dict[str, Any] = field(
        default_factory=lambda: {"rank": 8, "alpha": 16, "dropout": 0.0, "targets": None}
    )
    adapter: dict[str, Any] = field(
        default_factory=lambda: {"dim": 16, "kind": "parallel", "scale": 0.1}
    )
    vpt: dict[str, Any] = field(default_factory=lambda: {"tokens": 5, "kind": "shallow"})
    prefix: dict[str, Any] = field(default_factory=lambda: {"tokens": 5})
    virtual_tokens: int = 20  # model=hf's prompt and prefix modes (peft)
    per_task: bool = False
    head_lr_scale: float = 1.0
    backbone_lr_scale: float = 1.0
    layer_decay: float = 1.0
    unfreeze_every: int | None = None
    lp_epochs: int = 0  # LP-FT: epochs of the heads alone before each task (lab.engine)


def per_task_modes() -> list[str]:
    return [m for m in MODES if REGISTRY[m].adds_modules]


def check_model(model: Classifier, settings: Finetune) -> None:
    """ConfigError in one line where the mode does not apply to the model's backbone, or
    per_task to its heads; before anything trains."""
    check(model.backbone, settings.mode)
    if settings.per_task and not REGISTRY[settings.mode].adds_modules:
        raise ConfigError(
            f"finetune.per_task=true with finetune.mode={settings.mode}: that mode adds no "
            f"modules to keep per task; valid modes: {', '.join(per_task_modes())}"
        )
    if settings.per_task and not model.multi_head:
        raise ConfigError(
            "finetune.per_task=true needs the task id at test time; valid: scenario=task"
        )


def apply(model: Classifier, settings: Finetune) -> None:
    """Freeze what the mode freezes and add its modules (one set per task with per_task);
    once, before the stream."""
    check_model(model, settings)
    REGISTRY[settings.mode].apply(model, settings)
    if settings.per_task:
        per_task.apply(model)
    # what the mode trains: progressive unfreezing opens nothing else
    model.finetune_trains = frozenset(n for n, p in model.named_parameters() if p.requires_grad)


def trainable(model: Classifier) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def count_trainable(model: Classifier) -> dict[str, int]:
    """results.json's trainable_parameters: in the backbone (its own and the mode's
    modules), in the heads (the stream's and the source's), and in all."""
    backbone = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"backbone_modules": backbone, "heads": total - backbone, "total": total}


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
    trains = getattr(model, "finetune_trains", None)
    if trains is None:  # never applied: what full, freeze and linear_probe leave trainable
        frozen = {id(p) for m in frozen_modules(model, settings) for p in m.parameters()}
        trains = {n for n, p in model.named_parameters() if id(p) not in frozen}
    ids = {id(p) for n, p in model.named_parameters() if n in trains}
    groups = list(reversed(layer_groups(model)))  # from the top
    open_groups = len(groups) if epoch is None else epoch // settings.unfreeze_every
    for depth, (_, module) in enumerate(groups):
        for p in module.parameters():
            if id(p) in ids:
                p.requires_grad_(depth < open_groups)


__all__ = [
    "ADAPTER_KINDS",
    "MODES",
    "REGISTRY",
    "VPT_KINDS",
    "Finetune",
    "Mode",
    "apply",
    "bitfit",
    "check_model",
    "count_trainable",
    "freezing",
    "ia3",
    "layer_groups",
    "lora",
    "param_groups",
    "prefix",
    "prompt",
    "register",
    "ssf",
    "trainable",
    "unfreeze",
]
