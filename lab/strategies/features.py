"""The frozen features of a task's samples, which the pre-trained-model learners build their
classifiers from (SimpleCIL's prototypes, RanPAC's Gram matrices, SLCA's class statistics)."""

from __future__ import annotations

import torch
from torch import Tensor

from lab.data import Images
from lab.models import Classifier


@torch.inference_mode()
def features_of(
    model: Classifier, x: Tensor | Images, task_ids: int | None = None, batch_size: int = 256
) -> Tensor:
    """model.features on every sample of `x`, in eval mode (no dropout, BatchNorm's running
    statistics) and without augmentation, in batches; float32, on the model's device. The
    model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.features(x[start : start + batch_size], task_ids).float()
            for start in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)
