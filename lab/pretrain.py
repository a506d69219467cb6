"""The pre-trained start, and the forgetting of what it knew.

pretrain.name
  none    the stream starts from the model's initial weights.
  source  the model first learns a source, another dataset or some classes of the stream's
          own, with its own head, epochs, batch size and optimizer (full training). The
          weights are saved as pretrained.pt in the run dir, for `file` to reuse.
  file    the weights come from a file: a state_dict, or a lab checkpoint.pt (its "model").
          With `dataset` set, the file's source head is evaluated on that source.
Pre-trained ImageNet weights for ResNet-18 are a model option (model=resnet18
model.weights=DEFAULT), for users online.

The source's test set is evaluated with the source head before the stream and after every
task: the "pretrain" column of the accuracy matrix. Its metrics are kept apart from the
stream's (results.json "pretrain"):

    acc         accuracy on the source after the last task
    bwt         acc minus the accuracy right after pre-training
    forgetting  the highest accuracy before the last task (right after pre-training, or
                after tasks 0..T-2) minus acc: Chaudhry et al. 2018's definition, with
                pre-training as the source's own training step

(lab.metrics.source_metrics computes them.)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lab.data import Dataset, Task, build_stream, load_dataset
from lab.data.inputs import ModelInputs
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier

log = logging.getLogger(__name__)

PRETRAIN = ("none", "source", "file")


def make_source(
    config: dict[str, Any],
    stream_dataset: Dataset | None = None,
    inputs: ModelInputs | None = None,
    device: torch.device | None = None,
) -> Task | None:
    """The source task (id SOURCE, targets = index in pretrain.classes), or None.
    `stream_dataset`, the benchmark's, is not read again when the source is the same; the
    source's images are made as `inputs` (the model's) says, on `device` (default: its
    dataset's)."""
    pretrain = config["pretrain"]
    if pretrain["name"] == "none" or pretrain.get("dataset") is None:
        return None
    if stream_dataset is not None and pretrain["dataset"] == config["benchmark"]["dataset"]:
        dataset = stream_dataset
    else:
        store_size = config["data"].get("store_size")
        dataset = load_dataset(pretrain["dataset"], config["data"]["root"], store_size=store_size)
        if stream_dataset is not None:
            dataset = dataset.to(device or stream_dataset.train_y.device)
    classes = pretrain["classes"] or list(range(dataset.num_classes))
    (task,) = build_stream(
        dataset,
        "split",
        "task",
        num_tasks=1,
        seed=config["seed"],
        order=classes,
        standardize=config["benchmark"]["standardize"],
        inputs=inputs,
        device=device,
        # eval.split=validation: the source, too, is scored on held-out training images
        validation_fraction=config["data"].get("validation_fraction", 0.0),
        evaluate_on=config["eval"].get("split", "test"),
    ).tasks
    return replace(task, id=SOURCE, description=f"{pretrain['dataset']} {task.description}")


def load_weights(model: Classifier, path: str, need_source_head: bool) -> None:
    """Load the backbone (all of it) and the heads whose shapes match from `path`."""
    key = f"pretrain.path={path}"
    if not Path(path).is_file():
        raise ConfigError(f"{key}: no such file; valid: a state_dict or a lab checkpoint.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same answer
        raise ConfigError(
            f"{key} is not a weights-only torch file ({type(error).__name__}); valid: a "
            "state_dict, a lab pretrained.pt, or a checkpoint.pt without python objects"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    own = model.state_dict()
    wanted = [k for k in own if k.startswith("backbone.")]
    if need_source_head:
        wanted += [k for k in own if k.startswith("source_head.")]
    bad = [k for k in wanted if k not in state or state[k].shape != own[k].shape]
    if bad:
        raise ConfigError(
            f"{key} does not fit this model ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''} "
            "missing or of another shape); valid: weights of the same model"
            + (" with a source head of pretrain.classes" if need_source_head else "")
        )
    loaded = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loaded, strict=False)
    skipped = sorted(set(own) - set(loaded))
    log.info(
        "loaded %d tensors from %s%s", len(loaded), path, f"; kept {skipped}" if skipped else ""
    )
