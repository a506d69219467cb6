"""`lab-report --wandb-report`: the sweep as a W&B Report (wandb-workspaces, reports v2).

Per method table (benchmark x scenario): a heading, an intro naming the benchmark, the
scenario and the grid, the method table with its statistics (markdown), and a panel grid
whose run set is the sweep's W&B group, runs grouped by name (a configuration's seeds
averaged, ± one std), holding:
  - metrics/acc and metrics/forgetting against the task, and eval/acc_task_j per task j;
  - a bar chart of the final ACC per method;
  - the runs' accuracy-matrix tables and heatmaps;
  - a run comparer;
  - with linear probes or CKA (lab.analysis): probe_metrics/acc and cka/LAYER per task;
  - in class-IL, the Task-IL (masked) ACC per task (task_masked/acc).
Every key comes from lab.tracking.wandb_keys, the list the runs' logger writes by.

--dry-run FILE writes the report's spec (its JSON model) and needs no API key and no
network: the report is given no entity, and its run sets no entity or project (either
makes wandb-workspaces ask the API).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.report.cli import Report
from lab.report.tables import Table, markdown_table
from lab.report.wandb_export import JOB_TYPE, Target
from lab.tracking import wandb_keys as keys

METHOD = "Name"  # runs are grouped by their W&B name: a configuration's seeds share it


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"a W&B filter cannot hold the quote in {value!r}")
    return f"'{value}'"


def _filters(table: Table, target: Target, several_tables: bool) -> str:
    """The table's runs: the sweep's group, less the summary run; with several tables in
    the report, also the table's benchmark and scenario."""
    parts = []
    if len(target.groups) == 1:
        parts.append(f"Group = {_quote(target.groups[0])}")
    elif target.groups:
        parts.append(f"Group in [{', '.join(map(_quote, target.groups))}]")
    parts.append(f"JobType != {_quote(JOB_TYPE)}")
    if several_tables:
        group = table.groups[0]
        parts.append(f"Config('benchmark.name') = {_quote(group.benchmark)}")
        parts.append(f"Config('scenario') = {_quote(group.scenario)}")
    return " and ".join(parts)


def intro(table: Table, target: Target) -> str:
    first = table.groups[0].runs[0].results
    tasks = first.get("tasks", [])
    seeds = sorted({r.results["seed"] for g in table.groups for r in g.runs})
    runs = sum(len(g.runs) for g in table.groups)
    where = ", ".join(f"`{g}`" for g in target.groups) or "(runs without a group)"
    task_list = "; ".join(t.get("description", str(t["id"])) for t in tasks)
    return (
        f"**Benchmark** {first['benchmark']}: {len(tasks)} tasks ({task_list}). "
        f"**Scenario** {first['scenario']}-IL.\n\n"
        f"**Grid** {len(table.groups)} methods ({', '.join(g.label for g in table.groups)}) "
        f"× {len(seeds)} seeds ({', '.join(map(str, seeds))}): {runs} complete runs, "
        f"W&B group {where}."
    )


def panels(
    num_tasks: int,
    probed: bool = False,
    cka_layers: list[str] | None = None,
    task_masked: bool = False,
) -> list:
    import wandb_workspaces.reports.v2 as wr

    grouped = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}

    def curve(title: str, key: str) -> wr.LinePlot:
        return wr.LinePlot(title=title, x=keys.STEP, y=[key], title_x="task", **grouped)

    return [
        curve("ACC (mean accuracy on the tasks so far)", keys.metric("acc")),
        curve("forgetting (Chaudhry et al. 2018)", keys.metric("forgetting")),
        *([curve("Task-IL (masked) ACC", keys.task_masked_metric("acc"))] if task_masked else []),
        *(curve(f"accuracy on task {j}", keys.eval_acc(j)) for j in range(num_tasks)),
        *([curve("linear-probe ACC (P)", keys.probe_metric("acc"))] if probed else []),
        *(curve(f"CKA with the start: {layer}", keys.cka(layer)) for layer in cka_layers or []),
        wr.BarPlot(title="final ACC", metrics=[keys.metric("acc")], **grouped),
        wr.WeavePanelSummaryTable(table_name=keys.MATRIX_WIDE),
        wr.MediaBrowser(title="accuracy matrices", media_keys=[keys.MATRIX_HEATMAP]),
        wr.RunComparer(diff_only="split"),
    ]


def build(report: Report, target: Target, entity: str, runsets_located: bool):
    """The W&B Report object. `runsets_located`: give the run sets the entity and project
    (saving needs them; the dry run must not have them)."""
    import wandb_workspaces.reports.v2 as wr

    titles = ", ".join(t.title for t in report.tables)
    blocks = [
        wr.MarkdownBlock(
            f"Made by `lab-report` from {', '.join(report.paths)}: {len(report.runs)} runs. "
            "Tables: mean ± std over seeds, in %; each method against the baseline."
        )
    ]
    for table in report.tables:
        runset = wr.Runset(
            entity=entity if runsets_located else "",
            project=target.project if runsets_located else "",
            name=table.title,
            filters=_filters(table, target, len(report.tables) > 1),
            groupby=[METHOD],
        )
        num_tasks = len(table.groups[0].runs[0].results.get("tasks", []))
        blocks += [
            wr.H2(table.title),
            wr.MarkdownBlock(intro(table, target)),
            wr.MarkdownBlock(markdown_table(table)),
            wr.PanelGrid(
                runsets=[runset],
                panels=panels(
                    num_tasks,
                    any(g.probed for g in table.groups),
                    next((g.cka_layers for g in table.groups if g.cka_layers), []),
                    any(g.task_masked for g in table.groups),
                ),
            ),
        ]
    return wr.Report(
        project=target.project,
        entity=entity,
        title=f"Forgetting: {titles}"[:128],
        description=f"lab-report of {', '.join(report.paths)}",
        blocks=blocks,
    )


def spec(wandb_report) -> dict[str, Any]:
    """The report's JSON model (wandb-workspaces' private serialiser, called only here)."""
    return wandb_report._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def load_spec(data: dict[str, Any]):
    """A Report back from its spec."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces.reports.v2 import internal

    return wr.Report._from_model(internal.ReportViewspec.model_validate(data))


def publish(report: Report, target: Target, dry_run: Path | None, share: bool) -> list[str]:
    """Write the spec (dry run), or save the report; returns the lines to print."""
    if dry_run is not None:
        data = spec(build(report, target, entity="", runsets_located=False))
        Path(dry_run).write_text(json.dumps(data, indent=1))
        return [f"W&B Report spec (dry run, not saved): {dry_run}"]
    import wandb

    entity = target.entity or wandb.Api().default_entity
    if not entity:
        raise RuntimeError("no W&B entity: pass --entity or log in with `wandb login`")
    wandb_report = build(report, target, entity, runsets_located=True)
    wandb_report.save()
    lines = [f"W&B Report: {wandb_report.url}"]
    if share:
        lines.append(f"share link: {wandb_report.enable_share_link()}")
    return lines
