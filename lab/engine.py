"""The lab's training engine: fit task by task, evaluate every task after each one.

Every task's tensors live on the training device; batches are drawn by indexing them
with a seeded permutation (no DataLoader, no per-sample Python work). Evaluation runs
under torch.inference_mode with large batches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lab import finetune as ft
from lab.augment import Augment
from lab.data import Stream, Task
from lab.models import SOURCE, Classifier
from lab.optim import OptimizerSettings, make_optimizer
from lab.precision import autocast, grad_scaler
from lab.strategies import Strategy
from lab.strategies.base import Batch


@dataclass
class TrainSettings:
    epochs: int = 1
    iterations: int | None = None  # optimizer steps per task; overrides epochs when set
    batch_size: int = 128
    eval_batch_size: int = 4096
    seen_classes_only: bool = False  # class-IL: softmax over the classes seen so far
    augment: Augment = field(default_factory=Augment)
    precision: str = "fp32"  # bf16 | fp16 | fp32 (lab.precision; "auto" resolved before)
    compile: bool = False  # torch.compile of the backbone (lab.precision.compile_backbone)


@torch.inference_mode()
def evaluate(
    model: Classifier, tasks: list[Task], batch_size: int = 4096, precision: str = "fp32"
) -> list[float]:
    """Test accuracy (a fraction) on each task, with the task's head in task-IL, at the
    training's precision. Correct answers are counted on the device, read once per task."""
    was_training = model.training
    model.eval()
    accuracies = []
    for task in tasks:
        correct = torch.zeros((), dtype=torch.int64, device=task.test_y.device)
        for start in range(0, len(task.test_y), batch_size):
            with autocast(precision, task.test_y.device):
                logits = model(task.test_x[start : start + batch_size], task.id)
            correct += (logits.argmax(1) == task.test_y[start : start + batch_size]).sum()
        accuracies.append(correct.item() / len(task.test_y))
    model.train(was_training)
    return accuracies


@torch.inference_mode()
def evaluate_task_masked(
    model: Classifier, tasks: list[Task], batch_size: int = 4096, precision: str = "fp32"
) -> list[float]:
    """Class-IL's model scored as task-IL by masking: test accuracy on each task with the one
    head's outputs outside the task's classes masked out (the argmax over its classes), the
    task id given at test time only. Mammoth, PyCIL and the DER papers report their
    Task-IL so (Mammoth's mask_classes); scenario=task trains a head per task instead."""
    was_training = model.training
    model.eval()
    accuracies = []
    for task in tasks:
        outputs = torch.tensor(sorted(task.outputs), device=task.test_y.device)
        correct = 0
        for start in range(0, len(task.test_y), batch_size):
            with autocast(precision, task.test_y.device):
                logits = model(task.test_x[start : start + batch_size])
            chosen = outputs[logits[:, outputs].argmax(1)]
            correct += (chosen == task.test_y[start : start + batch_size]).sum().item()
        accuracies.append(correct / len(task.test_y))
    model.train(was_training)
    return accuracies


def _class_mask(model: Classifier, seen: list[Task]) -> torch.Tensor:
    """-inf on the class-IL outputs of classes not seen yet, 0 elsewhere."""
    width = model.heads[0].out_features
    mask = torch.full((width,), float("-inf"), device=model.heads[0].weight.device)
    mask[[c for t in seen if t.id != SOURCE for c in t.outputs]] = 0.0
    return mask


def _routing(model: Classifier, data: Batch) -> int | str | None:
    """What `classify` needs to know of a task's batches: nothing (one shared head), the
    one task id of all of them, or one id per sample (joint training over several heads)."""
    ids = data.task_ids.unique().tolist()
    if not model.multi_head and SOURCE not in ids:
        return None
    return ids[0] if len(ids) == 1 else "per sample"


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
    finetune: ft.Finetune | None = None,
    augment_generator: torch.Generator | None = None,
) -> list[float]:
    """Train on one task; returns the loss of every optimizer step.

    `finetune` (lab.finetune) unfreezes layer groups progressively if it says so;
    `augment_generator` (on the data's device) draws settings.augment's randomness."""
    strategy.before_task(model, task, seen)
    data = strategy.training_data(task, seen)
    n = len(data)
    steps = settings.iterations or settings.epochs * math.ceil(n / settings.batch_size)
    steps = strategy.train_steps(task, steps)
    mask = _class_mask(model, seen) if scenario == "class" and settings.seen_classes_only else None
    routing = _routing(model, data)
    progressive = finetune is not None and finetune.unfreeze_every is not None
    augment = settings.augment if settings.augment.active else None
    scaler = grad_scaler(settings.precision, data.y.device)
    model.train()
    losses: list[torch.Tensor] = []  # detached: no device sync per step
    order, position, epoch = None, n, -1
    bar = tqdm(total=steps, desc=f"task {task.id}", leave=False, disable=not progress)
    for _ in range(steps):
        if position >= n:  # a new epoch: reshuffle (on the CPU, so any device gives one order)
            order = torch.randperm(n, generator=generator).to(data.y.device)
            position, epoch = 0, epoch + 1
            if progressive:
                ft.unfreeze(model, finetune, epoch)
        drawn = data.select(order[position : position + settings.batch_size])
        position += settings.batch_size
        batch = strategy.rehearse(drawn)
        # samples from the memory may belong to other tasks: each then takes its own head
        route = routing if batch is drawn else ("per sample" if model.multi_head else None)
        if augment is not None:
            batch = Batch(augment(batch.x, augment_generator), batch.y, batch.task_ids)
        with autocast(settings.precision, batch.y.device):
            task_ids = batch.task_ids if route == "per sample" else route
            features = model.features(batch.x, task_ids)
            logits = model.classify(features, task_ids)
            if mask is not None:
                logits = logits + mask
            ce = F.cross_entropy(logits.float(), batch.y)
            loss = strategy.loss(model, batch, features, logits, ce)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        strategy.after_backward(model)  # a projection is linear: scaled gradients are fine
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach())
        bar.update()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    if progressive:
        ft.unfreeze(model, finetune, None)
    strategy.after_task(model, task, seen)
    return torch.stack(losses).tolist() if losses else []


