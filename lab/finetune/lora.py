"""lora: low-rank adapters (Hu et al. 2022), through peft, on any backbone.

On each adapted Linear (or Conv2d) layer W, frozen:

    h = W x + (alpha / r) B A x,     A: r x in (random), B: out x r (zero at the start)

so the model starts as the same function; A and B train, and the heads in full. The
layers are the backbone's Linear/Conv2d layers (`lora.targets`; null: the family's
default, all of them but a timm model's first convolution, e.g. a ViT's patch embedding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lab.errors import ConfigError
from lab.finetune.registry import Mode, register
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune


def default_targets(backbone: nn.Module) -> list[str]:
    """The family's adapted layers (backbone.lora_targets()), or every Linear/Conv2d."""
    default = getattr(backbone, "lora_targets", None)
    if default is not None:
        return default()
    return [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def lora_targets(model: Classifier, settings: Finetune) -> list[str]:
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
        return default_targets(backbone)
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
    from peft import LoraConfig, inject_adapter_in_model  # seconds to import: only here

    lora = settings.lora
    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora_targets(model, settings),
    )
    inject_adapter_in_model(config, model.backbone)  # freezes the base weights


register(Mode("lora", apply, adds_modules=True, order=3))
