"""Prompt tuning and prefix tuning of a Hugging Face encoder, through peft's own support
for transformers models (finetune.mode=prompt | prefix, model=hf).

    prompt  Lester et al. 2021: `virtual_tokens` trainable embeddings prepended to every
            text's input embeddings (peft's PromptTuningConfig); the features are pooled
            over the text's own positions (the prompt's are dropped).
    prefix  Li & Liang 2021: `virtual_tokens` trainable keys and values prepended in
            every layer's attention (peft's PrefixTuningConfig, past_key_values).

The encoder's own weights are frozen (peft freezes them); the heads train in full. The
prompt's parameters join the backbone's first layer group (the embeddings).
"""

from __future__ import annotations

from torch import nn

from lab.errors import ConfigError

MODES = ("prompt", "prefix")


def add_virtual_tokens(backbone: nn.Module, mode: str, virtual_tokens: int) -> None:
    """Wrap the backbone's encoder in peft's prompt or prefix tuning, once, before the stream."""
    from lab.models.hf_backbone import HFBackbone

    if not isinstance(backbone, HFBackbone):
        raise ConfigError(
            f"finetune.mode={mode} tunes a transformer's prompt; valid: model=hf, or another "
            "finetune.mode (full, freeze, linear_probe, lora)"
        )
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

    config = {"prompt": PromptTuningConfig, "prefix": PrefixTuningConfig}[mode](
        task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=virtual_tokens
    )
    backbone.encoder = get_peft_model(backbone.encoder, config)
    if mode == "prompt":
        backbone.virtual_tokens = virtual_tokens
