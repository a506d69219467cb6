"""The accuracy matrix as an annotated heatmap (acc_matrix.png, and W&B's image)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def draw_acc_matrix(
    ax,
    acc_matrix: list[list[float]],
    init_acc: list[float] | None,
    task_names: list[str],
    fontsize: int = 9,
) -> None:
    """Rows: before training (if init_acc), then after each task; columns: evaluated task.

    Every cell is written in percent, so the heatmap reads without a colour bar.
    """
    rows = ([init_acc] if init_acc else []) + [list(r) for r in acc_matrix]
    row_names = (["before training"] if init_acc else []) + [
        f"after {task_names[i]}" for i in range(len(acc_matrix))
    ]
    values = np.array(rows, dtype=float) * 100
    ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        color = "black" if value > 60 else "white"
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=fontsize, color=color)
    labels = [f"eval {n}" for n in task_names]
    ax.set_xticks(range(len(task_names)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_names)), row_names)


def acc_matrix_figure(
    acc_matrix: list[list[float]],
    init_acc: list[float] | None,
    task_names: list[str],
    title: str = "",
) -> Figure:
    """The heatmap of one run (acc_matrix.png)."""
    size = max(4.0, 0.9 * len(task_names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.5, 0.8 * size))
    draw_acc_matrix(ax, acc_matrix, init_acc, task_names)
    ax.set_xlabel("evaluated on task (test accuracy, %)")
    ax.set_ylabel("model state")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_acc_matrix_png(path: Path, *args, **kwargs) -> None:
    fig = acc_matrix_figure(*args, **kwargs)
    fig.savefig(path, dpi=120)
    plt.close(fig)
