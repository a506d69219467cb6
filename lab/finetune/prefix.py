"""prefix: prefix tuning (Li & Liang 2021) in a ViT's attention, the backbone frozen.

Every block's attention gets P learned key and value vectors per head (`prefix.tokens`),
prepended to the keys and values its tokens make; the queries are the tokens' own, so
the sequence keeps its length:

    head_h = softmax(Q_h [P_k,h; K_h]^T / sqrt(d_h)) [P_v,h; V_h]

Li & Liang train the prefixes through an MLP reparameterisation for stability; here they
are trained directly (as LAE and Mammoth's prefix tuners do), starting at N(0, 0.02^2).
They live beside each block's attention (blocks.i.attn.prefix.keys / .values); the
attention's forward is its own computation with the prefixes concatenated (timm's
Attention: fused qkv, q/k norms, scaled dot-product attention, its out norm and proj).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.finetune.prompt import is_text
from lab.finetune.registry import Mode, register, vit_of
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune

# what a timm Attention must have for the prefix forward to be its own
ATTENTION = (
    "qkv",
    "q_norm",
    "k_norm",
    "norm",
    "proj",
    "attn_drop",
    "proj_drop",
    "num_heads",
    "head_dim",
)


class Prefix(nn.Module):
    """P keys and values per head, (heads, P, d_h) each."""

    def __init__(self, heads: int, tokens: int, head_dim: int):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(heads, tokens, head_dim) * 0.02)
        self.values = nn.Parameter(torch.randn(heads, tokens, head_dim) * 0.02)

    def attend(self, attn: nn.Module, x: Tensor, attn_mask=None, is_causal=False) -> Tensor:
        """timm's Attention.forward on x (B, N, C), the prefixes before its keys/values."""
        if attn_mask is not None or is_causal:
            raise NotImplementedError("prefix tuning here takes no attention mask")
        B = len(x)
        keys, values = (t.expand(B, -1, -1, -1) for t in (self.keys, self.values))
        return prefixed_attention(attn, x, keys, values)


def prefixed_attention(attn: nn.Module, x: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """timm's Attention.forward on x (B, N, C) with per-sample prefixes `keys` and `values`
    (B, heads, P, d_h) before the keys and values its tokens make (the prompt learners of
    lab.strategies.prompting choose a prefix per sample)."""
    B, N, _ = x.shape
    heads, dim = attn.num_heads, attn.head_dim
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(B, N, 3, heads, dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    k = torch.cat([keys.to(k.dtype), k], dim=2)
    v = torch.cat([values.to(v.dtype), v], dim=2)
    if getattr(attn, "fused_attn", False):
        dropout = attn.attn_drop.p if attn.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    else:  # the same, unfused (as timm does where fused_attn is off)
        weights = (q * dim**-0.5) @ k.transpose(-2, -1)
        x = attn.attn_drop(weights.softmax(dim=-1)) @ v
    x = attn.norm(x.transpose(1, 2).reshape(B, N, heads * dim))
    if gate is not None:
        x = x * gate
    return attn.proj_drop(attn.proj(x))


def apply(model: Classifier, settings: Finetune) -> None:
    if is_text(model.backbone):  # a transformers encoder: peft's own prefix tuning
        from lab.models.hf_peft import add_virtual_tokens

        add_virtual_tokens(model.backbone, "prefix", settings.virtual_tokens)
        return
    vit = vit_of(model.backbone)
    model.backbone.requires_grad_(False)
    for block in vit.blocks:
        attn = block.attn
        attn.prefix = Prefix(attn.num_heads, settings.prefix["tokens"], attn.head_dim)
        # an instance attribute: nn.Module calls it; deepcopy rebinds it to the copy
        attn.forward = functools.partial(attn.prefix.attend, attn)


def _has_attention(backbone: nn.Module) -> bool:
    if is_text(backbone):
        return True
    vit = vit_of(backbone)
    return vit is not None and all(all(hasattr(b.attn, a) for a in ATTENTION) for b in vit.blocks)


NEEDS = (
    "a timm vision transformer with timm's Attention (e.g. model=timm model.arch=test_vit), "
    "or a Hugging Face encoder (model=hf: peft's prefix tuning, finetune.virtual_tokens)"
)

register(Mode("prefix", apply, NEEDS, _has_attention, adds_modules=True, order=8))
