"""The method table: mean ± std over seeds, best value per column in bold.

Written as markdown (report.md), booktabs LaTeX (table.tex) and a tidy CSV (table.csv:
one row per run, plus one aggregated row per group).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from lab.metrics import METRIC_NAMES
from lab.report.runs import Group, metric_of

# (metric, column title, +1 if higher is better)
COLUMNS = [
    ("acc", "ACC", 1),
    ("forgetting", "Forgetting", -1),
    ("bwt", "BWT", 1),
    ("fwt", "FWT", 1),
    ("learning_acc", "Learning acc.", 1),
]
# the pre-training source's own metrics (lab.pretrain), shown when a run has a source
PRETRAIN_COLUMNS = [
    ("pretrain_acc", "Pretrain ACC", 1),
    ("pretrain_forgetting", "Pretrain forgetting", -1),
]


def columns(groups: list[Group]) -> list[tuple[str, str, int]]:
    return COLUMNS + (PRETRAIN_COLUMNS if any(g.pretrained for g in groups) else [])


def mean_std(values: list[float]) -> tuple[float, float] | None:
    """Mean and sample std (ddof=1; 0 for one seed) in percent, or None without values."""
    if not values:
        return None
    percent = [100 * v for v in values]
    return statistics.mean(percent), statistics.stdev(percent) if len(percent) > 1 else 0.0


def _best(groups: list[Group]) -> dict[str, float]:
    """The best mean of each column, rounded as shown (ties are all bold)."""
    best = {}
    for metric, _, sign in columns(groups):
        means = [round(s[0], 1) for g in groups if (s := mean_std(g.values(metric)))]
        if means:
            best[metric] = max(means) if sign > 0 else min(means)
    return best


def _cells(group: Group, best: dict[str, float], pm: str, bold, missing: str, shown) -> list[str]:
    """One "mean pm std" cell per column, `bold` applied to the best mean of the table."""
    cells = []
    for metric, _, _ in shown:
        stats = mean_std(group.values(metric))
        if stats is None:
            cells.append(missing)
            continue
        cell = f"{stats[0]:.1f} {pm} {stats[1]:.1f}"
        cells.append(bold(cell) if round(stats[0], 1) == best.get(metric) else cell)
    return cells


def markdown_table(groups: list[Group]) -> str:
    best, shown = _best(groups), columns(groups)
    lines = ["| Method | " + " | ".join(t for _, t, _ in shown) + " | Seeds |"]
    lines.append("|---|" + "---:|" * len(shown) + "---:|")
    for group in groups:
        cells = _cells(group, best, "±", lambda cell: f"**{cell}**", "–", shown)
        lines.append(f"| {group.label} | " + " | ".join(cells) + f" | {len(group.runs)} |")
    return "\n".join(lines)


def _tex(text: str) -> str:
    for char in "_%&#$":
        text = text.replace(char, "\\" + char)
    return text


def latex_table(groups: list[Group], caption: str) -> str:
    best, shown = _best(groups), columns(groups)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex(caption)}}}",
        r"\begin{tabular}{l" + "c" * len(shown) + "r}",
        r"\toprule",
        "Method & " + " & ".join(t for _, t, _ in shown) + r" & Seeds \\",
        r"\midrule",
    ]
    for group in groups:
        cells = _cells(group, best, "$\\pm$", lambda cell: rf"\textbf{{{cell}}}", "--", shown)
        lines.append(f"{_tex(group.label)} & " + " & ".join(cells) + rf" & {len(group.runs)} \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def write_csv(path: Path, tables: dict[tuple[str, str], list[Group]]) -> None:
    """Tidy: kind=run rows (one per run, metrics as fractions) and kind=mean rows (mean and
    std over the group's seeds, as fractions)."""
    columns = ["kind", "benchmark", "scenario", "method", "seed", "n_seeds", "run_dir"]
    metrics = [*METRIC_NAMES, *(m for m, _, _ in PRETRAIN_COLUMNS)]
    columns += [c for m in metrics for c in (m, f"{m}_std")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for (benchmark, scenario), groups in tables.items():
            for group in groups:
                common = {"benchmark": benchmark, "scenario": scenario, "method": group.label}
                for run in group.runs:
                    row = {**common, "kind": "run", "seed": run.results["seed"], "n_seeds": 1}
                    row["run_dir"] = str(run.path)
                    row.update({m: metric_of(run.results, m) for m in metrics})
                    writer.writerow(row)
                row = {**common, "kind": "mean", "n_seeds": len(group.runs)}
                for m in metrics:
                    values = group.values(m)
                    if values:
                        row[m] = statistics.mean(values)
                        row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                writer.writerow(row)
