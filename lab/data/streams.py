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
    """
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

    train_x, test_x = dataset.train_x, dataset.test_x
    train_labels, test_labels = dataset.train_y, dataset.test_y
    mean = std = None
    if standardize and not (inputs is not None and inputs.normalises):
        mean, std = channel_statistics(train_x)
        mean, std = mean.to(device or train_x.device), std.to(device or train_x.device)
    tasks = []
    for t, (classes, global_classes, transform, description) in enumerate(views):
        wanted = torch.tensor(classes, device=train_labels.device)
        train_rows = None if len(classes) == K else torch.isin(train_labels, wanted).nonzero()[:, 0]
        test_rows = None if len(classes) == K else torch.isin(test_labels, wanted).nonzero()[:, 0]
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

    if scenario == "task":
        head_sizes = [len(t.classes) for t in tasks]
    elif scenario == "domain":
        head_sizes = [max(len(t.classes) for t in tasks)]
    else:
        head_sizes = [max(c for t in tasks for c in t.global_classes) + 1]
    return Stream(tasks, head_sizes, scenario)
