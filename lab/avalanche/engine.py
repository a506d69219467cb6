"""engine=avalanche: the same stream, model and optimizer, trained by Avalanche's strategies.

Each of our tasks becomes an Avalanche experience built from the same tensors (task label
= task id, so task-IL strategies see task labels; 0 in domain- and class-IL). Avalanche
trains; the accuracy matrix is measured by lab.engine.evaluate after every experience, so
both engines' matrices have one definition. The optimizer's state is reset at every
experience, as the lab engine makes a fresh optimizer per task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from avalanche.benchmarks import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.models import MultiTaskModule
from avalanche.training.plugins import SupervisedPlugin
from torch import Tensor

from lab.avalanche.strategies import make_strategy
from lab.data import Stream
from lab.engine import TaskResult, evaluate, evaluate_task_masked
from lab.models import Classifier
from lab.strategies.base import penalised_parameters


class TaskAware(MultiTaskModule):
    """Our multi-head Classifier as the MultiTaskModule Avalanche routes task labels to."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward_single_task(self, x: Tensor, task_label: int) -> Tensor:
        return self.classifier(x, int(task_label))


class LossRecorder(SupervisedPlugin):
    """The training loss of every step (kept on the device until the task ends)."""

    def __init__(self):
        super().__init__()
        self.losses: list[Tensor] = []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(strategy.loss.detach().reshape(()))  # Avalanche keeps it as shape (1,)

    def pop(self) -> list[float]:
        losses, self.losses = self.losses, []
        return torch.stack(losses).tolist() if losses else []


def experiences(stream: Stream):
    datasets = [
        _make_taskaware_tensor_classification_dataset(
            task.train_x[:].cpu(),
            task.train_y.cpu(),
            task_labels=task.id if stream.scenario == "task" else 0,
        )
        for task in stream.tasks
    ]
    benchmark = benchmark_from_datasets(train=datasets)
    return with_classes_timeline(with_task_labels(benchmark)).train_stream


def train_stream(
    model: Classifier,
    stream: Stream,
    config: dict[str, Any],
    device: torch.device,
    on_task_end: Callable[[TaskResult], None] | None = None,
) -> list[list[float]]:
    """Train `model` on the stream through Avalanche's strategy for `config`; returns the
    rows of the accuracy matrix, as lab.engine.train_stream does."""
    recorder = LossRecorder()
    module = TaskAware(model) if model.multi_head else model
    prefix = "classifier." if model.multi_head else ""
    anchored = {prefix + name for name in penalised_parameters(model)}
    strategy = make_strategy(config, module, anchored, len(stream.tasks), device, [recorder])
    rows = []
    for i, experience in enumerate(experiences(stream)):
        started = time.perf_counter()
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        trained = time.perf_counter()
        row = evaluate(model, stream.tasks, config["train"]["eval_batch_size"])
        masked = None
        if stream.scenario == "class":
            masked = evaluate_task_masked(model, stream.tasks, config["train"]["eval_batch_size"])
        rows.append(row)
        if on_task_end is not None:
            seconds = trained - started, time.perf_counter() - trained
            on_task_end(TaskResult(i, row, recorder.pop(), *seconds, task_masked=masked))
    return rows
