"""Read a run's heatmap PNG (acc_matrix.png, probe_matrix.png) back: the colour of each
cell, against the colour the cell's number has on the colour scale."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.image import imread

from lab.tracking.heatmap import acc_matrix_figure
from lab.tracking.summary import with_source_column

DPI = 120  # save_acc_matrix_png's


def shown_percentages(png: Path, results: dict, probe: bool = False) -> np.ndarray:
    """The percentages the cells of `png` show, read off the colour of each cell (a point
    a third of a cell off its centre, clear of its number) through viridis's 0-100 scale,
    as the figure of `results` lays the cells out: rows (before training, then after each
    task) x evaluated tasks. Exact to a point: the colour map's 256 steps of 0.4 points, read
    back from 8-bit pixels, where two neighbouring steps may round to one colour."""
    matrix, init = with_source_column(results, probe=probe)
    # the figure's layout: its size, tick labels and title as lab.tracking.summary has them
    names = [f"T{t['id']} ({t['description']})" for t in results["tasks"]]
    names += ["pretrain"] if results.get("pretrain") else []
    what = f"{results['strategy']} on {results['benchmark']}"
    what += f" ({results['scenario']}-IL, seed {results['seed']})"
    fig = acc_matrix_figure(matrix, init, names, title=f"linear probes: {what}" if probe else what)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    ax = fig.axes[0]
    image = imread(png)[..., :3]
    height = image.shape[0]
    assert image.shape[:2] == (round(fig.get_figheight() * DPI), round(fig.get_figwidth() * DPI))
    scale = plt.get_cmap("viridis")(np.linspace(0, 1, 256))[:, :3]
    rows = len(matrix) + (1 if init else 0)
    shown = np.zeros((rows, len(matrix[0])))
    for i in range(rows):
        for j in range(len(matrix[0])):
            x, y = ax.transData.transform((j + 0.33, i + 0.33))
            colour = image[int(round(height - y)), int(round(x))]
            distance = np.abs(scale - colour).sum(1)
            assert distance.min() < 0.03, f"cell ({i}, {j}) is not a viridis colour: {colour}"
            shown[i, j] = 100 * (distance.argmin() + 0.5) / 256  # the step's middle
    plt.close(fig)
    return shown


def assert_png_shows(png: Path, results: dict, probe: bool = False) -> None:
    """Every cell of the heatmap at `png` shows results.json's number (to a point)."""
    prefix = "probe_" if probe else ""
    rows = [results[f"{prefix}init_acc" if not probe else "probe_init"]]
    rows += results["probe_matrix" if probe else "acc_matrix"]
    source = results.get("pretrain")
    if source:  # the source's own column, last
        column = [source[f"{prefix}init_acc"], *source[f"{prefix}acc"]]
        rows = [[*row, a] for row, a in zip(rows, column, strict=True)]
    expected = 100 * np.array(rows, dtype=float)
    np.testing.assert_allclose(shown_percentages(png, results, probe), expected, atol=1.0)
