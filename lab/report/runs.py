"""Finding run directories and grouping their results.json by configuration.

Runs are grouped by everything in their resolved config except the seed and the keys that
do not change what is computed (device, progress, data root, logger), one table per
benchmark x scenario. Only complete runs whose training never diverged are aggregated;
the others (incomplete, failed, diverged) are listed.
"""

from __future__ import annotations

import glob
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import LabError

NOT_GROUPED = ("seed", "progress", "device", "data.root", "logger.", "hydra.")


@dataclass
class Run:
    path: Path
    results: dict[str, Any]

    @property
    def status(self) -> str:
        return self.results.get("status", "unreadable")

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config", {})

    @property
    def split(self) -> str:
        """What its matrix was measured on: test, or validation (eval.split)."""
        return self.results.get("eval_split") or self.config.get("eval", {}).get("split", "test")

    @property
    def usable(self) -> bool:
        """Complete, and its training loss stayed finite: a result to average."""
        return self.status == "complete" and not self.results.get("diverged")


def metric_of(results: dict[str, Any], metric: str) -> float | None:
    """A metric of results.json; "pretrain_acc" etc. are the pre-training source's own,
    "probe_acc" etc. the linear probes', "task_masked_acc" etc. those of class-IL's matrix
    scored with each task's outputs masked to its classes (acc_matrix_task_masked)."""
    if metric.startswith("pretrain_"):
        return (results.get("pretrain") or {}).get("metrics", {}).get(metric[len("pretrain_") :])
    if metric.startswith("probe_"):  # the linear probes' (lab.analysis), same definitions on P
        return (results.get("probe_metrics") or {}).get(metric[len("probe_") :])
    if metric.startswith("task_masked_"):  # class-IL scored task-IL by masking
        return (results.get("metrics_task_masked") or {}).get(metric[len("task_masked_") :])
    if metric == "trainable_params":  # what the fine-tuning regime trains (lab.finetune)
        return (results.get("trainable_parameters") or {}).get("total")
    if metric == "train_s":  # seconds of training on the stream (timing.train_s)
        return (results.get("timing") or {}).get("train_s")
    return results.get("metrics", {}).get(metric)


@dataclass
class Group:
    benchmark: str
    scenario: str
    strategy: str
    settings: dict[str, Any]  # the flattened config shared by the group's runs
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def split(self) -> str:
        return self.runs[0].split

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if (v := metric_of(r.results, metric)) is not None]

    def by_seed(self, metric: str) -> dict[int, float]:
        seeds = {r.results["seed"]: metric_of(r.results, metric) for r in self.runs}
        return {seed: v for seed, v in seeds.items() if v is not None}

    @property
    def pretrained(self) -> bool:
        return any(r.results.get("pretrain") for r in self.runs)

    @property
    def task_masked(self) -> bool:
        """Class-IL runs that also scored their model task-IL by masking."""
        return any(r.results.get("acc_matrix_task_masked") for r in self.runs)

    @property
    def costed(self) -> bool:
        """Runs that recorded their trainable parameters (lab.finetune.count_trainable)."""
        return any(r.results.get("trainable_parameters") for r in self.runs)

    @property
    def probed(self) -> bool:
        return any(r.results.get("probe_matrix") for r in self.runs)

    @property
    def cka_layers(self) -> list[str]:
        """The layer groups of the runs' CKA rows (analysis.cka), or []."""
        rows = self.runs[0].results.get("cka") or [{}]
        return list(rows[0])

    def probe_matrices(self) -> np.ndarray:
        """(runs, T, T) linear-probe matrices and (runs, T) their init rows."""
        return np.array([r.results["probe_matrix"] for r in self.runs], dtype=float)

    def cka(self, layer: str) -> np.ndarray:
        """(runs, T) the layer's CKA with the start after each task."""
        return np.array([[row[layer] for row in r.results["cka"]] for r in self.runs], dtype=float)

    def matrices(self) -> np.ndarray:
        """(runs, T, T) accuracy matrices."""
        return np.array([r.results["acc_matrix"] for r in self.runs], dtype=float)

    def task_names(self) -> list[str]:
        tasks = self.runs[0].results["tasks"]
        return [f"T{t['id']} ({t['description']})" for t in tasks]