def linear_probe(
    model: Classifier,
    task: Task,
    seen: list[Task],
    scenario: str,
    optimizer: OptimizerSettings,
    settings: TrainSettings,
    generator: torch.Generator,
    finetune: ft.Finetune,
) -> list[float]:
    """LP-FT's first step (Kumar et al. 2022): the stream's heads alone, everything else
    frozen, for finetune.lp_epochs epochs of plain cross-entropy on `task`, with an
    optimizer of their own at the heads' learning rate; what was trainable is again after."""
    heads = {id(p) for p in model.heads.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(id(p) in heads)
    try:
        params = [p for p in model.parameters() if p.requires_grad]  # the heads alone now
        probe = make_optimizer(
            [{"params": params, "lr": optimizer.lr * finetune.head_lr_scale}], optimizer
        )
        probing = dataclasses.replace(settings, epochs=finetune.lp_epochs, iterations=None)
        return train_task(model, Strategy(), task, seen, probe, probing, generator, scenario)
    finally:
        for p in trainable:
            p.requires_grad_(True)


class _NoOptimizer:
    """The optimizer of a model with no trainable parameter: it has nothing to step (the
    strategy then takes no step either: train_steps returns 0)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        raise RuntimeError("a step of a model with no trainable parameter: train_steps must be 0")


@dataclass
class TaskResult:
    index: int
    accuracies: list[float]  # this row of the accuracy matrix
    losses: list[float]
    train_s: float
    eval_s: float
    source_accuracy: float | None = None  # the pre-training source's (lab.pretrain)
    task_masked: list[float] | None = None  # class-IL: the row scored task-IL by masking


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
    source: Task | None = None,
    finetune: ft.Finetune | None = None,
    augment_generator: torch.Generator | None = None,
) -> list[list[float]]:
    """Train on stream.tasks[start_task:] in order; returns the rows of the accuracy matrix.

    `on_task_end` sees each row as soon as it is known (to save results as the run goes).
    A pre-training `source` counts as a task seen before the stream (LwF distils its head,
    joint trains on it) and is evaluated after every task. Each task's optimizer has the
    learning rate of each layer group that `finetune` sets.
    """
    finetune = finetune or ft.Finetune()
    earlier = [source] if source is not None else []
    rows = []
    for i in range(start_task, len(stream.tasks)):
        seen = earlier + stream.tasks[: i + 1]
        settings_i = strategy.optimizer_settings(optimizer)
        # made before the clock starts: torch's first optimizer imports torch._dynamo (~1 s)
        groups = strategy.param_groups(model, ft.param_groups(model, finetune, settings_i.lr))
        # a method that trains nothing (SimpleCIL) has no parameter to give an optimizer
        task_optimizer = make_optimizer(groups, settings_i) if groups else _NoOptimizer()
        started = time.perf_counter()
        if finetune.lp_epochs:  # LP-FT: the heads alone first (lab.finetune)
            linear_probe(
                model,
                stream.tasks[i],
                seen,
                stream.scenario,
                optimizer,
                settings,
                generator,
                finetune,
            )
        losses = train_task(
            model,
            strategy,
            stream.tasks[i],
            seen,
            task_optimizer,
            settings,
            generator,
            stream.scenario,
            progress,
            finetune,
            augment_generator,
        )
        trained = time.perf_counter()
        accuracies = evaluate(
            model, stream.tasks + earlier, settings.eval_batch_size, settings.precision
        )
        row = accuracies[: len(stream.tasks)]
        masked = None  # class-IL: also scored task-IL by masking (evaluate_task_masked)
        if stream.scenario == "class":
            masked = evaluate_task_masked(
                model, stream.tasks, settings.eval_batch_size, settings.precision
            )
        result = TaskResult(
            i,
            row,
            losses,
            trained - started,
            time.perf_counter() - trained,
            accuracies[-1] if source is not None else None,
            masked,
        )
        rows.append(row)
        if on_task_end is not None:
            on_task_end(result)
    return rows
