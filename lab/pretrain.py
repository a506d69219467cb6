"""The pre-trained start, and the forgetting of what it knew.

pretrain.name
  none    the stream starts from the model's initial weights.
  source  the model first learns a source, another dataset or some classes of the stream's
          own, with its own head, epochs, batch size and optimizer (full training). The
          weights are saved as pretrained.pt in the run dir, for `file` to reuse.
  file    the weights come from a file: a state_dict, or a lab checkpoint.pt (its "model").
          With `dataset` set, the file's source head is evaluated on that source.
  model   the model's own pre-training: a timm model's hub weights (model.pretrained=true)
          or weights file (model.weights) with the classifier it was trained with. That
          classifier is the source head, and `dataset` an evaluation set of its pre-training
          distribution: imagenet_val (the user's ILSVRC-2012 validation images) for an
          ImageNet-1k model, or any dataset whose labels are the head's outputs (output k
          is label k, or label classes[k] with `classes`). `eval_samples` per class are
          drawn (seeded) as the column's test set; the source's training set, which EWC's
          Fisher reads, is the dataset's training set, or for imagenet_val the validation
          images not drawn. So the column says how much of ImageNet the model loses along
          the stream (no continual-learning toolkit measures it).
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

from lab.data import Dataset, Images, Task, build_stream, load_dataset
from lab.data.inputs import ModelInputs
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier

log = logging.getLogger(__name__)

PRETRAIN = ("none", "source", "file", "model")


def make_source(
    config: dict[str, Any],
    stream_dataset: Dataset | None = None,
    inputs: ModelInputs | None = None,
    device: torch.device | None = None,
    head_outputs: int | None = None,
) -> Task | None:
    """The source task (id SOURCE, targets = index in pretrain.classes), or None.
    `stream_dataset`, the benchmark's, is not read again when the source is the same; the
    source's images are made as `inputs` (the model's) says, on `device` (default: its
    dataset's). pretrain=model: `head_outputs` is the width of the model's own classifier."""
    pretrain = config["pretrain"]
    if pretrain["name"] == "none" or pretrain.get("dataset") is None:
        return None
    if stream_dataset is not None and pretrain["dataset"] == config["benchmark"]["dataset"]:
        dataset = stream_dataset
    else:
        options = {"store_size": config["data"].get("store_size")}
        if pretrain.get("root") is not None:
            options["folder"] = pretrain["root"]
        dataset = load_dataset(pretrain["dataset"], config["data"]["root"], **options)
        if stream_dataset is not None:
            dataset = dataset.to(device or stream_dataset.train_y.device)
    if pretrain["name"] == "model":
        standardize = config["benchmark"]["standardize"]
        return model_source(
            dataset,
            head_outputs,
            pretrain["classes"],
            pretrain["eval_samples"],
            config["seed"],
            inputs,
            device,
            standardize,
        )
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


def _per_class(labels: torch.Tensor, samples: int | None, seed: int) -> torch.Tensor:
    """A seeded draw of `samples` rows of each label (all of a label's rows when it has
    fewer, or with samples None), in their order; the draw of a label does not depend on
    the others."""
    if samples is None:
        return torch.arange(len(labels), device=labels.device)
    chosen = []
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero()[:, 0]
        generator = torch.Generator().manual_seed(seed * 100_003 + label)
        chosen.append(
            rows[torch.randperm(len(rows), generator=generator)[:samples].to(rows.device)]
        )
    return torch.cat(chosen).sort().values


def model_source(
    dataset: Dataset,
    head_outputs: int,
    classes: list[int] | None,
    eval_samples: int | None,
    seed: int,
    inputs: ModelInputs | None,
    device: torch.device | None,
    standardize: bool = True,
) -> Task:
    """The evaluation set of a model's own pre-training (pretrain=model) for its classifier
    of `head_outputs` outputs: the images of `classes` (null: of every label), the targets
    the head's outputs (label k is output k, or with `classes` output classes.index(label)),
    `eval_samples` per class drawn with `seed` as the test set; the training set is the
    dataset's, or the undrawn test images when it has none (imagenet_val)."""
    labels = dataset.test_y
    outputs = classes if classes is not None else list(range(head_outputs))
    if classes is not None and len(classes) != head_outputs:
        raise ConfigError(
            f"pretrain.classes={classes} names {len(classes)} labels for the model's "
            f"classifier of {head_outputs} outputs; valid: {head_outputs} labels (output k "
            "is classes[k]), or null (output k is label k)"
        )
    if classes is None and dataset.num_classes > head_outputs:
        raise ConfigError(
            f"pretrain.dataset={dataset.name} has labels 0..{dataset.num_classes - 1}, the "
            f"model's classifier {head_outputs} outputs; valid: a dataset of its pre-training "
            f"with labels in 0..{head_outputs - 1}, or pretrain.classes (output k is classes[k])"
        )
    wanted = outputs
    lookup = torch.full((max(outputs) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(outputs)] = torch.arange(len(outputs))
    lookup = lookup.to(labels.device)

    def rows_of(y: torch.Tensor) -> torch.Tensor:
        return torch.isin(y, torch.tensor(wanted, device=y.device)).nonzero()[:, 0]

    test_rows = rows_of(labels)
    test_rows = test_rows[_per_class(labels[test_rows], eval_samples, seed)]
    if len(dataset.train_y):
        train_base, train_rows = dataset.train_x, rows_of(dataset.train_y)
        train_y = dataset.train_y[train_rows]
    else:  # the test images not drawn (all of them are the test set without eval_samples)
        rest = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        rest[test_rows] = False
        train_base, train_rows = dataset.test_x, rest.nonzero()[:, 0]
        if not len(train_rows):
            train_rows = test_rows
        train_y = labels[train_rows]
    mean = std = None
    if standardize and not (inputs is not None and inputs.normalises):
        from lab.data.streams import channel_statistics

        mean, std = channel_statistics(
            dataset.test_x if not len(dataset.train_y) else dataset.train_x
        )
        mean, std = mean.to(device or labels.device), std.to(device or labels.device)
    head = list(range(len(outputs)))
    return Task(
        id=SOURCE,
        classes=outputs,
        global_classes=head,
        outputs=head,
        train_x=Images(train_base, train_rows, None, mean, std, inputs, device),
        train_y=lookup[train_y],
        test_x=Images(dataset.test_x, test_rows, None, mean, std, inputs, device),
        test_y=lookup[labels[test_rows]],
        description=f"{dataset.name} ({len(outputs)} outputs, {len(test_rows)} test images)",
    )


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
