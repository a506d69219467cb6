"""results.json, the run directory's source of truth (design.md, run-directory contract).

It is rewritten atomically after every task (status "running"), then once more at the
end ("complete" or "failed"), so a crash or a kill at any moment leaves a valid file
that holds every task completed so far.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import lab
from lab.metrics import accuracy_metrics, source_metrics

SCHEMA_VERSION = 1


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def versions() -> dict[str, str | None]:
    """The versions of what computes a run: the same config and seed give the same matrix,
    bit for bit, only with these the same (and the same device and thread count)."""
    import torch  # here: lab-report reads results without importing torch (1.6 s)

    return {
        "lab": lab.__version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,  # None: a CPU-only build of torch
        "cudnn": str(torch.backends.cudnn.version())
        if torch.backends.cudnn.is_available()
        else None,
    }


def device_name(device) -> str:
    """What the device is beyond its type: the GPU's name, or the CPU's architecture and the
    vector instructions torch's kernels dispatch to (they round differently)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


class RunResults:
    """The content of results.json, saved to `run_dir` at every change.

    `kept`: what an earlier, unfinished try of the same run wrote; it stays until the run
    restarts (`restart`) or resumes (which sets `data`), so that a failure before either
    loses none of it."""

    def __init__(self, run_dir: Path, header: dict[str, Any], kept: dict[str, Any] | None = None):
        self.path = Path(run_dir) / "results.json"
        self.data: dict[str, Any] = kept if kept is not None else {}
        if kept is None:
            self.restart(header)

    def restart(self, header: dict[str, Any]) -> None:
        self.data = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            **header,
            "acc_matrix": [],
            "init_acc": [],
            "metrics": accuracy_metrics([]),
            "train_loss": [],
            "diverged": [],  # tasks whose training loss became non-finite
            "timing": {
                "total_s": 0.0,
                "train_s": 0.0,
                "eval_s": 0.0,
                "tasks": [],  # per task: its training and its evaluation after it
                "started_at": time.time(),  # unix time, kept across a resume
                "finished_at": None,
            },
            "versions": versions(),
        }

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def set_init_acc(self, init_acc: list[float], eval_s: float) -> None:
        self.data["init_acc"] = list(init_acc)
        self.data["timing"]["eval_s"] += eval_s
        self.save()

    def set_task_masked_init(self, init_acc: list[float]) -> None:
        """Class-IL: the model before the stream scored task-IL by masking (lab.engine.
        evaluate_task_masked); its matrix and metrics then grow with every add_row."""
        self.data["init_acc_task_masked"] = list(init_acc)
        self.data["acc_matrix_task_masked"] = []
        self.data["metrics_task_masked"] = accuracy_metrics([])

    def set_source(self, description: str, init_acc: float) -> None:
        """A pre-training source: its column of the matrix and its own metrics (lab.pretrain)."""
        self.data["pretrain"] = {
            "description": description,
            "init_acc": init_acc,
            "acc": [],
            "metrics": source_metrics(init_acc, []),
        }

    def set_probe_init(self, probe: list[float], source: float | None) -> None:
        """The probes' accuracy at the stream's start (lab.analysis): P's init row, and the
        source's probe before the stream."""
        self.data["probe_init"] = list(probe)
        self.data["probe_matrix"] = []
        self.data["probe_metrics"] = accuracy_metrics([])
        if source is not None:
            self.data["pretrain"].update(probe_init_acc=source, probe_acc=[])

    def add_analysis(
        self,
        probe: list[float] | None,
        probe_source: float | None,
        cka: dict[str, float] | None,
        seconds: float,
    ) -> None:
        """After a task, before its add_row: its probe row (P's metrics: the accuracy
        matrix's definitions on P), the source's probe, and each layer's CKA."""
        if probe is not None:
            self.data["probe_matrix"].append(list(probe))
            self.data["probe_metrics"] = accuracy_metrics(
                self.data["probe_matrix"], self.data["probe_init"]
            )
        if probe_source is not None:
            source = self.data["pretrain"]
            source["probe_acc"].append(probe_source)
            source["probe_metrics"] = source_metrics(source["probe_init_acc"], source["probe_acc"])
        if cka is not None:
            self.data.setdefault("cka", []).append(cka)
        timing = self.data["timing"]
        timing["analysis_s"] = timing.get("analysis_s", 0.0) + seconds

    def add_row(
        self,
        row: list[float],
        losses: list[float],
        train_s: float,
        eval_s: float,
        source_acc: float | None = None,
        task_masked: list[float] | None = None,
    ) -> None:
        """Task len(acc_matrix)'s row, the loss of each of its steps, and its timings (and
        in class-IL the row scored task-IL by masking, with its metrics)."""
        task = len(self.data["acc_matrix"])
        self.data["acc_matrix"].append(list(row))
        if task_masked is not None and "acc_matrix_task_masked" in self.data:
            masked = self.data["acc_matrix_task_masked"]
            masked.append(list(task_masked))
            init = self.data["init_acc_task_masked"]
            self.data["metrics_task_masked"] = accuracy_metrics(masked, init)
        finite = bool(np.isfinite(losses).all())
        # JSON has no NaN: a diverged task's mean loss is null, and the task is listed
        self.data["train_loss"].append(float(np.mean(losses)) if finite and losses else None)
        if not finite:
            self.data["diverged"].append(task)
        self.data["metrics"] = accuracy_metrics(self.data["acc_matrix"], self.data["init_acc"])
        if "pretrain" in self.data:
            source = self.data["pretrain"]
            source["acc"].append(source_acc)
            source["metrics"] = source_metrics(source["init_acc"], source["acc"])
        timing = self.data["timing"]
        timing["train_s"] += train_s
        timing["eval_s"] += eval_s
        # setdefault: a run resumed from a results.json written before timing.tasks
        timing.setdefault("tasks", []).append({"train_s": train_s, "eval_s": eval_s})
        self.save()

    def finish(self, status: str, total_s: float, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["timing"]["total_s"] = total_s
        self.data["timing"]["finished_at"] = time.time()
        if error is not None:
            self.data["error"] = error
        self.save()


def write_acc_matrix_csv(path: Path, acc_matrix: list[list[float]], with_source: bool = False):
    """One row per training step: `after_task`, then the accuracy on each task (and on the
    pre-training source, in a last column named `pretrain`, `with_source`)."""
    num_tasks = (len(acc_matrix[0]) if acc_matrix else 0) - with_source
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        header = [f"task_{j}" for j in range(num_tasks)] + (["pretrain"] if with_source else [])
        writer.writerow(["after_task", *header])
        for i, row in enumerate(acc_matrix):
            writer.writerow([i, *(f"{a:.6f}" for a in row)])
