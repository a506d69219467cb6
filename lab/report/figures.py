"""The report's figures, each saved as PNG and PDF, sized for a paper.

Every method keeps one colour in every figure of a report (`method_colors`). The figures
are drawn at most FIGURE_WIDTH wide with text of at least FONT_PT, so that at one-column
width (3.5 in) no text is smaller than FONT_PT * 3.5 / FIGURE_WIDTH ~ 6 pt. Layouts are
"constrained": no title or label overlaps another.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.report.runs import Group  # noqa: E402
from lab.tracking.heatmap import annotated, draw_acc_matrix  # noqa: E402

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
FIGURE_WIDTH = 5.2  # inches, at most
FONT_PT = 9  # the smallest text
STYLE = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "figure.titlesize": FONT_PT + 1,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable, and accepted by publishers
}


def method_colors(labels: Iterable[str]) -> dict[str, tuple]:
    """One colour per method label, in order of first appearance."""
    unique = list(dict.fromkeys(labels))
    palette = plt.get_cmap("tab10" if len(unique) <= 10 else "tab20").colors
    if len(unique) > 20:  # e.g. 5 regimes x 5 remedies: 40 distinct colours
        palette = palette + plt.get_cmap("tab20b").colors
    return {label: palette[i % len(palette)] for i, label in enumerate(unique)}


def _styled(draw: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Draw and save in the report's STYLE (rcParams are read as artists are made and
    as ticks are drawn, so the whole figure's life is inside it)."""

    @functools.wraps(draw)
    def styled(*args, **kwargs) -> list[Path]:
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)

    return styled


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    return plt.subplots(
        rows,
        cols,
        figsize=(min(width, FIGURE_WIDTH), height),
        squeeze=False,
        layout="constrained",
        **kwargs,
    )


def _save(fig, path: Path) -> list[Path]:
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return paths


