"""Resume a run after its last completed task.

After every task the run saves, atomically, `checkpoint.pt` in its run dir: the model,
the strategy's state (EWC's Fisher sums and anchor, L2's anchor, its generator; LwF's teacher
is the model itself at the start of the next task), the batch-order and augmentation
generators, the global RNG states and results.json's content so far. The optimizer is not
saved: the engine makes a fresh one for every task, so no optimizer state crosses a task
boundary. Restoring all of this before the next task makes the rest of the run identical,
bit for bit on the CPU, to an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab.errors import brief

CHECKPOINT = "checkpoint.pt"
SAVED = ("model", "strategy", "generator", "augment_generator", "results", "rng")

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        # as a tensor, so that the checkpoint loads weights-only (no numpy pickles)
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` (plus the RNG states) to run_dir/checkpoint.pt atomically."""
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{CHECKPOINT}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({**state, "rng": rng_states()}, tmp)
        os.replace(tmp, Path(run_dir) / CHECKPOINT)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint of run_dir with its tensors on `device` (RNG states stay on the CPU
    side through set_rng_states), or None: none there, or one that cannot be read (cut
    short by a full disk, a copy gone wrong), which is reported in one warning line."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        # tensors, numbers, strings and containers only: it loads weights-only, and so does
        # pretrain=file from it
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        missing = [key for key in SAVED if key not in checkpoint]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except Exception as error:  # noqa: BLE001 - whatever is wrong with it, it cannot be used
        log.warning(
            "%s cannot be read (%s); the run starts again from its first task (its results "
            "so far cannot be trusted without the model that made them)",
            path,
            brief(error),
        )
        return None
    return checkpoint
