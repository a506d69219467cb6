"""The method table: mean ± std over seeds, best value per column in bold, and each method
tested against a baseline (lab.report.stats).

Written as markdown (report.md), booktabs LaTeX (table.tex) and a tidy CSV (table.csv:
one row per run, plus one aggregated row per group with n, CI and p-values).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.metrics import METRIC_NAMES
from lab.report.runs import Group, environment_differences, metric_of
from lab.report.stats import ALPHA, LEVEL, PAIRED, TESTED, WELCH, Cell, compare, describe, holm

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
# the linear probes' (analysis.probe): what the features keep, shown when a run has them
PROBE_COLUMNS = [
    ("probe_acc", "Probe ACC", 1),
    ("probe_forgetting", "Probe forgetting", -1),
]
# class-IL runs scored task-IL by masking, as Mammoth and PyCIL report Task-IL
TASK_MASKED_COLUMNS = [("task_masked_acc", "Task-IL (masked)", 1)]
# what a run costs: the parameters it trains (all of them: backbone modules and heads) and
# its seconds of training on the stream; plain numbers, not percentages, never bold
COST_COLUMNS = [("trainable_params", "Trainable params", 0), ("train_s", "Train time (s)", 0)]
CSV_METRICS = [
    *METRIC_NAMES,
    *(m for m, _, _ in PRETRAIN_COLUMNS + PROBE_COLUMNS + TASK_MASKED_COLUMNS + COST_COLUMNS),
    "task_masked_forgetting",
]
MARK = "†"  # a cell that differs from the baseline's


def columns(groups: list[Group]) -> list[tuple[str, str, int]]:
    shown = COLUMNS + (TASK_MASKED_COLUMNS if any(g.task_masked for g in groups) else [])
    shown += PRETRAIN_COLUMNS if any(g.pretrained for g in groups) else []
    shown += PROBE_COLUMNS if any(g.probed for g in groups) else []
    return shown + (COST_COLUMNS if any(g.costed for g in groups) else [])


@dataclass
class Table:
    """One benchmark x scenario: its groups, each (group, metric)'s Cell, the baseline."""

    title: str
    groups: list[Group]
    cells: dict[tuple[str, str], Cell]  # (group label, metric) -> Cell
    baseline: Group | None

    @property
    def stem(self) -> str:
        """The file-name stem of the table's figures, e.g. split_fmnist_class."""
        return f"{self.groups[0].benchmark}_{self.groups[0].scenario}"

    def cell(self, group: Group, metric: str) -> Cell | None:
        return self.cells.get((group.label, metric))

    def tests(self) -> list[Cell]:
        return [c for c in self.cells.values() if c.p_holm is not None]


def find_baseline(groups: list[Group], name: str, explicit: bool) -> Group | None:
    """The group labelled `name`, else the one group of strategy `name`, else None.
    Several groups of strategy `name` are an error when the user named it, else None."""
    for group in groups:
        if group.label == name:
            return group
    matches = [g for g in groups if g.strategy == name]
    if len(matches) > 1 and not explicit:
        return None
    if len(matches) > 1:
        labels = ", ".join(repr(g.label) for g in matches)
        raise LabError(f"--baseline {name!r} matches several methods ({labels}); name one of them")
    return matches[0] if matches else None


def build_table(title: str, groups: list[Group], baseline_name: str, explicit: bool) -> Table:
    """Every cell described; with a baseline, its tests, Holm-corrected over the table."""
    baseline = find_baseline(groups, baseline_name, explicit)
    cells: dict[tuple[str, str], Cell] = {}
    tested: list[tuple[tuple[str, str], float, str]] = []
    for group in groups:
        for metric in CSV_METRICS:
            values = group.by_seed(metric)
            if not values:
                continue
            cells[(group.label, metric)] = describe(list(values.values()))
            if baseline is not None and group is not baseline and metric in TESTED:
                p, test = compare(values, baseline.by_seed(metric))
                if p is not None:
                    tested.append(((group.label, metric), p, test))
    for (key, p, test), p_holm in zip(tested, holm([p for _, p, _ in tested]), strict=True):
        cell = cells[key]
        cells[key] = Cell(cell.mean, cell.std, cell.n, cell.ci, p, p_holm, test)
    return Table(title, groups, cells, baseline)


