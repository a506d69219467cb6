"""Task streams and the scenario's view of them (van de Ven & Tolias 2019).

A stream turns one dataset into a sequence of tasks:
  split     the classes are partitioned into tasks (in a fixed or seeded order);
  permuted  every task holds all classes under its own fixed pixel permutation;
  rotated   every task holds all classes rotated by its own fixed angle.

The scenario decides the targets and the head layout:
  task    one head per task, targets are the index of the class within its task;
  domain  one shared head with as many outputs as classes per task, same targets;
  class   one head over every class of the stream, targets are global class ids
          (in a permuted/rotated stream, task t's class c is the id t*K + c).
All targets are computed once, here, not per batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from lab.data.datasets import Dataset
from lab.data.images import Images, permutation, rotation, to_float
from lab.data.inputs import ModelInputs

SCENARIOS = ("task", "domain", "class")
STREAMS = ("split", "permuted", "rotated")
EVAL_SPLITS = ("test", "validation")  # what the accuracy matrix is measured on


@dataclass
class Task:
    id: int
    classes: list[int]  # dataset labels in this task
    global_classes: list[int]  # class-IL output ids of those labels
    outputs: list[int]  # the head outputs this task's targets use, in its scenario
    train_x: Images | torch.Tensor  # Images: made on demand from the dataset's tensors
    train_y: torch.Tensor  # targets for the scenario
    test_x: Images | torch.Tensor
    test_y: torch.Tensor
    description: str  # e.g. "classes 0,1" or "rotated 36°"


@dataclass
class Stream:
    tasks: list[Task]
    head_sizes: list[int]  # one entry per output head (task-IL: one per task)
    scenario: str
    source: Task | None = None  # the pre-training source, if any (lab.pretrain)
    # the ids (in the whole stream) of its first tasks set apart for tuning
    # (benchmark.tuning_tasks), and whether this stream is them or the rest
    tuning_tasks: list[int] = dataclasses.field(default_factory=list)
    part: str = "whole"  # whole | tuning | final


def validation_mask(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """The held-out validation rows of a training set: True for round(fraction * n_c) rows
    of every label c (at least one where fraction > 0), a uniform draw fixed by `seed`.
    Drawn once over the dataset's rows, so every task of a permuted or rotated stream
    holds out the same images (none is trained on under another permutation)."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    if fraction <= 0:
        return mask.to(labels.device)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    cpu = labels.cpu()
    for label in torch.unique(cpu).tolist():
        rows = (cpu == label).nonzero()[:, 0]
        held = max(1, round(fraction * len(rows)))
        mask[rows[torch.randperm(len(rows), generator=generator)[:held]]] = True
    return mask.to(labels.device)


def tuning_part(stream: Stream, tuning_tasks: int, part: str) -> Stream:
    """The first `tuning_tasks` tasks of `stream` (part "tuning", Chaudhry et al. 2019
    tune on them) or the others (part "final", the stream the results are reported on),
    their ids renumbered from 0 and the heads laid out for them."""
    if tuning_tasks <= 0:
        return stream
    ids = list(range(tuning_tasks))
    chosen = stream.tasks[:tuning_tasks] if part == "tuning" else stream.tasks[tuning_tasks:]
    tasks = [dataclasses.replace(task, id=i) for i, task in enumerate(chosen)]
    return Stream(
        tasks, _head_sizes(tasks, stream.scenario), stream.scenario, stream.source, ids, part
    )


def _head_sizes(tasks: list[Task], scenario: str) -> list[int]:
    if scenario == "task":
        return [len(t.classes) for t in tasks]
    if scenario == "domain":
        return [max(len(t.classes) for t in tasks)]
    return [max(c for t in tasks for c in t.global_classes) + 1]


def subsample_test_set(task: Task, samples: int, seed: int) -> Task:
    """`task` evaluated on `samples` of its test samples, a uniform draw fixed by `seed`
    and the task's id (so every strategy of a seed sees the same ones), in their order."""
    if samples >= len(task.test_y):
        return task
    generator = torch.Generator().manual_seed(seed * 100_003 + task.id)
    keep = torch.randperm(len(task.test_y), generator=generator)[:samples].sort().values
    keep = keep.to(task.test_y.device)
    return dataclasses.replace(task, test_x=task.test_x.select(keep), test_y=task.test_y[keep])


def split_classes(classes: list[int], num_tasks: int) -> list[list[int]]:
    """Consecutive groups of the class order; sizes differ by at most one."""
    return [list(map(int, part)) for part in np.array_split(np.asarray(classes), num_tasks)]


def class_order(num_classes: int, order: list[int] | None, shuffle: bool, seed: int) -> list[int]:
    if order is not None:
        return [int(c) for c in order]
    if shuffle:
        return [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]
    return list(range(num_classes))


def _targets(labels: torch.Tensor, classes: list[int], global_classes: list[int], scenario: str):
    lookup = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64, device=labels.device)
    targets = global_classes if scenario == "class" else range(len(classes))
    lookup[torch.tensor(classes)] = torch.tensor(list(targets), device=labels.device)
    return lookup[labels]


# Above this many values the statistics are summed in chunks (CIFAR-100's training set at
# 32 px has 154M; a whole float copy of ImageNet-R at 224 px would take 14 GB).
WHOLE_STATISTICS = 200_000_000


