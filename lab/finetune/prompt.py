"""Prompt tuning of a Hugging Face encoder (Lester et al. 2021), through peft.

`finetune.virtual_tokens` trainable embeddings P are prepended to every text's input
embeddings, [P; E(x)], and the encoder's own weights stay frozen; the features are pooled
over the text's own positions (lab.models.hf_peft). model=hf only: a vision transformer's
prompts are finetune.mode=vpt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lab.finetune.registry import Mode, register

if TYPE_CHECKING:
    from lab.finetune import Finetune
    from lab.models import Classifier


def apply(model: Classifier, settings: Finetune) -> None:
    from lab.models.hf_peft import add_virtual_tokens

    add_virtual_tokens(model.backbone, "prompt", settings.virtual_tokens)


def is_text(backbone: nn.Module) -> bool:
    """A Hugging Face encoder (model=hf, lab.models.hf_backbone): it has a tokenizer."""
    return getattr(backbone, "tokenizer", None) is not None


register(Mode("prompt", apply, "a Hugging Face encoder (model=hf)", is_text, order=9))
