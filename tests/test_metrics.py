"""Each metric against a matrix worked out by hand (design.md's definitions)."""

import pytest

from lab.metrics import METRIC_NAMES, accuracy_metrics, forgetting_per_task

# R[1][0] > R[0][0]: task 0 improved after task 1 and was then forgotten, so
# Chaudhry's forgetting (max over earlier rows) differs from -BWT (the diagonal).
R = [
    [0.90, 0.10, 0.20],
    [0.95, 0.80, 0.30],
    [0.50, 0.70, 0.95],
]
B = [0.10, 0.20, 0.25]


def test_full_matrix_by_hand():
    m = accuracy_metrics(R, B)
    assert m["acc"] == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    assert m["bwt"] == pytest.approx(((0.50 - 0.90) + (0.70 - 0.80)) / 2)  # -0.25
    assert m["fwt"] == pytest.approx(((0.10 - 0.20) + (0.30 - 0.25)) / 2)  # -0.025
    assert m["forgetting"] == pytest.approx(((0.95 - 0.50) + (0.80 - 0.70)) / 2)  # 0.275
    assert m["learning_acc"] == pytest.approx((0.90 + 0.80 + 0.95) / 3)
    assert m["avg_inc_acc"] == pytest.approx((0.90 + (0.95 + 0.80) / 2 + 2.15 / 3) / 3)


def test_forgetting_is_not_minus_bwt_when_accuracy_peaked_later():
    m = accuracy_metrics(R, B)
    assert m["forgetting"] == pytest.approx(0.275)
    assert -m["bwt"] == pytest.approx(0.25)
    assert forgetting_per_task(R) == pytest.approx([0.45, 0.10])


def test_partial_matrix_scores_the_tasks_trained_so_far():
    m = accuracy_metrics(R[:2], B)  # an unfinished run: 2 of 3 rows
    assert m["acc"] == pytest.approx((0.95 + 0.80) / 2)
    assert m["bwt"] == pytest.approx(0.95 - 0.90)
    assert m["forgetting"] == pytest.approx(0.90 - 0.95)  # it improved: negative forgetting
    assert m["fwt"] == pytest.approx(0.10 - 0.20)
    assert m["learning_acc"] == pytest.approx((0.90 + 0.80) / 2)
    assert m["avg_inc_acc"] == pytest.approx((0.90 + 0.875) / 2)


def test_one_task_leaves_transfer_and_forgetting_undefined():
    m = accuracy_metrics([[0.7]], [0.1])
    assert m == {
        "acc": 0.7,
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "learning_acc": 0.7,
        "avg_inc_acc": 0.7,
    }


def test_no_rows_and_no_init():
    assert accuracy_metrics([]) == dict.fromkeys(METRIC_NAMES)
    assert accuracy_metrics(R)["fwt"] is None
    assert accuracy_metrics(R)["acc"] == pytest.approx(2.15 / 3)


def test_more_rows_than_tasks_is_an_error():
    with pytest.raises(ValueError, match="3 rows but only 2 columns"):
        accuracy_metrics([[1, 0], [0, 1], [1, 1]])