def channel_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (unbiased) of stored images (N, C, H, W), in [0, 1] units,
    shaped (1, C, 1, 1). Small sets as one float32 reduction (bit for bit what the lab
    always computed); large ones from float64 sums over chunks, never a whole float copy."""
    if x.numel() <= WHOLE_STATISTICS:
        whole = to_float(x)
        return whole.mean(dim=(0, 2, 3), keepdim=True), whole.std(dim=(0, 2, 3), keepdim=True)
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), 1024):
        chunk = to_float(x[start : start + 1024]).double()
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        squares += chunk.square().sum(dim=(0, 2, 3)).cpu()
    n = x.numel() // x.shape[1]
    mean = total / n
    std = ((squares - n * mean.square()) / (n - 1)).clamp_min(0).sqrt()
    shape = (1, -1, 1, 1)
    return mean.float().view(shape).to(x.device), std.float().view(shape).to(x.device)


def build_stream(
    dataset: Dataset,
    stream: str,
    scenario: str,
    num_tasks: int,
    seed: int,
    order: list[int] | None = None,
    shuffle_classes: bool = False,
    identity_first: bool = True,
    angles: list[float] | None = None,
    standardize: bool = True,
    inputs: ModelInputs | None = None,
    device: torch.device | None = None,
    validation_fraction: float = 0.0,
    evaluate_on: str = "test",
) -> Stream:
    """Cut `dataset` into the tasks of `stream`, targets and heads laid out for `scenario`.

    The result depends only on the arguments: the same seed gives the same class order,
    permutations and tasks. `standardize` subtracts the training set's per-channel mean
    and divides by its std, once, after the permutation or rotation (so that a rotation
    pads with background, not with the mean); a model with its own normalisation
    (`inputs`: its size, channels, mean and std) replaces it. The tasks share the
    dataset's tensors and make their images from them on demand (lab.data.images), on
    `device` (default: the tensors' own; a dataset too large for the training device
    stays in host memory and each batch moves).

    `validation_fraction` of every class's training rows (validation_mask, seeded by
    `seed`) is held out of every task's training set and of the statistics. With
    `evaluate_on="validation"` a task's test_x/test_y are its held-out slice: the test set
    is never wrapped, so nothing downstream (evaluation, probes, CKA) can read it.
    """
    if evaluate_on not in EVAL_SPLITS:
        raise ValueError(f"unknown split {evaluate_on!r}; valid: {', '.join(EVAL_SPLITS)}")
    if evaluate_on == "validation" and validation_fraction <= 0:
        raise ValueError("evaluate_on='validation' needs a validation_fraction in (0, 1)")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    K = dataset.num_classes
    if stream == "split":
        groups = split_classes(class_order(K, order, shuffle_classes, seed), num_tasks)
        views = [(g, g, None, "classes " + ",".join(map(str, g))) for g in groups]
    elif stream == "permuted":
        rng = np.random.default_rng(seed)
        n_pixels = int(np.prod(dataset.image_shape))
        perms = [rng.permutation(n_pixels) for _ in range(num_tasks)]
        perms = [torch.from_numpy(p).to(device or dataset.train_x.device) for p in perms]
        if identity_first:
            perms[0] = torch.arange(n_pixels, device=device or dataset.train_x.device)
        views = [
            (
                list(range(K)),
                [t * K + c for c in range(K)],
                permutation(p),
                "identity" if identity_first and t == 0 else f"permutation {t}",
            )
            for t, p in enumerate(perms)
        ]
    elif stream == "rotated":
        angles = angles if angles is not None else [180.0 * t / num_tasks for t in range(num_tasks)]
        views = [
            (
                list(range(K)),
                [t * K + c for c in range(K)],
                None if float(a) % 360 == 0 else rotation(float(a)),
                f"rotated {float(a):g}°",
            )
            for t, a in enumerate(angles)
        ]
    else:
        raise ValueError(f"unknown stream {stream!r}; valid: {', '.join(STREAMS)}")

    train_x, train_labels = dataset.train_x, dataset.train_y
    held = validation_mask(train_labels, validation_fraction, seed)
    if evaluate_on == "validation":  # the held-out rows are what is evaluated
        test_x, test_labels, test_held = train_x, train_labels, held
    else:
        test_x, test_labels, test_held = dataset.test_x, dataset.test_y, None
    mean = std = None
    if standardize and not (inputs is not None and inputs.normalises):
        trained = train_x if not held.any() else train_x[(~held).nonzero()[:, 0].to(train_x.device)]
        mean, std = channel_statistics(trained)
        mean, std = mean.to(device or train_x.device), std.to(device or train_x.device)
    tasks = []
    for t, (classes, global_classes, transform, description) in enumerate(views):
        wanted = torch.tensor(classes, device=train_labels.device)
        in_task = torch.isin(train_labels, wanted)
        train_rows = None if len(classes) == K else in_task.nonzero()[:, 0]
        if held.any():
            train_rows = (in_task & ~held).nonzero()[:, 0]
        if test_held is not None:
            test_rows = (in_task & test_held).nonzero()[:, 0]
        else:
            test_rows = (
                None if len(classes) == K else torch.isin(test_labels, wanted).nonzero()[:, 0]
            )
        train_y = train_labels if train_rows is None else train_labels[train_rows]
        test_y = test_labels if test_rows is None else test_labels[test_rows]
        tasks.append(
            Task(
                id=t,
                classes=classes,
                global_classes=global_classes,
                outputs=global_classes if scenario == "class" else list(range(len(classes))),
                train_x=Images(train_x, train_rows, transform, mean, std, inputs, device),
                train_y=_targets(train_y, classes, global_classes, scenario),
                test_x=Images(test_x, test_rows, transform, mean, std, inputs, device),
                test_y=_targets(test_y, classes, global_classes, scenario),
                description=description,
            )
        )

    return Stream(tasks, _head_sizes(tasks, scenario), scenario)
