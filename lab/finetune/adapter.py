"""adapter: bottleneck adapters in a ViT's blocks, the backbone frozen.

An adapter maps a token h of width d through a bottleneck of width r (`adapter.dim`):

    A(h) = W_up act(W_down h),     W_down: r x d, W_up: d x r (zero at the start)

`adapter.kind`:

- parallel (AdaptFormer, Chen et al. 2022): beside each block's MLP, scaled by s
  (`adapter.scale`), on the MLP's input x' = LN(x):

      x_out = x + MLP(LN(x)) + s * A(LN(x)),     act = ReLU

- sequential (Houlsby et al. 2019): after each block's attention and after its MLP,
  with a residual of its own; the blocks' layer norms train too, as the paper's do:

      y = f(h) + A(f(h)),     f = attention or MLP,     act = GELU

W_up starts at zero, so each adapter's branch is zero and the model starts as the same
function. The adapters sit beside timm's modules (forward hooks; the weights keep their
names), under each block: blocks.i.mlp.adapter, blocks.i.attn.adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from lab.finetune.registry import Mode, register, vit_of
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.finetune import Finetune

KINDS = ("parallel", "sequential")


class Adapter(nn.Module):
    """scale * W_up act(W_down h), W_up zero at the start."""

    def __init__(self, width: int, dim: int, scale: float, activation: nn.Module):
        super().__init__()
        self.down = nn.Linear(width, dim)
        self.act = activation
        self.up = nn.Linear(dim, width)
        self.scale = scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.scale * self.up(self.act(self.down(h)))

    def beside(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        """Forward hook of the module it runs beside (parallel): f(x) + A(x)."""
        return output + self(args[0])

    def after(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        """Forward hook of the module it follows (sequential): f(x) + A(f(x))."""
        return output + self(output)


def apply(model: Classifier, settings: Finetune) -> None:
    options = settings.adapter
    vit = vit_of(model.backbone)
    model.backbone.requires_grad_(False)
    for block in vit.blocks:
        width = block.mlp.fc1.in_features if hasattr(block.mlp, "fc1") else vit.embed_dim
        if options["kind"] == "parallel":
            block.mlp.adapter = Adapter(width, options["dim"], options["scale"], nn.ReLU())
            block.mlp.register_forward_hook(block.mlp.adapter.beside)
            continue
        for name in ("attn", "mlp"):
            sublayer = getattr(block, name)
            sublayer.adapter = Adapter(width, options["dim"], 1.0, nn.GELU())
            sublayer.register_forward_hook(sublayer.adapter.after)
        for norm in (block.norm1, block.norm2):
            norm.requires_grad_(True)


def _is_vit(backbone: nn.Module) -> bool:
    return vit_of(backbone) is not None


VIT = "a timm vision transformer (e.g. model=timm model.arch=test_vit)"

register(Mode("adapter", apply, VIT, _is_vit, adds_modules=True, order=6))
