"""An episodic memory of training samples on the training device, for rehearsal.

Two policies fill it:

- `reservoir` (Vitter's algorithm R, as experience replay uses it: Chaudhry et al. 2019):
  every sample that passes is offered once, in order; the n-th offered (counting from
  1) is kept while the memory has room, and afterwards replaces a uniformly drawn slot
  with probability capacity / n. Every sample offered so far is then in the memory with
  the same probability, capacity / n.
- `class_balanced`: at the end of each task, every class seen so far gets an equal share
  of the capacity (the first classes one more sample when it does not divide), filled
  with a uniform draw from what the memory holds of that class, or from the task's data
  for a new class.

The memory keeps inputs, scenario targets and task ids (a Batch), and draws from the
strategy's own generator only: the global RNG never moves.
"""

from __future__ import annotations

from typing import Any

import torch

from lab.strategies.base import Batch

POLICIES = ("reservoir", "class_balanced")


class Memory:
    def __init__(self, capacity: int, policy: str = "reservoir"):
        self.capacity, self.policy = capacity, policy
        self.data: Batch | None = None  # the samples kept, at most `capacity`
        self.offered = 0  # samples offered so far (reservoir)

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data)

    def sample(self, n: int, generator: torch.Generator) -> Batch | None:
        """n samples drawn uniformly with replacement (none if the memory is empty)."""
        if not len(self) or n == 0:
            return None
        index = torch.randint(len(self), (n,), generator=generator)
        return self.data.select(index.to(self.data.y.device))

    def offer(self, batch: Batch, generator: torch.Generator) -> None:
        """Reservoir sampling over the samples of `batch`, in order."""
        if self.capacity == 0:
            return
        n, device = len(batch), batch.y.device
        room = min(n, self.capacity - len(self))
        if room:
            head = batch.select(torch.arange(room, device=device))
            self.data = head if self.data is None else Batch.concat([self.data, head])
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
        self.offered += n

    def rebalance(self, task_data: Batch, generator: torch.Generator) -> None:
        """The class-balanced update at the end of a task (module docstring). A class is a
        (task, target) pair: in task- and domain-IL the tasks share their targets."""
        if self.capacity == 0:
            return
        old = set() if self.data is None else set(_classes(self.data).tolist())
        new = sorted(set(_classes(task_data).tolist()) - old)
        share, extra = divmod(self.capacity, len(old) + len(new))
        kept = []
        for i, key in enumerate([*sorted(old), *new]):
            source = self.data if key in old else task_data
            index = (_classes(source) == key).nonzero().squeeze(1).cpu()
            quota = min(len(index), share + (i < extra))
            pick = index[torch.randperm(len(index), generator=generator)[:quota]]
            kept.append(source.select(pick.to(source.y.device)))
        self.data = Batch.concat(kept)

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
        return {"data": data, "offered": self.offered}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        data = state["data"]
        self.data = None if data is None else Batch(data["x"], data["y"], data["task_ids"])
        self.offered = state["offered"]


def _classes(batch: Batch) -> torch.Tensor:
    """One key per (task, target) pair."""
    return batch.task_ids * 1_000_000 + batch.y
