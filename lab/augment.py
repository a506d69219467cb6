"""Data augmentation as a knob of the training regime, on tensors on the training device.

Per training batch (evaluation and EWC's Fisher see the plain test/train images):
  crop_padding  pad each image with `crop_padding` zeros (the standardised mean) on every
                side and cut a random crop of the original size (Krizhevsky et al. 2012)
  flip          mirror each image left-right with probability 1/2 (off for digits and
                characters, which it turns into other symbols)
  noise_std     add Gaussian noise of this std (in standardised units)
Every draw comes from the augmentation's own generator, seeded by the run's seed, so a
run is reproducible and the other random streams (batch order, strategies) do not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Augment:
    crop_padding: int = 0
    flip: bool = False
    noise_std: float = 0.0

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.noise_std > 0

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A randomly augmented copy of the batch x (N, C, H, W)."""
        n, _, height, width = x.shape
        if self.crop_padding > 0:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=x.device)
            dx = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=x.device)
            rows = (dy + torch.arange(height, device=x.device))[:, :, None]  # (N, H, 1)
            cols = (dx + torch.arange(width, device=x.device))[:, None, :]  # (N, 1, W)
            samples = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[samples, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            mirrored = torch.rand(n, generator=generator, device=x.device) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        if self.noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x = x + self.noise_std * noise
        return x