def _best(table: Table) -> dict[str, float]:
    """The best mean of each column, rounded as shown (ties are all bold)."""
    best = {}
    for metric, _, sign in columns(table.groups):
        if sign == 0:  # a cost column: no best
            continue
        means = [round(100 * c.mean, 1) for g in table.groups if (c := table.cell(g, metric))]
        if means:
            best[metric] = max(means) if sign > 0 else min(means)
    return best


def _cells(table: Table, group: Group, latex: bool, ci: bool) -> list[str]:
    """One cell per column: "mean ± std" (the mean alone for one seed), bold for the best
    mean of the table, the CI with `ci`, the mark where it differs from the baseline."""
    best, out = _best(table), []
    pm = r"$\pm$" if latex else "±"
    for metric, _, _ in columns(table.groups):
        cell = table.cell(group, metric)
        if cell is None:
            out.append("--" if latex else "–")
            continue
        if metric == "trainable_params":
            out.append(f"{cell.mean:,.0f}".replace(",", "{,}" if latex else ","))
            continue
        if metric == "train_s":
            spread = f" {pm} {cell.std:.1f}" if cell.std is not None else ""
            out.append(f"{cell.mean:.1f}{spread}")
            continue
        text = f"{100 * cell.mean:.1f}"
        if cell.std is not None:
            text += f" {pm} {100 * cell.std:.1f}"
        if round(100 * cell.mean, 1) == best.get(metric):
            text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
        if ci and cell.ci is not None:
            text += f" [{100 * cell.ci[0]:.1f}, {100 * cell.ci[1]:.1f}]"
        if cell.significant:
            text += r"$^\dagger$" if latex else MARK
        out.append(text)
    return out


def notes(table: Table, ci: bool) -> str:
    """What the table shows and how its marks were tested, as one paragraph (plain text)."""
    text = "Mean ± std over seeds (sample std; the mean alone for one seed), in %"
    if any(g.costed for g in table.groups):
        text += (
            " (trainable params: a count, of the backbone's trained modules and the heads; "
            "train time: seconds of training on the stream)"
        )
    subsets = sorted({n for g in table.groups if (n := g.settings.get("eval.samples_per_task"))})
    if subsets:  # lab-run eval.samples_per_task: not the whole test sets
        text += (
            f", on {' or '.join(map(str, subsets))} test samples per task (eval.samples_per_task)"
        )
    if ci:
        text += f"; [ ] the {LEVEL:.0%} confidence interval of the mean (Student t)"
    text += "; " + measured_on(table) + "."
    if any(g.task_masked for g in table.groups):
        text += (
            " Task-IL (masked): the ACC of the same class-IL models with each task's outputs "
            "masked to its classes at test time (Mammoth's and PyCIL's Task-IL)."
        )
    if table.baseline is None:
        return text + " No baseline in this table (lab-report --baseline NAME): no tests."
    count = len(table.tests())
    if count == 0:
        return f"{text} No test against {table.baseline.label}: it needs 2 seeds or more."
    how = {
        frozenset([PAIRED]): f"{PAIRED} over seeds",
        frozenset([WELCH]): WELCH,
        frozenset([PAIRED, WELCH]): f"{PAIRED} where both ran the same seeds, {WELCH} otherwise",
    }[frozenset(c.test for c in table.tests())]
    return (
        f"{text} {MARK}: differs from {table.baseline.label} at α = {ALPHA} "
        f"({how}, two-sided, on ACC and forgetting; Holm-corrected over the table's "
        f"{count} comparison{'s' if count != 1 else ''})."
    )


def measured_on(table: Table) -> str:
    """What the table's matrices were measured on (eval.split), and on which part of the
    stream (benchmark.tuning_tasks)."""
    if table.groups[0].split == "validation":
        fractions = sorted({g.settings.get("data.validation_fraction") for g in table.groups})
        held = " or ".join(f"{100 * f:g}%" for f in fractions if f)
        text = (
            f"measured on the validation slices (eval.split=validation: {held} of each class's "
            "training images, never trained on), not on the test sets"
        )
    else:
        text = "measured on the test sets (eval.split=test)"
    tuning = sorted({k for g in table.groups if (k := g.settings.get("benchmark.tuning_tasks"))})
    if tuning:
        k = " or ".join(map(str, tuning))
        part = "only the" if table.groups[0].split == "validation" else "the stream without its"
        text += f", on {part} first {k} tasks (benchmark.tuning_tasks, tuned on)"
    return text


