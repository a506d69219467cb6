"""Weights & Biases mirror of a run (design.md, Tracking).

Local files are the source of truth; this mirrors them. Every call into wandb goes
through `_guard`: the first failure (not logged in, no network, a bug in wandb) is
reported in one line, W&B is switched off for the rest of the run, and training and the
local files go on untouched.

What a run shows in W&B:
  config            the resolved config
  eval/acc_task_j   accuracy on task j after each task     (x axis: `task`)
  metrics/*         the running ACC, BWT, FWT, forgetting, ... (x axis: `task`)
  train/loss        the loss of every step               (x axis: `train/step`)
  acc_matrix/long   table (trained_task, eval_task, accuracy)
  acc_matrix/wide   table (after_task, task_0, ..., task_T-1)
  acc_matrix/heatmap  the acc_matrix.png of the run dir
  probe/acc_task_j, probe_metrics/*, cka/LAYER   with analysis.probe / analysis.cka
  probe_matrix/heatmap  the probe_matrix.png of the run dir
  summary           the final metrics (acc, bwt, fwt, forgetting, learning_acc, avg_inc_acc;
                    probe_* for the probes'; trainable_parameters_backbone_modules,
                    _heads and _total: what the fine-tuning regime trains),
                    the status and the diverged tasks; a run that diverged is tagged `diverged`
  artifact          results.json, acc_matrix.csv and acc_matrix.png ("results" type)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.tracking import wandb_keys as keys

log = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")


def acc_matrix_tables(acc_matrix: list[list[float]]):
    """The matrix as two wandb.Tables: long (one row per cell) and wide (one per row)."""
    import wandb

    long = wandb.Table(columns=["trained_task", "eval_task", "accuracy"])
    for i, row in enumerate(acc_matrix):
        for j, accuracy in enumerate(row):
            long.add_data(i, j, accuracy)
    num_tasks = len(acc_matrix[0]) if acc_matrix else 0
    wide = wandb.Table(columns=["after_task", *(f"task_{j}" for j in range(num_tasks))])
    for i, row in enumerate(acc_matrix):
        wide.add_data(i, *row)
    return long, wide


class WandbRun:
    """One W&B run for one lab run; `finish` must be called (experiment does, in finally)."""

    def __init__(
        self,
        settings: dict[str, Any],
        config: dict[str, Any],
        run_dir: Path,
        name: str | None = None,
        group: str | None = None,
    ):
        self.run = None
        self._where: dict[str, Any] | None = None
        self.failed = False
        self.step = 0
        self.mode = settings["mode"]

        def start():
            import wandb

            self.run = wandb.init(
                project=settings["project"],
                entity=settings.get("entity"),
                config=config,
                dir=str(run_dir),
                name=name,
                group=settings.get("group") or group,
                job_type=config["strategy"]["name"],
                tags=list(settings.get("tags") or []),
                mode=self.mode,
                reinit="finish_previous",  # a sweep in one process: never log into a stale run
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
            )
            # where the run went, for results.json: lab-report finds the sweep's group by it
            self._where = {
                "project": settings["project"],
                "entity": settings.get("entity"),
                "group": settings.get("group") or group,
                "name": name,
                "id": self.run.id,
                "mode": self.mode,
            }
            self.run.define_metric(keys.STEP)
            self.run.define_metric("eval/*", step_metric=keys.STEP)
            self.run.define_metric("metrics/*", step_metric=keys.STEP)
            for prefix in ("probe/*", "probe_metrics/*", "cka/*", "task_masked/*"):
                self.run.define_metric(prefix, step_metric=keys.STEP)
            self.run.define_metric(keys.TRAIN_STEP)
            self.run.define_metric("train/*", step_metric=keys.TRAIN_STEP)

        # W&B's import and start (its service process) take a second or two: they run
        # while the run reads its data and trains its first task, not before
        self._starting = threading.Thread(target=self._guard, args=("init", start), daemon=True)
        self._starting.start()

    @property
    def where(self) -> dict[str, Any] | None:
        """Where the run went (project, entity, group, name, id, mode), once it started;
        None if it could not start."""
        self._starting.join()
        return self._where

    def _guard(self, what: str, action: Callable[[], None]) -> None:
        if self.failed:
            return
        try:
            action()
        except Exception as error:  # noqa: BLE001 - W&B must never break a run
            self.failed = True
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            log.error(
                "W&B %s failed (%s: %s); W&B is off for this run, the local results are complete",
                what,
                type(error).__name__,
                message,
            )

    def log_task(
        self,
        index: int,
        row: list[float],
        metrics: dict,
        losses: list[float],
        pretrain: dict | None = None,
        analysis: dict | None = None,
        task_masked: tuple[list[float], dict] | None = None,
    ) -> None:
        """One task's row, metrics and step losses (and the pre-training source's, if any:
        eval/acc_pretrain and metrics/pretrain_*; and with analysis, the probes' row and
        metrics, the source's probe and the CKA row: keys "probe", "probe_metrics",
        "probe_source", "cka"; in class-IL, the task-masked row and its metrics,
        task_masked/*)."""

        self._starting.join()

        def log_it():
            for loss in losses:
                self.run.log(
                    {keys.TRAIN_LOSS: loss, keys.TRAIN_STEP: self.step, keys.TRAIN_TASK: index}
                )
                self.step += 1
            values = {keys.eval_acc(j): a for j, a in enumerate(row)}
            values.update({keys.metric(k): v for k, v in metrics.items() if v is not None})
            if pretrain is not None:
                values[keys.EVAL_PRETRAIN] = pretrain["acc"][-1]
                values.update({keys.pretrain_metric(k): v for k, v in pretrain["metrics"].items()})
            analysed = analysis or {}
            values.update({keys.probe_acc(j): a for j, a in enumerate(analysed.get("probe", []))})
            if analysed.get("probe_source") is not None:
                values[keys.PROBE_PRETRAIN] = analysed["probe_source"]
            for k, v in analysed.get("probe_metrics", {}).items():
                if v is not None:
                    values[keys.probe_metric(k)] = v
            values.update({keys.cka(k): v for k, v in analysed.get("cka", {}).items()})
            if task_masked is not None:
                masked_row, masked_metrics = task_masked
                values.update({keys.task_masked_acc(j): a for j, a in enumerate(masked_row)})
                for k, v in masked_metrics.items():
                    if v is not None:
                        values[keys.task_masked_metric(k)] = v
            self.run.log({keys.STEP: index, **values})

        self._guard("log", log_it)

    def finish(self, results: dict[str, Any], run_dir: Path) -> None:
        """Tables, heatmap, summary and artifact, then close the run (also after a failure)."""

        def final():
            import wandb

            matrix = results["acc_matrix"]
            if matrix:
                long, wide = acc_matrix_tables(matrix)
                heatmaps = {
                    keys.MATRIX_HEATMAP: "acc_matrix.png",
                    keys.PROBE_HEATMAP: "probe_matrix.png",
                }
                images = {
                    key: wandb.Image(str(run_dir / file))
                    for key, file in heatmaps.items()
                    if (run_dir / file).exists()
                }
                self.run.log({keys.MATRIX_LONG: long, keys.MATRIX_WIDE: wide, **images})
            for key, value in results["metrics"].items():
                self.run.summary[key] = value
            for key, value in results.get("pretrain", {}).get("metrics", {}).items():
                self.run.summary[f"pretrain_{key}"] = value
            for key, value in results.get("probe_metrics", {}).items():
                self.run.summary[f"probe_{key}"] = value
            for key, value in results.get("metrics_task_masked", {}).items():
                self.run.summary[f"task_masked_{key}"] = value
            for key, value in (results.get("trainable_parameters") or {}).items():
                self.run.summary[f"trainable_parameters_{key}"] = value
            self.run.summary["status"] = results["status"]
            self.run.summary["diverged"] = results.get("diverged", [])
            if results.get("diverged"):  # to filter such runs out in the W&B UI
                self.run.tags = (*self.run.tags, "diverged")
            artifact = wandb.Artifact(f"results-{self.run.id}", type="results")
            for file in ("results.json", "acc_matrix.csv", "acc_matrix.png", "probe_matrix.png"):
                if (run_dir / file).exists():
                    artifact.add_file(str(run_dir / file))
            self.run.log_artifact(artifact)

        self._starting.join()
        if self.run is None:
            return
        self._guard("final logging", final)
        failed_before = self.failed
        self.failed = False  # finishing is attempted even after a logging failure
        exit_code = 0 if results["status"] == "complete" else 1
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))
        if self.mode == "offline" and not failed_before and not self.failed:
            log.info(
                "W&B offline run saved; upload it with: wandb sync %s", self.run.settings.sync_dir
            )
