"""What a model needs its images to look like, applied batch by batch on the device.

A backbone family says what its inputs must look like (`ModelInputs`): the lab's own
models (mlp, cnn, resnet18) take images at their stored size, standardised with the
training set's own per-channel mean and std; a timm model takes them at its input size,
with its interpolation, three channels and its pre-training's mean and std (timm's
`resolve_model_data_config`). `lab.data.images.Images` applies it to every batch it
makes, after the stream's own transform (a permutation or rotation, at the stored size):

    x = base[rows] / 255                         uint8 -> float in [0, 1]
    x = transform(x)                             the stream's task transform
    x = resize(x, size, interpolation)           to the model's input size, if it differs
    x = x.expand(3 channels)                     grey images, for an RGB model
    x = (x - mean) / std                         the model's, or the training set's

Nothing is ever materialised at the model's resolution: CIFAR-100 at 224 px in float32
would take 30 GB; a batch of 128 takes 77 MB.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class ModelInputs:
    """The model's input specification; the defaults take images as they are stored.

    size: (height, width) to resize to; None keeps the stored size.
    interpolation: how to resize (bilinear or bicubic, with antialiasing when shrinking,
      as PIL resizes; nearest without).
    channels: 3 to repeat grey images to RGB; None keeps the stored channels.
    mean, std: per-channel normalisation; None uses the training set's own statistics
      when the benchmark standardises, and nothing otherwise.
    channels_last: batches in channels-last memory order (convolutions on a GPU).
    """

    size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels_last: bool = False

    @property
    def normalises(self) -> bool:
        """Whether the model brings its own mean and std (the training set's are unused)."""
        return self.mean is not None

    def shape(self, stored: tuple[int, ...]) -> tuple[int, int, int]:
        """The (C, H, W) of a model input made from an image stored as `stored`."""
        channels = self.channels or stored[0]
        height, width = self.size or tuple(stored[1:])
        return (channels, height, width)

    def __call__(self, x: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
        """A float batch (N, C, H, W) in [0, 1] made into the model's input; `mean` and
        `std` (shaped (1, C, 1, 1)) are the training set's, used when the model has none."""
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = resize(x, self.size, self.interpolation)
        if self.channels is not None and x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(
                    f"images with {x.shape[1]} channels cannot feed a model of {self.channels}"
                )
            x = x.expand(-1, self.channels, -1, -1)
        if self.mean is not None:
            mean, std = _statistics(self.mean, self.std, x.device)
        if mean is not None:
            x = (x - mean) / std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@functools.lru_cache(maxsize=16)
def _statistics(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """The model's mean and std as (1, C, 1, 1) tensors on `device`, made once per device
    rather than copied to it with every batch."""
    shape = (1, -1, 1, 1)
    return torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(
        shape
    )


def resize(x: Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> Tensor:
    """The batch x (N, C, H, W), float, resized to `size` on its device.

    Bilinear and bicubic antialias when they shrink, as PIL and torchvision's tensor
    Resize(antialias=True) do, so a downsized image is not aliased; bicubic's overshoot
    is clamped back to the input's [0, 1] range."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {INTERPOLATIONS}")
    if interpolation == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest-exact")
    out = F.interpolate(
        x, size=tuple(size), mode=interpolation, align_corners=False, antialias=True
    )
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out