def environment_differences(runs: list[Run]) -> dict[str, list[str]]:
    """What `runs` recorded of where they ran (device, device_name, threads, and each
    library's version), keeping the keys in which they differ, with their values: the same
    config and seed give the same numbers only where these are the same (README)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        recorded = {
            k: run.results[k] for k in ("device", "device_name", "threads") if k in run.results
        }
        recorded.update(run.results.get("versions") or {})
        for key, value in recorded.items():
            seen[key].add(str(value))
    return {
        key: sorted(values, key=_natural_text) for key, values in seen.items() if len(values) > 1
    }


def _natural_text(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Run dirs (holding results.json) at or below each path; globs are expanded."""
    found: set[Path] = set()
    for pattern in paths:
        matches = glob.glob(pattern) or [pattern]
        for match in map(Path, matches):
            if match.is_file() and match.name == "results.json":
                found.add(match.parent)
            elif (match / "results.json").is_file():
                found.add(match)
            elif match.is_dir():
                found.update(
                    p.parent for p in match.rglob("results.json") if "wandb" not in p.parts
                )
    if not found:
        raise LabError(f"no results.json at or below {', '.join(paths)}")
    return sorted(found, key=_natural)


def _natural(path: Path) -> list:
    """Sort key that puts multirun job 2 before job 10."""
    return _natural_text(str(path))


def load_runs(dirs: list[Path]) -> list[Run]:
    runs = []
    for directory in dirs:
        try:
            results = json.loads((directory / "results.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            results = {"status": "unreadable", "error": f"{type(error).__name__}: {error}"}
        runs.append(Run(directory, results))
    return runs


def group_runs(runs: list[Run]) -> tuple[dict[tuple[str, str], list[Group]], list[Run]]:
    """Usable runs grouped per (benchmark, scenario); the others (incomplete, failed or
    diverged)."""
    complete = [r for r in runs if r.usable]
    excluded = [r for r in runs if not r.usable]
    groups: dict[tuple, Group] = {}
    for run in complete:
        settings = {k: v for k, v in flatten(run.config).items() if not k.startswith(NOT_GROUPED)}
        key = tuple(sorted(settings.items(), key=lambda item: item[0]))
        if key not in groups:
            groups[key] = Group(
                run.results["benchmark"], run.results["scenario"], run.results["strategy"], settings
            )
        groups[key].runs.append(run)
    tables: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for group in groups.values():
        tables[(group.benchmark, group.scenario)].append(group)
    for table in tables.values():  # groups stay in the order of their first run (the sweep's)
        _label(table)
    return dict(sorted(tables.items())), excluded


def check_splits(groups: list[Group], title: str) -> None:
    """A table holds the runs of one evaluation split: a LabError (one line naming the
    runs) where test and validation runs would share it."""
    by_split: dict[str, list[Path]] = defaultdict(list)
    for group in groups:
        by_split[group.split] += [r.path for r in group.runs]
    if len(by_split) < 2:
        return
    named = []
    for split, paths in sorted(by_split.items()):
        shown = ", ".join(map(str, paths[:3])) + (
            f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        )
        named.append(f"{split} ({shown})")
    raise LabError(
        f"{title} would mix evaluation splits: {'; '.join(named)}; report them apart "
        "(validation scores tune, test scores report)"
    )


def _varying(groups: list[Group], keys: list[str]) -> list[str]:
    return [k for k in keys if len({repr(g.settings.get(k)) for g in groups}) > 1]


def _label(groups: list[Group]) -> None:
    """Name each group by its strategy and the settings that differ within its table:
    a strategy's hyperparameters among the groups of that strategy, anything else among
    all groups (e.g. "ewc lambda=1000 optimizer.lr=0.1")."""
    keys = sorted({k for g in groups for k in g.settings})
    common = _varying(groups, [k for k in keys if not k.startswith("strategy.")])
    for group in groups:
        same = [g for g in groups if g.strategy == group.strategy]
        own = _varying(same, [k for k in keys if k.startswith("strategy.")])
        shown = []
        for k in own + common:
            value = group.settings.get(k)
            value = list(value) if isinstance(value, tuple) else value
            shown.append(f"{k.removeprefix('strategy.')}={value}")
        group.label = " ".join([group.strategy, *shown])
