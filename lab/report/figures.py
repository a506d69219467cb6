"""The report's figures, each saved as PNG and PDF."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.report.runs import Group  # noqa: E402
from lab.tracking.heatmap import draw_acc_matrix  # noqa: E402


def _save(fig, path: Path) -> list[Path]:
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def accuracy_curves(groups: list[Group], path: Path, title: str) -> list[Path]:
    """One panel per task: its accuracy as the tasks are learned, one line per method,
    a band of ± one std over seeds."""
    num_tasks = groups[0].matrices().shape[2]
    cols = min(num_tasks, 5)
    rows = math.ceil(num_tasks / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharey=True, squeeze=False
    )
    x = np.arange(num_tasks)
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    for j, ax in enumerate(axes.flat):
        if j >= num_tasks:
            ax.set_visible(False)
            continue
        for group, color in zip(groups, colors, strict=False):
            column = 100 * group.matrices()[:, :, j]
            mean, std = column.mean(0), column.std(0, ddof=1) if len(column) > 1 else 0 * column[0]
            ax.plot(x, mean, marker="o", markersize=3, label=group.label, color=color)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        ax.axvline(j, color="grey", linestyle=":", linewidth=1)
        ax.set_title(groups[0].task_names()[j], fontsize=9)
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_xlabel("after training task")
        ax.set_ylim(-2, 102)
        if j % cols == 0:
            ax.set_ylabel("test accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(title)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return _save(fig, path)


def matrix_grid(groups: list[Group], path: Path, title: str) -> list[Path]:
    """The mean accuracy matrix of each method, as a grid of heatmaps."""
    cols = min(len(groups), 3)
    rows = math.ceil(len(groups) / cols)
    num_tasks = groups[0].matrices().shape[2]
    size = 0.7 * num_tasks + 2.5
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * size * cols, size * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        mean = group.matrices().mean(0)
        names = [f"T{j}" for j in range(num_tasks)]
        draw_acc_matrix(ax, mean.tolist(), None, names, fontsize=7)
        ax.set_title(f"{group.label} (n={len(group.runs)})", fontsize=9)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def forgetting_bars(groups: list[Group], path: Path, title: str) -> list[Path]:
    """Forgetting (Chaudhry et al. 2018) per method, mean ± std over seeds."""
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(groups) + 1.5), 3.5))
    values = [100 * np.array(g.values("forgetting") or [np.nan]) for g in groups]
    means = [v.mean() for v in values]
    stds = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]
    ax.bar(range(len(groups)), means, yerr=stds, capsize=4, color="tab:red", alpha=0.8)
    ax.set_xticks(range(len(groups)), [g.label for g in groups], rotation=30, ha="right")
    ax.set_ylabel("forgetting (%)")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _sample_std(values: np.ndarray) -> float:
    return values.std(ddof=1) if len(values) > 1 else 0.0


def pretrain_tradeoff(groups: list[Group], path: Path, title: str) -> list[Path]:
    """What a regime keeps of the pre-training source (its final accuracy) against what it
    learns of the stream (final ACC), one point per method, ± one std over seeds."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    for group, color in zip(groups, colors, strict=False):
        x, y = 100 * np.array(group.values("acc")), 100 * np.array(group.values("pretrain_acc"))
        if not len(y):
            continue
        ax.errorbar(
            x.mean(),
            y.mean(),
            xerr=_sample_std(x),
            yerr=_sample_std(y),
            fmt="o",
            capsize=3,
            color=color,
            label=group.label,
        )
    ax.set_xlabel("stream: final ACC (%)")
    ax.set_ylabel("pre-training source: final accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return _save(fig, path)
