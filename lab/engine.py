"""The lab's training engine: fit task by task, evaluate every task after each one.

Every task's tensors live on the training device; batches are drawn by indexing them
with a seeded permutation (no DataLoader, no per-sample Python work). Evaluation runs
under torch.inference_mode with large batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lab.data import Stream, Task
from lab.models import Classifier
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import Strategy


@dataclass
class TrainSettings:
    epochs: int = 1
    iterations: int | None = None  # optimizer steps per task; overrides epochs when set
    batch_size: int = 128
    eval_batch_size: int = 4096
    seen_classes_only: bool = False  # class-IL: softmax over the classes seen so far


@torch.inference_mode()
def evaluate(model: Classifier, tasks: list[Task], batch_size: int = 4096) -> list[float]:
    """Test accuracy (a fraction) on each task, with the task's head in task-IL."""
    was_training = model.training
    model.eval()
    accuracies = []
    for task in tasks:
        correct = 0
        for start in range(0, len(task.test_y), batch_size):
            logits = model(task.test_x[start : start + batch_size], task.id)
            correct += (logits.argmax(1) == task.test_y[start : start + batch_size]).sum().item()
        accuracies.append(correct / len(task.test_y))
    model.train(was_training)
    return accuracies


def _class_mask(model: Classifier, seen: list[Task]) -> torch.Tensor:
    """-inf on the class-IL outputs of classes not seen yet, 0 elsewhere."""
    width = model.heads[0].out_features
    mask = torch.full((width,), float("-inf"), device=model.heads[0].weight.device)
    mask[[c for t in seen for c in t.outputs]] = 0.0
    return mask


def train_task(
    model: Classifier,
    strategy: Strategy,
    task: Task,
    seen: list[Task],
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    generator: torch.Generator,
    scenario: str,
    progress: bool = False,
) -> list[float]:
    """Train on one task; returns the loss of every optimizer step."""
    strategy.before_task(model, task, seen)
    data = strategy.training_data(task, seen)
    n = len(data)
    steps = settings.iterations or settings.epochs * math.ceil(n / settings.batch_size)
    mask = _class_mask(model, seen) if scenario == "class" and settings.seen_classes_only else None
    model.train()
    losses: list[torch.Tensor] = []  # detached: no device sync per step
    order, position = None, n
    bar = tqdm(total=steps, desc=f"task {task.id}", leave=False, disable=not progress)
    for _ in range(steps):
        if position >= n:  # a new epoch: reshuffle (on the CPU, so any device gives one order)
            order = torch.randperm(n, generator=generator).to(data.y.device)
            position = 0
        batch = data.select(order[position : position + settings.batch_size])
        position += settings.batch_size
        features = model.backbone(batch.x)
        logits = model.classify(features, batch.task_ids if model.multi_head else None)
        if mask is not None:
            logits = logits + mask
        ce = F.cross_entropy(logits, batch.y)
        loss = strategy.loss(model, batch, features, logits, ce)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        bar.update()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    strategy.after_task(model, task, seen)
    return torch.stack(losses).tolist() if losses else []


@dataclass
class TaskResult:
    index: int
    accuracies: list[float]  # this row of the accuracy matrix
    losses: list[float]
    train_s: float
    eval_s: float


def train_stream(
    model: Classifier,
    stream: Stream,
    strategy: Strategy,
    optimizer: OptimizerSettings,
    settings: TrainSettings,
    generator: torch.Generator,
    start_task: int = 0,
    on_task_end: Callable[[TaskResult], None] | None = None,
    progress: bool = False,
) -> list[list[float]]:
    """Train on stream.tasks[start_task:] in order; returns the rows of the accuracy matrix.

    `on_task_end` sees each row as soon as it is known (to save results as the run goes).
    """
    rows = []
    for i in range(start_task, len(stream.tasks)):
        seen = stream.tasks[: i + 1]
        started = time.perf_counter()
        losses = train_task(
            model,
            strategy,
            stream.tasks[i],
            seen,
            make_optimizer(model.parameters(), strategy.optimizer_settings(optimizer)),
            settings,
            generator,
            stream.scenario,
            progress,
        )
        trained = time.perf_counter()
        row = evaluate(model, stream.tasks, settings.eval_batch_size)
        result = TaskResult(i, row, losses, trained - started, time.perf_counter() - trained)
        rows.append(row)
        if on_task_end is not None:
            on_task_end(result)
    return rows
