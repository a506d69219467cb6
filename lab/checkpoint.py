"""Resume a run after its last completed task.

After every task the run saves, atomically, `checkpoint.pt` in its run dir: the model,
the strategy's state (EWC's Fisher and anchors, LwF's teacher, L2's anchor, its
generator), the batch-order generator, the global RNG states and results.json's content
so far. The optimizer is not saved: the engine makes a fresh one for every task, so no
optimizer state crosses a task boundary. Restoring all of this before the next task
makes the rest of the run identical, bit for bit on the CPU, to an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
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
    side through set_rng_states), or None."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    # our own file: it holds the LwF teacher as a module, so it is not weights-only
    return torch.load(path, map_location=device, weights_only=False)