def mixed_environment(table: Table) -> str | None:
    """One line when the table's runs ran on different devices, thread counts or library
    versions (results.json records them), where the same seed need not give the same
    numbers; None when they agree."""
    differences = environment_differences([r for g in table.groups for r in g.runs])
    if not differences:
        return None
    listed = "; ".join(f"{key} {', '.join(values)}" for key, values in differences.items())
    return (
        f"Warning: this table mixes runs that differ in {listed}; a config and seed give "
        "the same numbers only on the same device, thread count and library versions."
    )


def markdown_table(table: Table, ci: bool = False) -> str:
    shown = columns(table.groups)
    lines = ["| Method | " + " | ".join(t for _, t, _ in shown) + " | Seeds |"]
    lines.append("|---|" + "---:|" * len(shown) + "---:|")
    for group in table.groups:
        cells = _cells(table, group, latex=False, ci=ci)
        lines.append(f"| {_md(group.label)} | " + " | ".join(cells) + f" | {len(group.runs)} |")
    warning = mixed_environment(table)
    return "\n".join(lines) + "\n\n" + notes(table, ci) + (f"\n\n{warning}" if warning else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "α": r"$\alpha$",
}


def tex(text: str) -> str:
    """Plain text as LaTeX text: every special character escaped."""
    return "".join(TEX_ESCAPES.get(char, char) for char in text)


def latex_table(table: Table, ci: bool = False) -> str:
    shown = columns(table.groups)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(table.title)}. {tex(notes(table, ci))}}}",
        r"\begin{tabular}{l" + "c" * len(shown) + "r}",
        r"\toprule",
        "Method & " + " & ".join(t for _, t, _ in shown) + r" & Seeds \\",
        r"\midrule",
    ]
    for group in table.groups:
        cells = _cells(table, group, latex=True, ci=ci)
        lines.append(f"{tex(group.label)} & " + " & ".join(cells) + rf" & {len(group.runs)} \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def write_csv(path: Path, tables: list[Table]) -> None:
    """Tidy: kind=run rows (one per run, metrics as fractions) and kind=mean rows (mean,
    std, n and the 95% CI over the group's seeds, as fractions; for ACC and forgetting the
    test against the baseline: its p-value, Holm-corrected p-value and name)."""
    names = ["kind", "benchmark", "scenario", "method", "seed", "n_seeds", "run_dir", "baseline"]
    for m in CSV_METRICS:
        names += [m, f"{m}_std", f"{m}_n", f"{m}_ci_low", f"{m}_ci_high"]
        names += [f"{m}_p", f"{m}_p_holm", f"{m}_test"] if m in TESTED else []
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for table in tables:
            for group in table.groups:
                common = {
                    "benchmark": group.benchmark,
                    "scenario": group.scenario,
                    "method": group.label,
                    "baseline": table.baseline.label if table.baseline else "",
                }
                for run in group.runs:
                    row = {**common, "kind": "run", "seed": run.results["seed"], "n_seeds": 1}
                    row["run_dir"] = str(run.path)
                    row.update({m: metric_of(run.results, m) for m in CSV_METRICS})
                    writer.writerow(row)
                row = {**common, "kind": "mean", "n_seeds": len(group.runs)}
                for m in CSV_METRICS:
                    if (cell := table.cell(group, m)) is not None:
                        row.update(_csv_cell(m, cell))
                writer.writerow(row)


def _csv_cell(metric: str, cell: Cell) -> dict[str, object]:
    row = {metric: cell.mean, f"{metric}_std": cell.std, f"{metric}_n": cell.n}
    if cell.ci is not None:
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = cell.ci
    if cell.p is not None:
        row[f"{metric}_p"], row[f"{metric}_p_holm"] = cell.p, cell.p_holm
        row[f"{metric}_test"] = cell.test
    return row
