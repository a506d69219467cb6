"""vpt: visual prompt tuning (Jia et al. 2022) for a ViT, the backbone frozen.

P learned prompt tokens (`vpt.tokens`) are inserted after the prefix tokens (the class
token, and any registers) of the token sequence [x_cls; E] a block reads:

    shallow:  [x_1; Z_1; E_1] = L_1([x_0; P; E_0])
              [x_i; Z_i; E_i] = L_i([x_{i-1}; Z_{i-1}; E_{i-1}])     i = 2..N
    deep:     [x_i; _; E_i]   = L_i([x_{i-1}; P_{i-1}; E_{i-1}])     i = 1..N (new prompts)

and removed after the last block, so that the final norm and the pooling read the
sequence the ViT has without them: the class token's feature x_N, or the mean over the
patch tokens E_N, never a prompt's output. The prompts start uniform in +-sqrt(6 / (3 p^2
+ d)) (Xavier over a p x p patch's pixels and the width d, as the paper's code does);
they live in the blocks that read them (blocks.i.prompt.tokens) and are put in by
forward hooks, so timm's weights keep their names.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lab.finetune.registry import Mode, register, vit_of
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune

KINDS = ("shallow", "deep")


class Prompts(nn.Module):
    """The prompt tokens a block reads: inserted (the first block) or replacing those of
    the block before (deep VPT's other blocks)."""

    def __init__(self, tokens: int, width: int, prefix: int, patch: int, insert: bool):
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch * patch + width))
        self.tokens = nn.Parameter(torch.empty(1, tokens, width).uniform_(-bound, bound))
        self.prefix, self.insert = prefix, insert

    def before(self, block: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Forward pre-hook of its block: [prefix; P; patches] in, its prompts in place."""
        x, p = args[0], self.prefix
        prompts = self.tokens.expand(len(x), -1, -1).to(x.dtype)
        rest = x[:, p:] if self.insert else x[:, p + self.tokens.shape[1] :]
        return (torch.cat([x[:, :p], prompts, rest], dim=1), *args[1:])

    def remove(self, block: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        """Forward hook of the last block: the sequence without the prompts' outputs."""
        p = self.prefix
        return torch.cat([output[:, :p], output[:, p + self.tokens.shape[1] :]], dim=1)


def apply(model: Classifier, settings: Finetune) -> None:
    options = settings.vpt
    vit = vit_of(model.backbone)
    model.backbone.requires_grad_(False)
    patch = vit.patch_embed.patch_size[0]
    blocks = vit.blocks if options["kind"] == "deep" else vit.blocks[:1]
    for i, block in enumerate(blocks):
        block.prompt = Prompts(
            options["tokens"], vit.embed_dim, vit.num_prefix_tokens, patch, insert=i == 0
        )
        block.register_forward_pre_hook(block.prompt.before)
    vit.blocks[-1].register_forward_hook(vit.blocks[0].prompt.remove)


def _is_vit(backbone: nn.Module) -> bool:
    vit = vit_of(backbone)
    return vit is not None and hasattr(vit, "patch_embed") and hasattr(vit, "embed_dim")


VIT = "a timm vision transformer (e.g. model=timm model.arch=test_vit)"

register(Mode("vpt", apply, VIT, _is_vit, adds_modules=True, order=7))
