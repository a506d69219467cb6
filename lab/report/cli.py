"""`lab-report PATH... [--out DIR] [--baseline NAME] [--ci] [--wandb] [--wandb-report ...]`:
run directories to a paper-style report, and to W&B.

Reads only the runs' results.json, so a sweep can be analysed on a machine that never
trained it. Writes report.md (tables and figures), table.tex, table.csv and figures/;
then, if asked, a W&B summary run (lab.report.wandb_summary) and a W&B Report
(lab.report.wandb_report). The local report is written first and stays written whatever
W&B does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.report.figures import (
    accuracy_curves,
    cka_drift,
    forgetting_bars,
    head_vs_probe,
    matrix_grid,
    method_colors,
    pretrain_tradeoff,
    retention_vs_parameters,
    sweep_curves,
    swept_key,
    wise_ft_curves,
)
from lab.report.runs import Group, Run, check_splits, find_run_dirs, group_runs, load_runs
from lab.report.tables import Table, build_table, latex_table, markdown_table, write_csv
from lab.tracking.heatmap import ANNOTATED

DEFAULT_BASELINE = "naive"


@dataclass
class Report:
    """What write_report made: the files in `out`, and what they were made from."""

    paths: list[str]
    out: Path
    runs: list[Run]
    tables: list[Table]
    figures: list[Path]  # the PNGs (each has its PDF beside it)

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"


def _excluded_section(runs: list[Run]) -> list[str]:
    if not runs:
        return []
    lines = [
        "## Incomplete, failed or diverged runs (not in the tables)",
        "",
        "| run dir | status | tasks done | error |",
        "|---|---|---:|---|",
    ]
    for run in runs:
        done = len(run.results.get("acc_matrix", []))
        total = len(run.results.get("tasks", [])) or "?"
        error = run.results.get("error", "").replace("|", "\\|")
        status = run.status
        if run.results.get("diverged"):
            tasks = ", ".join(map(str, run.results["diverged"]))
            status += f", diverged (non-finite training loss in task {tasks})"
        lines.append(f"| {run.path} | {status} | {done}/{total} | {error} |")
    return [*lines, ""]


def build_tables(runs: list[Run], baseline: str | None) -> tuple[list[Table], list[Run]]:
    """The method tables (one per benchmark x scenario) and the runs left out of them.
    `baseline`: a method label or strategy; None for the default (naive, where present)."""
    grouped, excluded = group_runs(runs)
    for (benchmark, scenario), groups in grouped.items():
        check_splits(groups, f"the table of {benchmark}, {scenario}-IL")
    tables = [
        build_table(
            f"{benchmark}, {scenario}-IL",
            groups,
            baseline or DEFAULT_BASELINE,
            explicit=baseline is not None,
        )
        for (benchmark, scenario), groups in grouped.items()
    ]
    if baseline is not None and tables and all(t.baseline is None for t in tables):
        labels = sorted({g.label for t in tables for g in t.groups})
        raise LabError(
            f"--baseline {baseline!r} is not a method of these runs; "
            f"valid: {', '.join(repr(label) for label in labels)}"
        )
    return tables, excluded


def _figures(table: Table, colors: dict, figures: Path) -> list[tuple[str, Path]]:
    """The table's figures: (caption, png path)."""
    groups, title, stem = table.groups, table.title, table.stem
    made = []
    if _same_shape(groups):
        accuracy_curves(groups, colors, figures / f"{stem}_accuracy", title)
        long = groups[0].matrices().shape[2] > ANNOTATED  # drawn in the aggregate form
        caption = "mean accuracy on the tasks seen, and on task 0" if long else None
        made.append((caption or "accuracy on each task", figures / f"{stem}_accuracy.png"))
        matrix_grid(groups, colors, figures / f"{stem}_matrices", f"{title}: mean matrices")
        made.append(("mean accuracy matrices", figures / f"{stem}_matrices.png"))
    forgetting_bars(groups, colors, figures / f"{stem}_forgetting", f"{title}: forgetting")
    made.append(("forgetting", figures / f"{stem}_forgetting.png"))
    if key := swept_key(groups):
        sweep_curves(groups, key, figures / f"{stem}_sweep", f"{title}: {key}")
        made.append((f"ACC and forgetting against {key}", figures / f"{stem}_sweep.png"))
    if any(g.probed for g in groups):
        head_vs_probe(groups, colors, figures / f"{stem}_probes", f"{title}: head vs probe")
        made.append(("head vs linear probe", figures / f"{stem}_probes.png"))
    if any(g.cka_layers for g in groups):
        cka_drift(groups, colors, figures / f"{stem}_cka", f"{title}: representation drift")
        made.append(("representation drift (CKA)", figures / f"{stem}_cka.png"))
    if any(g.pretrained for g in groups):
        pretrain_tradeoff(groups, colors, figures / f"{stem}_pretrain", f"{title}: old vs new")
        made.append(("pre-training source vs stream", figures / f"{stem}_pretrain.png"))
        if len({v for g in groups for v in g.values("trainable_params")}) > 1:
            name = f"{stem}_retention_params"
            retention_vs_parameters(groups, colors, figures / name, f"{title}: source kept")
            made.append(("source retention vs trainable parameters", figures / f"{name}.png"))
    if any(r.results.get("wise_ft_curve") for g in groups for r in g.runs):
        curve = [g for g in groups if any(r.results.get("wise_ft_curve") for r in g.runs)]
        wise_ft_curves(curve, colors, figures / f"{stem}_wise_ft", f"{title}: WiSE-FT curve")
        made.append(("WiSE-FT: source against stream over alpha", figures / f"{stem}_wise_ft.png"))
    return made


