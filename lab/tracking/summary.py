"""What a run shows of its results: the summary lab-run prints, and the heatmaps.

Both read results.json's content only (lab.tracking.results), so they work as well on a
run that another machine trained.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lab.errors import brief

log = logging.getLogger(__name__)


def with_source_column(
    results: dict[str, Any], probe: bool = False
) -> tuple[list[list[float]], list[float]]:
    """The accuracy matrix and init row (with `probe`, the linear probes' P and its init
    row), with the pre-training source's as a last column when the run has a source."""
    prefix = "probe_" if probe else ""
    matrix = results["probe_matrix" if probe else "acc_matrix"]
    init = results["probe_init" if probe else "init_acc"]
    source = results.get("pretrain")
    if not source or f"{prefix}acc" not in source:
        return matrix, init
    rows = [[*r, a] for r, a in zip(matrix, source[f"{prefix}acc"], strict=True)]
    return rows, [*init, source[f"{prefix}init_acc"]]


def _percentages(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{k}={'n/a' if v is None else f'{100 * v:.2f}%'}" for k, v in metrics.items())


def _matrix_lines(title: str, matrix: list[list[float]], init: list[float], columns: list[str]):
    lines = [f"{title} (%): row i = after task i, column j = task j"]
    lines.append(" " * 12 + "".join(f"{c:>9}" for c in columns))
    lines.append("  init      " + "".join(f"{100 * a:9.1f}" for a in init))
    for i, row in enumerate(matrix):
        lines.append(f"  after T{i:<3}" + "".join(f"{100 * a:9.1f}" for a in row))
    return lines


def format_summary(results: dict[str, Any]) -> str:
    """The accuracy matrix (in %) and the metrics, as printed at the end of a run; with
    analysis, the linear probes' matrix and metrics and the last CKA row too."""
    matrix, init = with_source_column(results)
    columns = [f"T{j}" for j in range(len(results["tasks"]))]
    columns += ["pretrain"] if results.get("pretrain") else []
    lines = _matrix_lines("accuracy matrix", matrix, init, columns)
    lines.append(f"metrics: {_percentages(results['metrics'])}")
    if results.get("acc_matrix_task_masked"):  # class-IL, scored task-IL by masking
        masked = _percentages(results["metrics_task_masked"])
        lines.append(f"Task-IL (masked) metrics: {masked}")
    if results.get("diverged"):
        tasks = ", ".join(map(str, results["diverged"]))
        lines.append(
            f"diverged: the training loss became non-finite in task(s) {tasks}; "
            "lab-report keeps this run out of its means"
        )
    if results.get("pretrain"):
        source = results["pretrain"]
        lines.append(f"pretrain ({source['description']}): {_percentages(source['metrics'])}")
    if results.get("probe_matrix"):
        matrix, init = with_source_column(results, probe=True)
        lines += _matrix_lines("linear-probe accuracy matrix", matrix, init, columns)
        lines.append(f"probe metrics: {_percentages(results['probe_metrics'])}")
    if results.get("cka"):
        last = ", ".join(f"{name}={value:.3f}" for name, value in results["cka"][-1].items())
        lines.append(f"CKA with the start, after the last task: {last}")
    return "\n".join(lines)


def draw_heatmaps(run_dir: Path, results: dict[str, Any]) -> None:
    """acc_matrix.png, and probe_matrix.png with probes, of the rows the run has: once, when
    it ends (matplotlib costs a quarter of a second per figure, and seconds to import)."""
    if not results.get("acc_matrix"):
        return
    from lab.tracking.heatmap import save_acc_matrix_png

    names = [f"T{t['id']} ({t['description']})" for t in results["tasks"]]
    names += ["pretrain"] if results.get("pretrain") else []
    what = (
        f"{results['strategy']} on {results['benchmark']} "
        f"({results['scenario']}-IL, seed {results['seed']})"
    )
    try:
        matrix, init = with_source_column(results)
        save_acc_matrix_png(run_dir / "acc_matrix.png", matrix, init, names, title=what)
        if results.get("probe_matrix"):
            matrix, init = with_source_column(results, probe=True)
            title = f"linear probes: {what}"
            save_acc_matrix_png(run_dir / "probe_matrix.png", matrix, init, names, title=title)
        if results.get("wise_ft_curve"):
            save_wise_ft_png(run_dir / "wise_ft_curve.png", results["wise_ft_curve"], what)
    except Exception as error:  # noqa: BLE001 - a figure must not lose the run's results
        log.error("the heatmap could not be drawn (%s); results.json is complete", brief(error))


def save_wise_ft_png(path: Path, curve: list[dict[str, Any]], what: str) -> None:
    """wise_ft_curve.png: the stream's ACC and the source's accuracy against alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
    alphas = [p["alpha"] for p in curve]
    ax.plot(alphas, [100 * p["acc"] for p in curve], "o-", ms=3, label="stream ACC")
    if curve[0]["source"] is not None:
        ax.plot(alphas, [100 * p["source"] for p in curve], "s-", ms=3, label="source")
    ax.set_xlabel("alpha (0: pre-trained backbone, 1: fine-tuned)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"WiSE-FT: {what}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=150)
    plt.close(fig)
