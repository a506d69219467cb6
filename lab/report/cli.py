"""`lab-report PATH... [--out DIR]`: run directories to a paper-style report.

Reads only the runs' results.json, so a sweep can be analysed on a machine that never
trained it. Writes report.md (tables and figures), table.tex, table.csv and figures/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.errors import LabError
from lab.report.figures import accuracy_curves, forgetting_bars, matrix_grid, pretrain_tradeoff
from lab.report.runs import Group, Run, find_run_dirs, group_runs, load_runs
from lab.report.tables import latex_table, markdown_table, write_csv


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


def write_report(paths: list[str], out: Path) -> Path:
    """Build the report of the runs at or below `paths` into `out`; returns report.md."""
    runs = load_runs(find_run_dirs(paths))
    tables, excluded = group_runs(runs)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    usable = sum(len(g.runs) for groups in tables.values() for g in groups)
    diverged = sum(1 for r in excluded if r.status == "complete")
    md = [
        "# Forgetting report",
        "",
        f"{len(runs)} runs from {', '.join(paths)}: {usable} in the tables, "
        f"{diverged} diverged, {len(excluded) - diverged} incomplete or failed. "
        "Values in %, mean ± std over seeds (sample std); best mean per column in bold "
        "(lowest for forgetting).",
        "",
    ]
    tex = []
    for (benchmark, scenario), groups in tables.items():
        title = f"{benchmark}, {scenario}-IL"
        stem = f"{benchmark}_{scenario}"
        md += [f"## {title}", "", markdown_table(groups), ""]
        tex.append(latex_table(groups, f"{title}: mean $\\pm$ std over seeds (%)."))
        if _same_shape(groups):
            accuracy_curves(groups, figures / f"{stem}_accuracy", title)
            matrix_grid(groups, figures / f"{stem}_matrices", f"{title}: mean accuracy matrices")
            md += [
                f"![accuracy on each task]({figures.name}/{stem}_accuracy.png)",
                "",
                f"![mean accuracy matrices]({figures.name}/{stem}_matrices.png)",
                "",
            ]
        forgetting_bars(groups, figures / f"{stem}_forgetting", f"{title}: forgetting")
        md += [f"![forgetting]({figures.name}/{stem}_forgetting.png)", ""]
        if any(g.pretrained for g in groups):
            pretrain_tradeoff(groups, figures / f"{stem}_pretrain", f"{title}: old vs new")
            md += [f"![pre-training source vs stream]({figures.name}/{stem}_pretrain.png)", ""]
    md += _excluded_section(excluded)
    (out / "report.md").write_text("\n".join(md))
    (out / "table.tex").write_text("% requires \\usepackage{booktabs}\n" + "\n\n".join(tex) + "\n")
    write_csv(out / "table.csv", tables)
    return out / "report.md"


def _same_shape(groups: list[Group]) -> bool:
    return len({g.matrices().shape[1:] for g in groups}) == 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lab-report", description="Tables and figures from lab run directories."
    )
    parser.add_argument("paths", nargs="+", help="run dirs, sweep dirs or globs")
    parser.add_argument(
        "--out", type=Path, help="output dir (default: PATH/report for one dir, else ./report)"
    )
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        single = len(args.paths) == 1 and Path(args.paths[0]).is_dir()
        out = Path(args.paths[0]) / "report" if single else Path("report")
    try:
        report = write_report(args.paths, out)
    except LabError as error:
        print(f"lab-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {report}")
    print(
        report.read_text().split("\n## ")[1].split("![")[0].strip()
        if "\n## " in report.read_text()
        else ""
    )
