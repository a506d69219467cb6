"""A task's images, made batch by batch from tensors that every task of a stream shares.

A permuted or rotated stream of T tasks would otherwise hold T transformed float copies
of its dataset (about 260 MB each for Fashion-MNIST's training set), and a pre-trained
model would want them at its own resolution (30 GB for CIFAR-100 at 224 px). `Images`
keeps the dataset's stored tensors (uint8, once), the rows of the task (a split task's
classes; all rows otherwise), the task's pixel transform and the model's input
specification (lab.data.inputs), and applies them to what is indexed, on the device:

    images[key] = model_inputs(transform(base[rows[key]] / 255))

so memory does not grow with the number of tasks nor with the model's resolution.
Every step acts on each image alone, so a batch gets, bit for bit, the images the whole
set would. A base held in (pinned) host memory, because the dataset does not fit on the
training device, is indexed there and each batch is moved to `device`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lab.data.inputs import ModelInputs


def permutation(pixels: Tensor) -> Callable[[Tensor], Tensor]:
    """The images' pixels (all channels flattened) reordered by `pixels` (on the images'
    device): a gather."""

    def permute(x: Tensor) -> Tensor:
        return x.flatten(1)[:, pixels].reshape(x.shape)

    return permute


def rotation(angle: float) -> Callable[[Tensor], Tensor]:
    """The images rotated by `angle` degrees about their centre (bilinear, zero fill)."""
    from torchvision.transforms.functional import InterpolationMode, rotate

    def rotate_(x: Tensor) -> Tensor:
        return rotate(x, angle, interpolation=InterpolationMode.BILINEAR)

    return rotate_


def to_float(x: Tensor) -> Tensor:
    """Stored images as floats in [0, 1]: uint8 divided by 255, float as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def gather(base: Tensor, rows: Tensor | None, key: slice | Tensor, device: torch.device) -> Tensor:
    """base[rows[key]] (base[key] without rows) on `device`: a base in pinned host memory
    is indexed there and the batch alone moves."""
    index = key if rows is None else rows[key]
    if isinstance(index, Tensor) and index.device != base.device:
        index = index.to(base.device)
    x = base[index]
    return x if x.device == device else x.to(device, non_blocking=True)


class Images:
    """inputs(transform(base[rows] / 255)), computed for the indexed rows only.

    `images[key]`, with a slice or an index tensor, is a float tensor on `device`;
    `images[:]` is all of them. `mean` and `std` (per channel, the training set's)
    standardise after the transform, so that a rotation pads with background, not with
    the mean; a model that brings its own normalisation (`inputs.mean`) replaces them.
    """

    def __init__(
        self,
        base: Tensor,
        rows: Tensor | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        inputs: ModelInputs | None = None,
        device: torch.device | None = None,
    ):
        self.base, self.rows, self.transform = base, rows, transform
        self.mean, self.std = mean, std
        self.inputs = inputs or ModelInputs()
        self._device = device

    def __len__(self) -> int:
        return len(self.base) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.inputs.shape(tuple(self.base.shape[1:]))))

    @property
    def device(self) -> torch.device:
        """Where the images are made: the training device (also for a base in host memory)."""
        return self._device or self.base.device

    def __getitem__(self, key: slice | Tensor) -> Tensor:
        x = to_float(gather(self.base, self.rows, key, self.device))
        if self.transform is not None:
            x = self.transform(x)
        return self.inputs(x, self.mean, self.std)

    def select(self, index: Tensor) -> Images:
        """The images at `index`, still made on demand (a test subset, for instance)."""
        rows = index if self.rows is None else self.rows[index]
        return Images(
            self.base, rows, self.transform, self.mean, self.std, self.inputs, self._device
        )
