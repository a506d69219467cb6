"""`lab-report --wandb` and `--wandb-report`: the local report, shared through W&B.

--wandb          one W&B run in the sweep's group, job_type "report", holding the method
                 table with its statistics (a wandb.Table, key report/table), the figures
                 (report/figures/NAME) and report.md, table.tex, table.csv and figures/ as an
                 artifact of type "report". Offline by default, like lab-run's runs: `wandb
                 sync` uploads it with the sweep.
--wandb-report   a W&B Report of the sweep (lab.report.wandb_report); with --dry-run FILE
                 only its spec, with no network.

Where it goes is resolved as lab-run's logger resolves it: --entity/--project, else the
environment (WANDB_ENTITY, WANDB_PROJECT, WANDB_MODE), else the runs' own W&B settings,
else conf/logger/wandb.yaml (project forgetting-lab, offline). The W&B group is the runs'
(results.json "wandb"), else the sweep directory's name, as lab-run names it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.report.cli import Report
from lab.report.runs import Run
from lab.report.stats import TESTED
from lab.report.tables import CSV_METRICS

JOB_TYPE = "report"
TABLE_KEY = "report/table"
TABLE_COLUMNS = [
    "benchmark",
    "scenario",
    "method",
    "metric",
    "mean",
    "std",
    "n",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "test",
    "significant",
    "baseline",
]


@dataclass
class Target:
    project: str
    entity: str | None
    mode: str  # offline | online | disabled
    groups: list[str]  # the runs' W&B groups

    @property
    def group(self) -> str | None:
        """The summary run's group: the sweep's, when the runs are one sweep."""
        return self.groups[0] if len(self.groups) == 1 else None


def _logger_defaults() -> dict[str, Any]:
    from omegaconf import OmegaConf

    from lab.run import config_dir

    config = OmegaConf.load(Path(config_dir()) / "logger" / "wandb.yaml")
    return OmegaConf.to_container(config, resolve=True)


def run_group(run: Run) -> str | None:
    """The W&B group lab-run gave the run: recorded, set, or its sweep directory's name."""
    if (logged := run.results.get("wandb")) and logged.get("group"):
        return logged["group"]
    if group := run.config.get("logger", {}).get("group"):
        return group
    sweep = run.path.parent
    return sweep.name if (sweep / "multirun.yaml").exists() else None


def resolve_target(runs: list[Run], entity: str | None, project: str | None) -> Target:
    own: dict[str, Any] = {}
    for run in runs:
        logger = run.config.get("logger", {})
        if logger.get("name") == "wandb":
            own = {**logger, **{k: v for k, v in run.results.get("wandb", {}).items() if v}}
            break
    defaults = _logger_defaults()

    def pick(key: str, flag: str | None) -> Any:
        return flag or os.environ.get(f"WANDB_{key.upper()}") or own.get(key) or defaults[key]

    groups = sorted({g for run in runs if (g := run_group(run))})
    return Target(pick("project", project), pick("entity", entity), pick("mode", None), groups)


def stats_rows(report: Report) -> list[list[Any]]:
    """The report/table rows: one per method and metric (fractions, like the runs')."""
    rows = []
    for table in report.tables:
        baseline = table.baseline.label if table.baseline else None
        for group in table.groups:
            for metric in CSV_METRICS:
                if (cell := table.cell(group, metric)) is None:
                    continue
                low, high = cell.ci or (None, None)
                rows.append(
                    [group.benchmark, group.scenario, group.label, metric, cell.mean, cell.std]
                    + [cell.n, low, high, cell.p, cell.p_holm, cell.test]
                    + [cell.significant if metric in TESTED and cell.p is not None else None]
                    + [baseline]
                )
    return rows


def log_summary_run(report: Report, target: Target) -> str:
    """The summary run; returns where it went (its URL, or how to upload it)."""
    import wandb

    name = f"report {target.group or 'of ' + ', '.join(report.paths)}"
    run = wandb.init(
        project=target.project,
        entity=target.entity,
        group=target.group,
        job_type=JOB_TYPE,
        name=name[:128],
        dir=str(report.out),
        mode=target.mode,
        config={
            "paths": report.paths,
            "runs": len(report.runs),
            "groups": target.groups,
            "tables": [t.title for t in report.tables],
            "baselines": [t.baseline.label if t.baseline else None for t in report.tables],
        },
        settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
    )
    try:
        table = wandb.Table(columns=TABLE_COLUMNS, data=stats_rows(report))
        images = {f"report/figures/{p.stem}": wandb.Image(str(p)) for p in report.figures}
        run.log({TABLE_KEY: table, **images})
        label = re.sub(r"[^\w.-]+", "-", target.group or run.id)
        artifact = wandb.Artifact(f"report-{label}", type=JOB_TYPE, description=name)
        for file in ("report.md", "table.tex", "table.csv"):
            artifact.add_file(str(report.out / file))
        artifact.add_dir(str(report.out / "figures"), name="figures")
        run.log_artifact(artifact)
    finally:
        run.finish()
    if target.mode == "online":
        return f"W&B summary run: {run.url}"
    if target.mode == "offline":
        return f"W&B summary run (offline); upload it with: wandb sync {run.settings.sync_dir}"
    return "W&B summary run: not logged (W&B mode disabled)"


def _fail(what: str, error: BaseException, out: Path) -> None:
    lines = str(error).strip().splitlines()
    print(
        f"lab-report: error: {what} failed ({type(error).__name__}: "
        f"{lines[0] if lines else ''}); the local report in {out} is complete",
        file=sys.stderr,
    )


def export(report: Report, args: argparse.Namespace) -> int:
    """The W&B parts lab-report was asked for; 0, or 1 if one of them failed."""
    from lab.report import wandb_report

    status = 0
    target = resolve_target(report.runs, args.entity, args.project)
    if args.wandb:
        try:
            print(log_summary_run(report, target))
        except Exception as error:  # noqa: BLE001 - W&B must never take the local report
            _fail("the W&B summary run", error, report.out)
            status = 1
    if args.wandb_report:
        try:
            for line in wandb_report.publish(report, target, args.dry_run, args.share):
                print(line)
        except Exception as error:  # noqa: BLE001
            _fail("the W&B Report", error, report.out)
            status = 1
    if "wandb" in sys.modules:  # its service process would hold the exit for minutes
        sys.modules["wandb"].teardown()
    return status
