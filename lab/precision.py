"""Speed on a GPU: mixed precision and torch.compile, as train.precision and train.compile.

train.precision
  auto  bf16 on a GPU that supports it (Ampere and later), fp32 otherwise (the CPU);
  bf16  autocast to bfloat16: matrix products and convolutions in bf16, the rest in fp32;
  fp16  autocast to float16, with a GradScaler (loss scaling) against underflow;
  fp32  no autocast.
Only the training step's forward and loss, and evaluation, run under autocast. The
parameters, optimizer states and gradients stay fp32, and so does everything computed
outside those: EWC's Fisher, MAS's and SI's importances, probes, CKA and every metric.

train.compile compiles the backbone in place (nn.Module.compile: the state_dict keeps its
keys, so checkpoints and weights files do not change); where compilation fails, the run
says so in one line and goes on eagerly.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' made concrete for `device`; the others as they are."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of `precision` on `device` (nothing for fp32)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16's loss scaler; a disabled one (scale 1, plain step) for the others."""
    precision = resolve_precision(precision, device)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compile_backbone(backbone: nn.Module, sample: torch.Tensor) -> bool:
    """Compile `backbone` in place and try it on `sample`; on failure, one warning and the
    eager backbone. Returns whether it runs compiled."""
    was_training = backbone.training
    backbone.eval()  # the trial must not move batch-norm statistics
    try:
        backbone.compile()
        with torch.no_grad():
            backbone(sample)
    except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly
        backbone._compiled_call_impl = None  # nn.Module.compile's switch, undone
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        log.warning(
            "train.compile=true: torch.compile failed (%s: %s); training runs uncompiled",
            type(error).__name__,
            first[:200],
        )
        return False
    finally:
        backbone.train(was_training)
    return True
