"""Linear probes: how much of a task the backbone's features still hold.

A probe is a multinomial logistic regression on the frozen backbone features (the input of
the heads), fitted on a fixed, seeded slice of the task's training set and scored on the
task's whole test set (Alain & Bengio 2017; for forgetting, Davari et al. 2022, "Probing
representation forgetting in supervised and unsupervised continual learning"). It
minimises, over W (classes x d) and b,

    (1/n) sum_i -log softmax(W z_i + b)[y_i]  +  (l2 / 2) ||W||^2,

z the features standardised with the slice's mean and std, by full-batch L-BFGS on
features computed once (on the training device); the probes of all the tasks are fitted
in one batched L-BFGS run. When the probe reads a task well and
the model's head does not, the features still hold the task and the head lost it.

The model is only read (eval mode, inference_mode): probing never changes the training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lab.data import Images, Task
from lab.models import Classifier

L2 = 1e-2
MAX_ITER = 25  # enough for the argmax: more moves a probe accuracy by < 0.3 points here


@torch.inference_mode()
def features(
    model: Classifier,
    x: Images | Tensor,
    index: Tensor | None = None,
    batch_size: int = 512,
    task_id: int | None = None,
) -> Tensor:
    """The backbone's output for x[index] (all of x for None), made and read batch by batch
    (the images at the model's resolution never all at once), the model left in the mode
    it was in."""
    was_training = model.training
    model.eval()
    n = len(x) if index is None else len(index)
    parts = []
    for i in range(0, n, batch_size):
        rows = slice(i, i + batch_size) if index is None else index[i : i + batch_size]
        parts.append(model.features(x[rows], task_id).float())
    model.train(was_training)
    return torch.cat(parts)


@dataclass
class Probes:
    """T probes fitted together: probe t reads features z as W[t] (z - mean[t]) / std[t] +
    b[t], its logits past its own classes masked out."""

    weight: Tensor  # (T, k, d), k the most classes of a task
    bias: Tensor  # (T, k)
    mean: Tensor  # (T, d)
    std: Tensor  # (T, d)
    mask: Tensor  # (T, k): 0 on a task's classes, -inf past them

    def logits(self, t: int, z: Tensor) -> Tensor:
        z = (z - self.mean[t]) / self.std[t]
        return z @ self.weight[t].T + self.bias[t] + self.mask[t]


def fit_probes(zs: list[Tensor], ys: list[Tensor], num_classes: list[int]) -> Probes:
    """The L2-regularised multinomial logistic regressions of labels ys[t] (0..k_t-1) on
    features zs[t], all T at once: the sum of their losses is separable, so one L-BFGS run
    on the stacked parameters fits each of them, for the cost of one in Python."""
    T, d, k = len(zs), zs[0].shape[1], max(num_classes)
    n = max(len(z) for z in zs)
    device = zs[0].device
    z = torch.zeros(T, n, d, device=device)
    y = torch.zeros(T, n, dtype=torch.long, device=device)
    weight_of_sample = torch.zeros(T, n, device=device)  # 1/n_t on a task's samples, 0 past
    mean, std = torch.zeros(T, d, device=device), torch.ones(T, d, device=device)
    mask = torch.zeros(T, k, device=device)
    for t, (zt, yt, kt) in enumerate(zip(zs, ys, num_classes, strict=True)):
        mean[t], std[t] = zt.mean(0), zt.std(0).clamp_min(1e-6)
        z[t, : len(zt)] = (zt - mean[t]) / std[t]
        y[t, : len(yt)] = yt
        weight_of_sample[t, : len(zt)] = 1.0 / len(zt)
        mask[t, kt:] = float("-inf")
    # a convex problem: start at zero, with no random initialisation to seed
    weight = torch.zeros(T, k, d, device=device, requires_grad=True)
    bias = torch.zeros(T, k, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=MAX_ITER, history_size=10, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = torch.bmm(z, weight.transpose(1, 2)) + (bias + mask)[:, None, :]
        nll = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = (nll * weight_of_sample.flatten()).sum() + 0.5 * L2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return Probes(weight.detach(), bias.detach(), mean, std, mask)


def probe_slice(task: Task, samples: int | None, seed: int) -> Tensor:
    """The indices of the task's training samples its probes are fitted on: `samples` of
    them drawn once with the run's seed and the task's id (all of them for None)."""
    n = len(task.train_y)
    if samples is None or samples >= n:
        return torch.arange(n, device=task.train_y.device)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + task.id)
    return torch.randperm(n, generator=generator)[:samples].to(task.train_y.device)


def probe_tasks(model: Classifier, tasks: list[Task], slices: list[Tensor]) -> list[float]:
    """Fit a probe per task on its slice of training features; each one's test accuracy.
    Targets become 0..k-1 over the task's distinct targets (class-IL: its global ids)."""
    classes = [torch.unique(task.train_y) for task in tasks]
    probes = fit_probes(
        [
            features(model, task.train_x, index, task_id=task.id)
            for task, index in zip(tasks, slices, strict=True)
        ],
        [
            torch.searchsorted(c, t.train_y[i])
            for c, t, i in zip(classes, tasks, slices, strict=True)
        ],
        [len(c) for c in classes],
    )
    accuracies = []
    for t, (task, c) in enumerate(zip(tasks, classes, strict=True)):
        predicted = probes.logits(t, features(model, task.test_x, task_id=task.id)).argmax(1)
        accuracies.append((predicted == torch.searchsorted(c, task.test_y)).float().mean().item())
    return accuracies
