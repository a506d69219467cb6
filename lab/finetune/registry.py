"""The fine-tuning modes: each registers itself here, with the backbones it applies to.

A mode is one module of lab/finetune/ that calls `register(Mode(...))`:

    register(Mode(
        name="bitfit",
        apply=apply,                 # (model, settings) -> None: freeze, add modules
        needs="a backbone with bias terms",          # said when it is refused
        supports=lambda backbone: any(...),          # which backbones it applies to
        adds_modules=True,           # finetune.per_task may keep one set per task
        order=5,                     # its place in MODES
    ))

Adding a mode (e.g. prompt tuning for a Hugging Face text backbone) is one such file and
its import in lab/finetune/__init__.py; nothing else asks which mode it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from lab.errors import ConfigError

if TYPE_CHECKING:
    from lab.models import Classifier


def _everywhere(backbone: nn.Module) -> bool:
    return True


@dataclass(frozen=True)
class Mode:
    name: str
    apply: Callable[[Classifier, Any], None]
    needs: str = "any backbone"
    supports: Callable[[nn.Module], bool] = _everywhere
    adds_modules: bool = False
    order: int = 100  # where MODES lists it (the menu's order)


REGISTRY: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    REGISTRY[mode.name] = mode
    return mode


def modes() -> tuple[str, ...]:
    return tuple(sorted(REGISTRY, key=lambda name: REGISTRY[name].order))


def describe(backbone: nn.Module) -> str:
    """The backbone as a user chose it: model=NAME (and a timm model's arch)."""
    from lab.models import FAMILIES

    arch = getattr(backbone, "arch", None)
    if arch is not None:
        return f"model=timm model.arch={arch}"
    for name, family in FAMILIES.items():
        if isinstance(family, type) and isinstance(backbone, family):
            return f"model={name}"
    return f"a {type(backbone).__name__} backbone"


def check(backbone: nn.Module, mode: str) -> None:
    """ConfigError in one line where `mode` does not apply to `backbone`."""
    chosen = REGISTRY[mode]
    if chosen.supports(backbone):
        return
    valid = [m for m in modes() if REGISTRY[m].supports(backbone)]
    raise ConfigError(
        f"finetune.mode={mode} does not apply to {describe(backbone)}: it needs "
        f"{chosen.needs}; valid there: {', '.join(valid)}"
    )


def vit_of(backbone: nn.Module) -> nn.Module | None:
    """The timm vision transformer inside a backbone (its blocks, each with attn and mlp,
    and its prefix tokens: the class token and any registers), or None."""
    model = getattr(backbone, "model", None)
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(model, "num_prefix_tokens") or not len(blocks):
        return None
    if not all(hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks):
        return None
    return model
