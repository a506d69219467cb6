"""Representation drift: linear CKA between a layer's features now and at the stream's start.

Linear centered kernel alignment (Kornblith et al. 2019, "Similarity of neural network
representations revisited", eq. 2 with linear kernels): for features X (n x p) and
Y (n x q) of the same n inputs, with K = X X^T, L = Y Y^T and H = I - 11^T/n,

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),   HSIC(K, L) = tr(K H L H)

(the 1/(n-1)^2 of HSIC cancels). 1 for the same features up to an orthogonal transform
and an isotropic scaling; lower as they drift apart. Computed from the n x n Gram
matrices, so a layer as wide as a ResNet stage costs n^2 memory, not its width.

The probe set is a fixed, seeded draw of test images from every task of the stream; each
layer group (lab.finetune.layer_groups, e.g. backbone.layers.1) is read by a forward hook.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lab.data import Images, Task
from lab.finetune import layer_groups
from lab.models import Classifier


def centered_gram(x: Tensor) -> Tensor:
    """H (X X^T) H for features x (n x ...), in float64."""
    x = x.reshape(len(x), -1).double()
    x = x - x.mean(0, keepdim=True)  # centring X centres its Gram matrix: H X X^T H
    return x @ x.T


def cka(gram_x: Tensor, gram_y: Tensor) -> float:
    """Linear CKA from two centered Gram matrices of the same inputs."""
    hsic = (gram_x * gram_y).sum()
    norm = torch.sqrt((gram_x * gram_x).sum() * (gram_y * gram_y).sum())
    return (hsic / norm).item() if norm > 0 else float("nan")


def cka_probe_set(tasks: list[Task], samples: int, seed: int) -> list[Images]:
    """`samples` test images drawn evenly from the tasks, with the run's seed: each task's
    draw, made on demand (lab.data.Images) when the layers read it."""
    generator = torch.Generator().manual_seed(seed)
    per_task = [samples // len(tasks) + (i < samples % len(tasks)) for i in range(len(tasks))]
    picks = []
    for task, k in zip(tasks, per_task, strict=True):
        index = torch.randperm(len(task.test_x), generator=generator)[:k]
        picks.append(task.test_x.select(index.to(task.test_y.device)))
    return picks


@torch.inference_mode()
def layer_grams(
    model: Classifier, x: list[Images] | Tensor, batch_size: int = 512
) -> dict[str, Tensor]:
    """The centered Gram matrix of each layer group's output on the images x, by group
    name; the images are made and read in batches, each group's outputs kept in float32."""
    outputs: dict[str, list[Tensor]] = {}

    def keep(name: str):
        def hook(_module, _inputs, out):
            outputs.setdefault(name, []).append(out.float().reshape(len(out), -1))

        return hook

    hooks = [group.output.register_forward_hook(keep(name)) for name, group in layer_groups(model)]
    was_training = model.training
    model.eval()
    try:
        for images in x if isinstance(x, list) else [x]:
            for start in range(0, len(images), batch_size):
                model.backbone(images[start : start + batch_size])
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: centered_gram(torch.cat(out)) for name, out in outputs.items()}


def drift(model: Classifier, x: Tensor, reference: dict[str, Tensor]) -> dict[str, float]:
    """CKA of each layer group's features on x against its `reference` Gram matrix."""
    grams = layer_grams(model, x)
    return {name: cka(grams[name], reference[name].double()) for name in reference}
