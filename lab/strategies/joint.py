"""Joint (cumulative) training: on task i, train on the union of tasks 0..i.

The usual upper bound of continual learning: nothing is forgotten through the data,
since every earlier task is still in the training set (the "Cumulative" strategy of
Avalanche; "joint" in van de Ven et al. 2022 when evaluated at the end).
"""

from __future__ import annotations

from lab.data import Task
from lab.strategies.base import Batch, Strategy


class Joint(Strategy):
    name = "joint"

    def training_data(self, task: Task, seen: list[Task]) -> Batch:
        return Batch.concat([Batch.of(t) for t in seen])
