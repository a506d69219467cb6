"""An episodic memory of training samples on the training device, for rehearsal.

Three policies fill it:

- `reservoir` (Vitter's algorithm R, as experience replay uses it: Chaudhry et al. 2019):
  every sample that passes is offered once, in order; the n-th offered (counting from
  1) is kept while the memory has room, and afterwards replaces a uniformly drawn slot
  with probability capacity / n. Every sample offered so far is then in the memory with
  the same probability, capacity / n.
- `class_balanced`: at the end of each task, every class seen so far gets an equal share
  of the capacity (the first classes one more sample when it does not divide), filled
  with a uniform draw from what the memory holds of that class, or from the task's data
  for a new class.
- `per_task` (GEM's and A-GEM's episodic memory): at the end of each task, a uniform draw
  of `capacity` of its samples joins the memory, which grows by `capacity` per task.

The memory keeps inputs, scenario targets and task ids (a Batch), for DER each sample's
logits too, and draws from the strategy's own generator only: the global RNG never moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lab.errors import ConfigError
from lab.strategies.base import Batch

POLICIES = ("reservoir", "class_balanced")  # what replay and DER offer


def check_rehearsal(mem_size: int, replay_batch_size: int | None, policy: str) -> None:
    """ConfigError naming the first bad setting of replay's or DER's memory."""
    if not isinstance(mem_size, int) or isinstance(mem_size, bool) or mem_size < 0:
        raise ConfigError(f"strategy.mem_size={mem_size!r} is invalid; valid: an integer >= 0")
    if replay_batch_size is not None and (
        not isinstance(replay_batch_size, int) or replay_batch_size < 1
    ):
        raise ConfigError(
            f"strategy.replay_batch_size={replay_batch_size!r} is invalid; valid: an "
            "integer >= 1, or null (train.batch_size)"
        )
    if policy not in POLICIES:
        raise ConfigError(f"strategy.policy={policy!r} is invalid; valid: {', '.join(POLICIES)}")


class Memory:
    def __init__(self, capacity: int, policy: str = "reservoir"):
        self.capacity, self.policy = capacity, policy
        self.data: Batch | None = None  # the samples kept, at most `capacity`
        self.offered = 0  # samples offered so far (reservoir)
        self.logits: torch.Tensor | None = None  # a row per sample kept, for DER

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """The slots of n samples drawn uniformly with replacement (none if empty)."""
        if not len(self) or n == 0:
            return None
        return torch.randint(len(self), (n,), generator=generator).to(self.data.y.device)

    def sample(self, n: int, generator: torch.Generator) -> Batch | None:
        """n samples drawn uniformly with replacement (none if the memory is empty)."""
        index = self.draw(n, generator)
        return None if index is None else self.data.select(index)

    def offer(
        self, batch: Batch, generator: torch.Generator, logits: torch.Tensor | None = None
    ) -> None:
        """Reservoir sampling over the samples of `batch` (and their `logits`), in order."""
        if self.capacity == 0:
            return
        n, device = len(batch), batch.y.device
        room = min(n, self.capacity - len(self))
        if room:
            head = batch.select(torch.arange(room, device=device))
            self.data = head if self.data is None else Batch.concat([self.data, head])
            if logits is not None:
                kept = logits[:room].clone()  # the memory writes into its rows later
                self.logits = kept if self.logits is None else torch.cat([self.logits, kept])
        rest = n - room
        if rest:
            # the k-th sample offered overall (1-based) takes slot j ~ U{0..k-1} if j < capacity
            counts = torch.arange(
                self.offered + room + 1, self.offered + n + 1, dtype=torch.float64
            )
            slots = (torch.rand(rest, generator=generator, dtype=torch.float64) * counts).long()
            kept = slots < self.capacity
            # where two samples of the batch take one slot, the later one stays (in order)
            positions = torch.arange(room, n)[kept]
            slots = slots[kept]
            last = torch.full((self.capacity,), -1, dtype=torch.long)
            last.scatter_reduce_(0, slots, positions, reduce="amax")
            replaced = (last >= 0).nonzero().squeeze(1)
            source = batch.select(last[replaced].to(device))
            for field in ("x", "y", "task_ids"):
                getattr(self.data, field)[replaced.to(device)] = getattr(source, field)
            if logits is not None:
                self.logits[replaced.to(device)] = logits[last[replaced].to(device)]
        self.offered += n

    def rebalance(
        self,
        task_data: Batch,
        generator: torch.Generator,
        logits_of: Callable[[Batch], torch.Tensor] | None = None,
    ) -> None:
        """The class-balanced update at the end of a task (module docstring). A class is a
        (task, target) pair: in task- and domain-IL the tasks share their targets.
        `logits_of` gives the logits to keep with the task's samples (DER)."""
        if self.capacity == 0:
            return
        old = set() if self.data is None else set(_classes(self.data).tolist())
        new = sorted(set(_classes(task_data).tolist()) - old)
        share, extra = divmod(self.capacity, len(old) + len(new))
        kept, kept_logits = [], []
        for i, key in enumerate([*sorted(old), *new]):
            source = self.data if key in old else task_data
            index = (_classes(source) == key).nonzero().squeeze(1).cpu()
            quota = min(len(index), share + (i < extra))
            pick = index[torch.randperm(len(index), generator=generator)[:quota]]
            kept.append(source.select(pick.to(source.y.device)))
            if logits_of is not None:  # an old sample keeps its logits, a new one gets them
                logits = self.logits[pick.to(source.y.device)] if key in old else None
                kept_logits.append(logits_of(kept[-1]) if logits is None else logits)
        self.data = Batch.concat(kept)
        if logits_of is not None:
            self.logits = torch.cat(kept_logits)

    def keep_per_task(self, task_data: Batch, generator: torch.Generator) -> None:
        """The per_task update at the end of a task (module docstring)."""
        pick = torch.randperm(len(task_data), generator=generator)[: self.capacity]
        kept = task_data.select(pick.to(task_data.y.device))
        self.data = kept if self.data is None else Batch.concat([self.data, kept])

    def describe(self) -> dict[str, Any]:
        """What results.json records: capacity, policy, samples held, and per task."""
        per_task = {}
        if self.data is not None:
            ids, counts = self.data.task_ids.unique(return_counts=True)
            per_task = {str(t): c for t, c in zip(ids.tolist(), counts.tolist(), strict=True)}
        return {
            "capacity": self.capacity,
            "policy": self.policy,
            "size": len(self),
            "per_task": per_task,
        }

    def state_dict(self) -> dict[str, Any]:
        data = (
            None
            if self.data is None
            else {"x": self.data.x, "y": self.data.y, "task_ids": self.data.task_ids}
        )
        return {"data": data, "offered": self.offered, "logits": self.logits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        data = state["data"]
        self.data = None if data is None else Batch(data["x"], data["y"], data["task_ids"])
        self.offered = state["offered"]
        self.logits = state.get("logits")  # none in checkpoints before DER


def _classes(batch: Batch) -> torch.Tensor:
    """One key per (task, target) pair."""
    return batch.task_ids * 1_000_000 + batch.y
