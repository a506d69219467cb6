"""The names a lab run logs to W&B: written by lab.tracking.wandb_run, read by the W&B
Report that lab-report builds (lab.report.wandb_report). One list, so that a report panel
never asks for a key no run has."""

from __future__ import annotations

from lab.metrics import METRIC_NAMES

STEP = "task"  # the x axis of eval/* and metrics/*
TRAIN_STEP = "train/step"
TRAIN_LOSS = "train/loss"
TRAIN_TASK = "train/task"
EVAL_PRETRAIN = "eval/acc_pretrain"
MATRIX_LONG = "acc_matrix/long"
MATRIX_WIDE = "acc_matrix/wide"
MATRIX_HEATMAP = "acc_matrix/heatmap"
PROBE_HEATMAP = "probe_matrix/heatmap"  # analysis.probe
PROBE_PRETRAIN = "probe/acc_pretrain"
SUMMARY = METRIC_NAMES  # the final metrics, by their own names, in the run's summary


def eval_acc(task: int) -> str:
    """Accuracy on task `task`, logged after every task."""
    return f"eval/acc_task_{task}"


def metric(name: str) -> str:
    """A running metric (acc, forgetting, ...), logged after every task."""
    return f"metrics/{name}"


def pretrain_metric(name: str) -> str:
    return f"metrics/pretrain_{name}"


def probe_acc(task: int) -> str:
    """A linear probe's accuracy on task `task` (analysis.probe), after every task."""
    return f"probe/acc_task_{task}"


def probe_metric(name: str) -> str:
    return f"probe_metrics/{name}"


def cka(layer: str) -> str:
    """Linear CKA of a layer group with the stream's start (analysis.cka)."""
    return f"cka/{layer}"


def task_masked_acc(task: int) -> str:
    """Class-IL: the accuracy on task `task` with the head masked to its classes."""
    return f"task_masked/acc_task_{task}"


def task_masked_metric(name: str) -> str:
    """Class-IL: a metric of the task-masked matrix ("Task-IL (masked)")."""
    return f"task_masked/{name}"
