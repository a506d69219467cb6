"""The statistics of a method table: each cell's spread and its test against a baseline.

A cell is the metric's values over a configuration's seeds:
  mean, sample std (ddof=1) and n; for n >= 2 the 95% confidence interval of the mean,
  mean ± t_{0.975, n-1} · std / sqrt(n) (Student t).
Each method is compared with the baseline on ACC and forgetting (two-sided, H0: equal
means): a paired t-test over the seeds both ran when they ran the same seeds (the seed
fixes the stream and the initialisation, so the pairs share them), Welch's t-test
otherwise. The p-values of one table are corrected together with Holm's step-down method
(Holm 1979), which controls the family-wise error rate without assuming independence:
with the m p-values sorted, p_(k) adjusted = max_{i<=k} min(1, (m - i + 1) · p_(i)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # of the confidence intervals
ALPHA = 0.05  # of the tests, after Holm's correction
TESTED = ("acc", "forgetting")  # the metrics compared with the baseline
PAIRED, WELCH = "paired t-test", "Welch's t-test"


@dataclass(frozen=True)
class Cell:
    """A metric over a configuration's seeds, in the metric's own units (fractions)."""

    mean: float
    std: float | None  # None for one value: no spread was measured
    n: int
    ci: tuple[float, float] | None  # the 95% CI of the mean; None for one value
    p: float | None = None  # against the baseline, before correction
    p_holm: float | None = None  # after Holm's correction over the table
    test: str | None = None  # PAIRED or WELCH

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def describe(values: list[float]) -> Cell:
    """Mean, sample std, n and the Student-t confidence interval of `values`."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return Cell(mean, None, len(x), None)
    std, sem = float(x.std(ddof=1)), float(stats.sem(x))
    if sem == 0:  # every seed gave the same value: the interval is that value
        return Cell(mean, std, len(x), (mean, mean))
    low, high = stats.t.interval(LEVEL, len(x) - 1, loc=mean, scale=sem)
    return Cell(mean, std, len(x), (float(low), float(high)))


def compare(values: dict[int, float], baseline: dict[int, float]) -> tuple[float | None, str]:
    """Two-sided p-value of equal means, from {seed: value} of a method and the baseline:
    paired over the seeds when both ran the same seeds, Welch otherwise. None where the
    test has no answer (fewer than 2 values a side, or no variance at all)."""
    paired = sorted(values) == sorted(baseline)
    if paired:
        a = np.array([values[s] for s in sorted(values)])
        b = np.array([baseline[s] for s in sorted(values)])
        # constant differences (e.g. two deterministic methods) leave t undefined
        testable = len(a) >= 2 and not _constant(a - b)
        result = stats.ttest_rel(a, b) if testable else None
    else:
        a, b = np.array(list(values.values())), np.array(list(baseline.values()))
        testable = min(len(a), len(b)) >= 2 and not (_constant(a) and _constant(b))
        result = stats.ttest_ind(a, b, equal_var=False) if testable else None
    test = PAIRED if paired else WELCH
    if result is None or not math.isfinite(result.pvalue):
        return None, test
    return float(result.pvalue), test


def _constant(x: np.ndarray) -> bool:
    """Equal up to float rounding: accuracies are fractions of a test set."""
    return bool(np.ptp(x) <= 1e-12)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
