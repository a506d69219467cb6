"""ssf: scaling and shifting of a ViT's features (Lian et al. 2022, "Scaling & shifting your
features: a new baseline for efficient model tuning", NeurIPS), the backbone frozen.

After each operation it follows, a feature x of width d (per token, or per channel of the
patch embedding's convolution) becomes

    y = gamma * x + beta,        gamma, beta in R^d, learned

The ops are where LAMDA-PILOT's backbone/vit_ssf.py places them: the patch embedding's
projection (and its norm, where it has one), each block's norm1 and norm2, its
attention's qkv and proj, its MLP's fc1 and fc2, and the final norm. gamma starts at 1 and
beta at 0, so the model starts as the same function (PILOT draws gamma ~ N(1, 0.02),
beta ~ N(0, 0.02): vit_ssf.py init_ssf_scale_shift; docs/ptm-proto.md). The pairs live
under the module they follow (e.g. blocks.0.attn.qkv.ssf.scale) and are applied by forward
hooks, so timm's weights keep their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lab.finetune.registry import Mode, register, vit_of
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune


class ScaleShift(nn.Module):
    """gamma * x + beta over the feature axis: the last one, or the channels (dim 1) of a
    convolution's NCHW output."""

    def __init__(self, width: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))
        self.shift = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4 and x.shape[1] == len(self.scale) and x.shape[-1] != len(self.scale):
            return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        return x * self.scale + self.shift

    def after(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        """Forward hook of the op it follows."""
        return self(output)


def _width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    return module.normalized_shape[0]  # a LayerNorm


def targets(vit: nn.Module) -> list[nn.Module]:
    """The ops an SSF pair follows, in PILOT's vit_ssf.py order."""
    ops = [vit.patch_embed.proj]
    if isinstance(getattr(vit.patch_embed, "norm", None), nn.LayerNorm):
        ops.append(vit.patch_embed.norm)
    for block in vit.blocks:
        ops += [block.norm1, block.attn.qkv, block.attn.proj, block.norm2]
        ops += [block.mlp.fc1, block.mlp.fc2]
    ops.append(vit.norm)
    return ops


def apply(model: Classifier, settings: Finetune) -> None:
    vit = vit_of(model.backbone)
    model.backbone.requires_grad_(False)
    for op in targets(vit):
        op.ssf = ScaleShift(_width(op))
        op.register_forward_hook(op.ssf.after)


def _is_vit(backbone: nn.Module) -> bool:
    vit = vit_of(backbone)
    if vit is None or not hasattr(vit, "patch_embed") or not isinstance(vit.norm, nn.LayerNorm):
        return False
    return all(
        hasattr(b.attn, "qkv") and hasattr(b.mlp, "fc1") and hasattr(b.mlp, "fc2")
        for b in vit.blocks
    )


VIT = "a timm vision transformer (e.g. model=timm model.arch=test_vit)"

register(Mode("ssf", apply, VIT, _is_vit, adds_modules=True, order=10))
