"""Forgetting metrics computed from the accuracy matrix.

R is the accuracy matrix: `R[i][j]` is the test accuracy on task j after training on
tasks 0..i. `b[j]` is the accuracy on task j before any training on the stream.
With T tasks (indices from 0):

    acc          (Lopez-Paz & Ranzato 2017)  mean_j R[T-1][j]
    bwt          (Lopez-Paz & Ranzato 2017)  mean_{j<T-1} R[T-1][j] - R[j][j]
    fwt          (Lopez-Paz & Ranzato 2017)  mean_{j>=1} R[j-1][j] - b[j]
    forgetting   (Chaudhry et al. 2018)      mean_{j<T-1} max_{l in [j, T-2]} R[l][j] - R[T-1][j]
    learning_acc (Riemer et al. 2019)        mean_j R[j][j]
    avg_inc_acc  (Rebuffi et al. 2017)       mean_i mean_{j<=i} R[i][j]

A partial matrix (an unfinished run, k < T rows) is scored as the stream of the
k tasks trained so far: the metrics of R[:k, :k] and b[:k]. A metric whose mean
is over no task (bwt, fwt and forgetting with one task) is None, not 0: it is
undefined, and JSON has no NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("acc", "bwt", "fwt", "forgetting", "learning_acc", "avg_inc_acc")


def _mean_or_none(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def accuracy_metrics(
    acc_matrix: Sequence[Sequence[float]], init_acc: Sequence[float] | None = None
) -> dict[str, float | None]:
    """All metrics of design.md from R (k x T, k <= T) and b (length T, optional).

    Without b, fwt is None.
    """
    R = np.asarray(acc_matrix, dtype=float)
    if R.ndim != 2 or R.shape[0] == 0:
        return dict.fromkeys(METRIC_NAMES)
    k, T = R.shape
    if k > T:
        raise ValueError(f"accuracy matrix has {k} rows but only {T} columns")
    R = R[:k, :k]
    last = k - 1
    metrics: dict[str, float | None] = {
        "acc": float(R[last].mean()),
        "bwt": _mean_or_none([R[last, j] - R[j, j] for j in range(last)]),
        "fwt": None,
        "forgetting": _mean_or_none([R[j:last, j].max() - R[last, j] for j in range(last)]),
        "learning_acc": float(np.diag(R).mean()),
        "avg_inc_acc": float(np.mean([R[i, : i + 1].mean() for i in range(k)])),
    }
    if init_acc is not None:
        b = np.asarray(init_acc, dtype=float)
        metrics["fwt"] = _mean_or_none([R[j - 1, j] - b[j] for j in range(1, k)])
    return metrics


def forgetting_per_task(acc_matrix: Sequence[Sequence[float]]) -> list[float]:
    """Chaudhry et al. (2018) forgetting of each task j < k-1 (the terms of `forgetting`)."""
    R = np.asarray(acc_matrix, dtype=float)
    last = R.shape[0] - 1
    return [float(R[j:last, j].max() - R[last, j]) for j in range(last)]


def source_metrics(init_acc: float, accs: list[float]) -> dict[str, float | None]:
    """acc, bwt and forgetting of a pre-training source (lab.pretrain) after len(accs)
    tasks: its accuracy at the end, the change since the start, and the fall from its best."""
    if not accs:
        return {"acc": None, "bwt": None, "forgetting": None}
    final = accs[-1]
    return {
        "acc": final,
        "bwt": final - init_acc,
        "forgetting": max([init_acc, *accs[:-1]]) - final,
    }
