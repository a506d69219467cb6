"""A task's images, made batch by batch from tensors that every task of a stream shares.

A permuted or rotated stream of T tasks would otherwise hold T transformed float copies
of its dataset (about 260 MB each for Fashion-MNIST's training set). `Images` keeps the
dataset's tensors, the rows of the task (a split task's classes; all rows otherwise) and
the task's pixel transform, and applies it to what is indexed, on the tensors' device:

    images[key] = standardise(transform(base[rows[key]]))

so memory does not grow with the number of tasks. The transform and the standardisation
act on each image alone, so a batch gets, bit for bit, the images the whole set would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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


class Images:
    """standardise(transform(base[rows])), computed for the indexed rows only.

    `images[key]`, with a slice or an index tensor, is a float tensor on base's device;
    `images[:]` is all of them. `mean` and `std` (per channel) standardise after the
    transform, so that a rotation pads with background, not with the mean.
    """

    def __init__(
        self,
        base: Tensor,
        rows: Tensor | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ):
        self.base, self.rows, self.transform = base, rows, transform
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.base) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.base.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.base.device

    def __getitem__(self, key: slice | Tensor) -> Tensor:
        x = self.base[key if self.rows is None else self.rows[key]]
        if self.transform is not None:
            x = self.transform(x)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def select(self, index: Tensor) -> Images:
        """The images at `index`, still made on demand (a test subset, for instance)."""
        rows = index if self.rows is None else self.rows[index]
        return Images(self.base, rows, self.transform, self.mean, self.std)
