"""ia3: learned rescaling vectors (Liu et al. 2022, "(IA)^3"), through peft.

The backbone is frozen; learned vectors l (starting at 1) rescale activations
elementwise. In a transformer block, the attention's keys and values and the MLP's
inner activation:

    softmax(Q (l_k * K)^T / sqrt(d)) (l_v * V),      (l_ff * gamma(W_1 x)) W_2

With peft's IA3 a target layer's output is rescaled, y = l * (W x), and a
"feed-forward" target's input, y = W (l * x). On a timm ViT the targets are each
block's attn.qkv (timm fuses q, k and v in one layer, so its vector rescales q too: 3 d
entries a block, where the paper has 2 d) and mlp.fc2 as feed-forward (its input is
gamma(W_1 x)). On a Hugging Face encoder (model=hf) the targets are peft's own for its
model type (BERT, RoBERTa: key, value and output.dense, the last as feed-forward). On
another backbone every layer LoRA would adapt has its output rescaled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lab.finetune.lora import default_targets
from lab.finetune.registry import Mode, register, vit_of
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune


def targets(backbone: nn.Module) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules), names in the backbone."""
    vit = vit_of(backbone)
    model_type = getattr(
        getattr(getattr(backbone, "encoder", None), "config", None), "model_type", None
    )
    if vit is None and model_type is not None:  # a transformers encoder: peft's own choice
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
        )
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
        )

        if model_type in TARGETS:  # BERT, RoBERTa: key, value and the MLP's output.dense
            return list(TARGETS[model_type]), list(FEEDFORWARD.get(model_type, []))
    if vit is None:
        return default_targets(backbone), []
    attention = [f"model.blocks.{i}.attn.qkv" for i in range(len(vit.blocks))]
    feedforward = [f"model.blocks.{i}.mlp.fc2" for i in range(len(vit.blocks))]
    return attention + feedforward, feedforward


def apply(model: Classifier, settings: Finetune) -> None:
    from peft import IA3Config, inject_adapter_in_model  # seconds to import: only here

    target, feedforward = targets(model.backbone)
    config = IA3Config(target_modules=target, feedforward_modules=feedforward)
    inject_adapter_in_model(config, model.backbone)  # freezes the base weights


def _has_layers(backbone: nn.Module) -> bool:
    return bool(targets(backbone)[0])


register(Mode("ia3", apply, "Linear or Conv2d layers", _has_layers, adds_modules=True, order=4))
