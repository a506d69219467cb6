"""The accuracy matrix as an annotated heatmap (acc_matrix.png, and W&B's image).

Up to ANNOTATED tasks every cell is written in percent; a longer stream's cells are too
small to read, so it gets a colour bar instead, and every k-th task's tick."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

ANNOTATED = 20  # tasks: the most whose cells are written out


def draw_acc_matrix(
    ax,
    acc_matrix: list[list[float]],
    init_acc: list[float] | None,
    task_names: list[str],
    fontsize: int = 9,
) -> AxesImage:
    """Rows: before training (if init_acc), then after each task; columns: evaluated task.

    Up to ANNOTATED tasks every cell is written in percent, so the heatmap reads without a
    colour bar; past that the caller adds one (`annotated`)."""
    rows = ([init_acc] if init_acc else []) + [list(r) for r in acc_matrix]
    row_names = (["before training"] if init_acc else []) + [
        f"after {task_names[i]}" for i in range(len(acc_matrix))
    ]
    values = np.array(rows, dtype=float) * 100
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    if annotated(len(task_names)):
        for (i, j), value in np.ndenumerate(values):
            color = "black" if value > 60 else "white"
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=fontsize, color=color)
    step = math.ceil(len(task_names) / ANNOTATED)
    columns = range(0, len(task_names), step)
    labels = [f"eval {task_names[j]}" for j in columns]
    ax.set_xticks(columns, labels, rotation=30, ha="right")
    first = 1 if init_acc else 0
    shown = [0] * first + [first + i for i in range(0, len(acc_matrix), step)]
    ax.set_yticks(shown, [row_names[r] for r in shown])
    return image


def annotated(num_tasks: int) -> bool:
    return num_tasks <= ANNOTATED


def acc_matrix_figure(
    acc_matrix: list[list[float]],
    init_acc: list[float] | None,
    task_names: list[str],
    title: str = "",
) -> Figure:
    """The heatmap of one run (acc_matrix.png)."""
    size = min(max(4.0, 0.9 * len(task_names) + 2.5), 12.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, 0.8 * size))
    image = draw_acc_matrix(ax, acc_matrix, init_acc, task_names)
    if not annotated(len(task_names)):
        fig.colorbar(image, ax=ax, label="test accuracy (%)")
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
