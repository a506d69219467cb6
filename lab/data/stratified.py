"""The stratified train/test split of a dataset without one (scikit-learn's digits).

It is scikit-learn's `train_test_split(..., stratify=labels, random_state=seed)`, step for
step (StratifiedShuffleSplit and _approximate_mode in sklearn/model_selection/_split.py
and sklearn/utils/extmath.py of scikit-learn 1.9), written here for two reasons:
importing scikit-learn takes one to two seconds of every run on digits, and the lab's
digits split, which every digits figure in the manual rests on, should not move with
the installed scikit-learn's version. tests/test_datasets.py holds it equal to
scikit-learn's own.
"""

from __future__ import annotations

import math

import numpy as np


def _approximate_mode(class_counts: np.ndarray, draws: int, rng: np.random.RandomState):
    """How many of `draws` samples each class gets: its share rounded down, then one more
    for the classes with the largest remainders, ties broken at random."""
    continuous = class_counts / class_counts.sum() * draws
    floored = np.floor(continuous)
    need_to_add = int(draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add_now = min(len(tied), need_to_add)
            floored[rng.choice(tied, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), each in scikit-learn's shuffled order, with every class
    split in the proportion of the whole: test gets ceil(test_fraction * N) samples."""
    num_test = math.ceil(test_fraction * len(labels))
    num_train = len(labels) - num_test
    _, class_of = np.unique(labels, return_inverse=True)
    class_counts = np.bincount(class_of)
    members = np.split(np.argsort(class_of, kind="mergesort"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _approximate_mode(class_counts, num_train, rng)
    test_counts = _approximate_mode(class_counts - train_counts, num_test, rng)
    train: list[int] = []
    test: list[int] = []
    for indices, count, n_train, n_test in zip(
        members, class_counts, train_counts, test_counts, strict=True
    ):
        shuffled = indices.take(rng.permutation(count), mode="clip")
        train.extend(shuffled[:n_train])
        test.extend(shuffled[n_train : n_train + n_test])
    return rng.permutation(train), rng.permutation(test)