def write_report(
    paths: list[str], out: Path, baseline: str | None = None, ci: bool = False
) -> Report:
    """Build the report of the runs at or below `paths` into `out`."""
    runs = load_runs(find_run_dirs(paths))
    tables, excluded = build_tables(runs, baseline)
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    usable = sum(len(g.runs) for t in tables for g in t.groups)
    diverged = sum(1 for r in excluded if r.status == "complete")
    md = [
        "# Forgetting report",
        "",
        f"{len(runs)} runs from {', '.join(paths)}: {usable} in the tables, "
        f"{diverged} diverged, {len(excluded) - diverged} incomplete or failed. "
        "Best mean per column in bold (lowest for forgetting).",
        "",
    ]
    colors = method_colors(g.label for t in tables for g in t.groups)
    pngs = []
    for table in tables:
        md += [f"## {table.title}", "", markdown_table(table, ci), ""]
        for caption, png in _figures(table, colors, figures):
            md += [f"![{caption}]({figures.name}/{png.name})", ""]
            pngs.append(png)
    md += _excluded_section(excluded)
    (out / "report.md").write_text("\n".join(md))
    tex = "\n\n".join(latex_table(t, ci) for t in tables)
    (out / "table.tex").write_text(f"% requires \\usepackage{{booktabs}}\n{tex}\n")
    write_csv(out / "table.csv", tables)
    return Report(list(paths), out, runs, tables, pngs)


def _same_shape(groups: list[Group]) -> bool:
    return len({g.matrices().shape[1:] for g in groups}) == 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lab-report", description="Tables and figures from lab run directories."
    )
    parser.add_argument("paths", nargs="+", help="run dirs, sweep dirs or globs")
    parser.add_argument(
        "--out", type=Path, help="output dir (default: PATH/report for one dir, else ./report)"
    )
    parser.add_argument(
        "--baseline",
        help="the method every other is tested against, on ACC and forgetting: a strategy "
        f"or a method's label as the table shows it (default: {DEFAULT_BASELINE}, if present)",
    )
    parser.add_argument(
        "--ci", action="store_true", help="show 95%% confidence intervals in the tables"
    )
    parser.add_argument(
        "--best",
        action="store_true",
        help="for each search (lab-run -m +hpo=NAME) at or below the paths: the best "
        "configuration on validation, its score, its trial count and the command that "
        "reruns it on the test sets over seeds",
    )
    wandb = parser.add_argument_group("Weights & Biases")
    wandb.add_argument(
        "--wandb",
        action="store_true",
        help="log the report as one W&B run (job_type report) in the sweep's group",
    )
    wandb.add_argument(
        "--wandb-report", action="store_true", help="build a W&B Report of the sweep"
    )
    wandb.add_argument("--entity", help="W&B entity (default: WANDB_ENTITY, else the runs')")
    wandb.add_argument(
        "--project",
        help="W&B project (default: WANDB_PROJECT, else the runs', else forgetting-lab)",
    )
    wandb.add_argument("--share", action="store_true", help="also print a share link")
    wandb.add_argument(
        "--dry-run",
        type=Path,
        metavar="FILE",
        help="write the W&B Report's spec (JSON) to FILE instead of saving it: no network",
    )
    args = parser.parse_args(argv)
    if (args.share or args.dry_run) and not args.wandb_report:
        parser.error("--share and --dry-run go with --wandb-report")
    if args.share and args.dry_run:
        parser.error("--share needs a saved report, and --dry-run saves none")
    return args


def print_best(paths: list[str]) -> int:
    """lab-report --best: each search's best trial(s) and its test command."""
    from lab.hpo import best, find_searches, format_best

    searches = find_searches(paths)
    if not searches:
        print(
            f"lab-report: error: no search (hpo.json) at or below {', '.join(paths)}; valid: "
            "the sweep dir of lab-run -m +hpo=NAME",
            file=sys.stderr,
        )
        return 2
    found = sorted((best(path) for path in searches), key=lambda b: (b.strategy, str(b.sweep_dir)))
    print("\n\n".join(format_best(b) for b in found))
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.best:
        sys.exit(print_best(args.paths))
    out = args.out
    if out is None:
        single = len(args.paths) == 1 and Path(args.paths[0]).is_dir()
        out = Path(args.paths[0]) / "report" if single else Path("report")
    try:
        report = write_report(args.paths, out, args.baseline, args.ci)
    except LabError as error:
        print(f"lab-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {report.markdown}")
    for table in report.tables:
        print(f"\n{table.title}\n\n{markdown_table(table, args.ci)}")
    if args.wandb or args.wandb_report:
        from lab.report.wandb_export import export

        sys.exit(export(report, args))