def _std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample std over seeds; 0 for one seed (drawn as no band)."""
    if values.shape[axis] < 2:
        return np.zeros_like(values.mean(axis))
    return values.std(axis=axis, ddof=1)


@_styled
def accuracy_curves(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """One panel per task: its accuracy as the tasks are learned, one line per method,
    a band of ± one std over seeds. The legend takes the panel after the last task. Past
    ANNOTATED tasks, the aggregate form (seen_tasks_curves) instead."""
    num_tasks = groups[0].matrices().shape[2]
    if not annotated(num_tasks):
        return seen_tasks_curves(groups, colors, path, title)
    cols = min(num_tasks + 1, 2)
    rows = math.ceil((num_tasks + 1) / cols)
    fig, axes = _figure(FIGURE_WIDTH, 1.6 * rows + 0.4, rows, cols, sharey=True)
    x = np.arange(num_tasks)
    for j, ax in enumerate(axes.flat):
        if j >= num_tasks:
            ax.axis("off")
            continue
        for group in groups:
            column = 100 * group.matrices()[:, :, j]
            mean, std = column.mean(0), _std(column)
            color = colors[group.label]
            ax.plot(x, mean, marker="o", markersize=3, label=group.label, color=color)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        ax.axvline(j, color="grey", linestyle=":", linewidth=1)
        ax.set_title(groups[0].task_names()[j])
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_ylim(-2, 102)
        if j >= num_tasks - cols:
            ax.set_xlabel("after training task")
        if j % cols == 0:
            ax.set_ylabel("accuracy (%)")
    legend_ax = axes.flat[num_tasks]
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def seen_tasks_curves(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """A long stream's accuracy as it is learned, in two panels: after task i, the mean
    accuracy on tasks 0..i (ACC so far), and the accuracy on task 0; one line per method,
    a band of ± one std over seeds."""
    fig, axes = _figure(FIGURE_WIDTH, 2.9, 1, 2, sharey=True)
    for group in groups:
        matrices = 100 * group.matrices()  # seeds x rows x columns
        seen = np.array([m[i, : i + 1].mean() for m in matrices for i in range(len(m))])
        curves = (seen.reshape(len(matrices), -1), matrices[:, :, 0])
        x = np.arange(matrices.shape[1])
        for ax, values in zip(axes[0], curves, strict=True):
            mean, std = values.mean(0), _std(values)
            color = colors[group.label]
            ax.plot(x, mean, label=group.label, color=color)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
    for ax, name in zip(axes[0], ("mean over the tasks seen", "task 0"), strict=True):
        ax.set_title(name)
        ax.set_xlabel("after training task")
        ax.set_ylim(-2, 102)
    axes[0, 0].set_ylabel("accuracy (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()  # under the panels, off the lines
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(groups), 5), frameon=False
    )
    fig.suptitle(title)
    return _save(fig, path)


@_styled
def matrix_grid(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """The mean accuracy matrix of each method, as a grid of heatmaps (titles in the
    method's colour)."""
    cols = min(len(groups), 2)
    rows = math.ceil(len(groups) / cols)
    num_tasks = groups[0].matrices().shape[2]
    side = min(FIGURE_WIDTH / cols, 0.42 * num_tasks + 0.9)
    fig, axes = _figure(side * cols, side * rows + 0.4, rows, cols)
    for ax, group in zip(axes.flat, groups, strict=False):
        names = [f"T{j}" for j in range(num_tasks)]
        image = draw_acc_matrix(ax, group.matrices().mean(0).tolist(), None, names, FONT_PT)
        ax.set_title(f"{group.label} (n={len(group.runs)})", color=colors[group.label])
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    if not annotated(num_tasks):  # no numbers in the cells: the colours need a scale
        fig.colorbar(image, ax=list(axes.flat), label="accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


@_styled
def forgetting_bars(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """Forgetting (Chaudhry et al. 2018) per method, mean ± std over seeds."""
    fig, axes = _figure(max(COLUMN_WIDTH, 0.45 * len(groups) + 1.2), 2.8)
    ax = axes[0, 0]
    values = [100 * np.array(g.values("forgetting") or [np.nan]) for g in groups]
    ax.bar(
        range(len(groups)),
        [v.mean() for v in values],
        yerr=[float(_std(v)) for v in values],
        capsize=3,
        color=[colors[g.label] for g in groups],
    )
    ax.set_xticks(range(len(groups)), [g.label for g in groups], rotation=35, ha="right")
    ax.set_ylabel("forgetting (%)")
    ax.set_title(title)
    return _save(fig, path)


def _legend_below_height(entries: int) -> float:
    """A figure's height with a 3-inch plot and a one-column legend of `entries` below."""
    return 3.0 + 0.19 * entries


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """The indices of the points no other point beats on both coordinates (higher is
    better on each), from left to right."""
    front = [
        i
        for i, (x, y) in enumerate(points)
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for x2, y2 in points)
    ]
    return sorted(front, key=lambda i: points[i][0])


@_styled
def pretrain_tradeoff(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """What a regime keeps of the pre-training source (its final accuracy) against what it
    learns of the stream (final ACC), one point per method, ± one std over seeds; the
    methods on the Pareto front (no other is better on both) joined by a line and ringed."""
    fig, axes = _figure(FIGURE_WIDTH, _legend_below_height(len(groups) + 1))
    ax = axes[0, 0]
    means = []
    for group in groups:
        x = 100 * np.array(group.values("acc"))
        y = 100 * np.array(group.values("pretrain_acc"))
        if not len(y):
            continue
        means.append((float(x.mean()), float(y.mean())))
        ax.errorbar(
            x.mean(),
            y.mean(),
            xerr=float(_std(x)),
            yerr=float(_std(y)),
            fmt="o",
            capsize=3,
            color=colors[group.label],
            label=group.label,
        )
    front = [means[i] for i in pareto_front(means)]
    if front:
        ax.plot(*zip(*front, strict=True), color="0.3", lw=0.8, ls="--", zorder=0)
        ax.scatter(
            *zip(*front, strict=True),
            s=140,
            facecolors="none",
            edgecolors="0.3",
            label="Pareto front",
        )
    ax.set_xlabel("stream: final ACC (%)")
    ax.set_ylabel("source: final accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, frameon=False)
    return _save(fig, path)


def wise_ft_mean_curve(runs_curves: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alphas, mean stream ACC, mean source accuracy or nan) over the runs' curves."""
    alphas = np.array([point["alpha"] for point in runs_curves[0]])
    acc = np.array([[p["acc"] for p in c] for c in runs_curves]).mean(0)
    source = np.array(
        [[np.nan if p["source"] is None else p["source"] for p in c] for c in runs_curves]
    ).mean(0)
    return alphas, acc, source


@_styled
def wise_ft_curves(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """WiSE-FT's curve (results.json wise_ft_curve), mean over seeds: the source's accuracy
    against the stream's ACC as alpha goes from 0 (the pre-trained backbone) to 1 (the
    fine-tuned one), the straight line between the endpoints dashed: a curve above it
    gains on one side more than it loses on the other (Wortsman et al. 2022, fig. 1)."""
    fig, axes = _figure(COLUMN_WIDTH + 0.5, 3.8)
    ax = axes[0, 0]
    for group in groups:
        curves = [r.results["wise_ft_curve"] for r in group.runs if r.results.get("wise_ft_curve")]
        if not curves:
            continue
        alphas, acc, source = wise_ft_mean_curve(curves)
        x, y = 100 * acc, 100 * source
        color = colors[group.label]
        ax.plot(x, y, "o-", ms=3, color=color, label=group.label)
        ax.plot([x[0], x[-1]], [y[0], y[-1]], ls="--", lw=0.8, color=color)
        for a, xi, yi in zip(alphas, x, y, strict=True):
            if a in (0.0, 0.5, 1.0):
                ax.annotate(f"α={a:g}", (xi, yi), textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("stream: ACC (%)")
    ax.set_ylabel("source: accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, frameon=False)
    return _save(fig, path)


@_styled
def retention_vs_parameters(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """What each regime keeps of the pre-training source (its final accuracy, ± one std
    over seeds) against the parameters it trains (log scale), one point per method."""
    fig, axes = _figure(FIGURE_WIDTH, 4.6)
    ax = axes[0, 0]
    for group in groups:
        x = np.array(group.values("trainable_params"), dtype=float)
        y = 100 * np.array(group.values("pretrain_acc"))
        if not len(y) or not len(x):
            continue
        ax.errorbar(
            x.mean(),
            y.mean(),
            yerr=float(_std(y)),
            fmt="s" if group.strategy != "naive" else "o",
            capsize=3,
            color=colors[group.label],
            label=group.label,
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (backbone modules + heads)")
    ax.set_ylabel("source: final accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    return _save(fig, path)


def _finish_grid(fig, axes, used: int, ylabel: str, title: str, legend_columns: int):
    """A grid of panels: the unused ones hidden, y labels on the left, the first panel's
    legend under the grid, the title above it."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=legend_columns, frameon=False)
    fig.suptitle(title)
    return fig


@_styled
def head_vs_probe(
    groups: list[Group], colors: dict[str, tuple], path: Path, title: str
) -> list[Path]:
    """After the last task, each task's accuracy through the model's head (R, solid) and
    through a linear probe on the backbone's features (P, dashed), one panel per method,
    ± one std over seeds; dotted grey: the probe at the stream's start. Where the dashed
    line stays up and the solid one falls, the features kept the task and the head lost it."""
    groups = [g for g in groups if g.probed]
    cols = min(len(groups), 2)
    rows = math.ceil(len(groups) / cols)
    fig, axes = _figure(FIGURE_WIDTH, 1.9 * rows + 0.5, rows, cols, sharey=True)
    for ax, group in zip(axes.flat, groups, strict=False):
        head = 100 * group.matrices()[:, -1, :]
        probe = 100 * group.probe_matrices()[:, -1, :]
        start = 100 * np.array([r.results["probe_init"] for r in group.runs], dtype=float)
        x = np.arange(head.shape[1])
        color = colors[group.label]
        for values, style, label in ((head, "-", "head (R)"), (probe, "--", "probe (P)")):
            mean, std = values.mean(0), _std(values)
            ax.plot(x, mean, style, marker="o", markersize=3, color=color, label=label)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        ax.plot(x, start.mean(0), ":", color="grey", label="probe at the start")
        ax.set_title(f"{group.label} (n={len(group.runs)})", color=color)
        ax.set_xticks(x, [f"T{j}" for j in x])
        ax.set_ylim(-2, 102)
    return _save(_finish_grid(fig, axes, len(groups), "final accuracy (%)", title, 3), path)


@_styled
def cka_drift(groups: list[Group], colors: dict[str, tuple], path: Path, title: str) -> list[Path]:
    """Representation drift: each layer group's linear CKA with the stream's start after
    every task, one panel per layer group, one line per method, ± one std over seeds."""
    groups = [g for g in groups if g.cka_layers]
    layers = groups[0].cka_layers
    cols = min(len(layers), 2)
    rows = math.ceil(len(layers) / cols)
    fig, axes = _figure(FIGURE_WIDTH, 1.9 * rows + 0.6, rows, cols, sharey=True)
    for ax, layer in zip(axes.flat, layers, strict=False):
        for group in groups:
            values = group.cka(layer)
            x = np.arange(values.shape[1])
            mean, std = values.mean(0), _std(values)
            color = colors[group.label]
            ax.plot(x, mean, marker="o", markersize=3, color=color, label=group.label)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_title(layer.removeprefix("backbone."))
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_xlabel("after training task")
        ax.set_ylim(-0.02, 1.02)
    return _save(_finish_grid(fig, axes, len(layers), "CKA with the start", title, 2), path)


def swept_key(groups: list[Group]) -> str | None:
    """The one numeric setting a table's groups sweep (e.g. strategy.mem_size), if one."""
    keys = sorted({k for g in groups for k in g.settings})
    swept = []
    for key in keys:
        values = [g.settings[key] for g in groups if key in g.settings]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) > 1:
            swept.append(key)
    return swept[0] if len(swept) == 1 else None


@_styled
def sweep_curves(groups: list[Group], key: str, path: Path, title: str) -> list[Path]:
    """Final ACC and forgetting against the swept setting `key`, mean ± std over seeds, one
    line per method (the groups' labels without `key`)."""
    short = key.removeprefix("strategy.")
    lines: dict[str, list[Group]] = {}
    for g in groups:
        if key in g.settings:
            name = g.label.replace(f" {short}={g.settings[key]}", "")
            lines.setdefault(name, []).append(g)
    colors = method_colors(lines)
    values = [g.settings[key] for g in groups if key in g.settings]
    fig, axes = _figure(FIGURE_WIDTH, 2.4, 1, 2)
    for ax, metric, name in zip(axes[0], ("acc", "forgetting"), ("ACC", "forgetting"), strict=True):
        for line, members in lines.items():
            members = sorted(members, key=lambda g: g.settings[key])
            x = [g.settings[key] for g in members]
            runs = [100 * np.array(g.values(metric) or [np.nan]) for g in members]
            mean = np.array([r.mean() for r in runs])
            std = np.array([float(_std(r)) for r in runs])
            ax.plot(x, mean, marker="o", color=colors[line], label=line)
            ax.fill_between(x, mean - std, mean + std, color=colors[line], alpha=0.2, lw=0)
        if min(values) > 0 and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        ticks = sorted(set(values))
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()
        ax.set_xlabel(short)
        ax.set_ylabel(f"{name} (%)")
    axes[0, 0].legend(frameon=False)
    fig.suptitle(title)
    return _save(fig, path)
