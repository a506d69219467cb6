"""Experience replay (Chaudhry et al. 2019, "On tiny episodic memories in continual
learning", Algorithm 1).

A memory M of `mem_size` samples (lab.strategies.memory). At every step the batch B of
the current task is joined by a batch B_M of `replay_batch_size` samples drawn uniformly
from M, and the step minimises the cross-entropy over their union,

    L = 1/(|B| + |B_M|) * sum_{(x, y) in B ∪ B_M} CE(f(x), y),

after which, with policy=reservoir (the paper's), the samples of B are offered to M by
reservoir sampling; with policy=class_balanced, M is refilled at the end of each task with
an equal share per class. The first step of the stream has an empty memory and trains on
B alone. mem_size=0 is naive fine-tuning, bit for bit (the memory's draws come from the
strategy's own generator).
"""

from __future__ import annotations

from typing import Any

from lab.data import Task
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy
from lab.strategies.memory import Memory, check_rehearsal


class Replay(Strategy):
    name = "replay"

    def __init__(
        self, mem_size: int = 200, replay_batch_size: int | None = None, policy: str = "reservoir"
    ):
        check_rehearsal(mem_size, replay_batch_size, policy)
        self.replay_batch_size = replay_batch_size
        self.memory = Memory(mem_size, policy)

    def rehearse(self, batch: Batch) -> Batch:
        replayed = self.memory.sample(self.replay_batch_size or len(batch), self.generator)
        if self.memory.policy == "reservoir":
            self.memory.offer(batch, self.generator)
        return batch if replayed is None else Batch.concat([batch, replayed])

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if self.memory.policy == "class_balanced":
            self.memory.rebalance(Batch.of(task), self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory.load_state_dict(state["memory"])
