"""Split, permuted and rotated streams on real digits, in the three scenarios."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

import lab.experiment
from lab.data import build_stream, load_dataset
from lab.experiment import make_stream, run_experiment


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "unused")


def test_split_partitions_classes_and_samples(digits):
    stream = build_stream(digits, "split", "class", num_tasks=5, seed=0, standardize=False)
    assert [t.classes for t in stream.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(len(t.train_y) for t in stream.tasks) == len(digits.train_y)
    assert sum(len(t.test_y) for t in stream.tasks) == len(digits.test_y)
    for task in stream.tasks:  # class-IL targets are the dataset labels
        assert set(task.train_y.tolist()) == set(task.classes)
        assert torch.equal(
            task.train_x[:], digits.train_x[torch.isin(digits.train_y, task.train_y)]
        )


@pytest.mark.parametrize(
    "scenario, head_sizes, targets",
    [("task", [2] * 5, {0, 1}), ("domain", [2], {0, 1}), ("class", [10], None)],
)
def test_scenario_targets_and_heads(digits, scenario, head_sizes, targets):
    stream = build_stream(digits, "split", scenario, num_tasks=5, seed=0)
    assert stream.head_sizes == head_sizes
    for task in stream.tasks:
        assert set(task.test_y.tolist()) == (targets or set(task.classes))


def test_class_order_explicit_and_shuffled(digits):
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    stream = build_stream(digits, "split", "task", 5, seed=0, order=order)
    assert [t.classes for t in stream.tasks] == [[3, 1], [4, 0], [5, 9], [2, 6], [8, 7]]
    # task-IL target = index in the task: class 3 -> 0, class 1 -> 1
    task = stream.tasks[0]
    labels = digits.train_y[torch.isin(digits.train_y, torch.tensor([3, 1]))]
    assert torch.equal(task.train_y, (labels == 1).long())

    def shuffled(seed):
        s = build_stream(digits, "split", "class", 5, seed=seed, shuffle_classes=True)
        return [t.classes for t in s.tasks]

    assert shuffled(1) == shuffled(1)
    assert shuffled(1) != shuffled(2)
    assert sorted(c for t in shuffled(1) for c in t) == list(range(10))


def test_uneven_split(digits):
    stream = build_stream(digits, "split", "task", num_tasks=3, seed=0)
    assert [len(t.classes) for t in stream.tasks] == [4, 3, 3]
    assert stream.head_sizes == [4, 3, 3]


def test_permuted_stream(digits):
    stream = build_stream(digits, "permuted", "class", 3, seed=7, standardize=False)
    t0, t1, _ = stream.tasks
    assert torch.equal(t0.train_x[:], digits.train_x)  # identity first
    # a permutation moves pixels, it does not change them
    assert torch.equal(
        t1.train_x[:].flatten(1).sort(1).values, digits.train_x.flatten(1).sort(1).values
    )
    assert not torch.equal(t1.train_x[:], digits.train_x)
    assert stream.head_sizes == [30]
    assert t1.global_classes == list(range(10, 20))
    assert torch.equal(t1.train_y, digits.train_y + 10)
    again = build_stream(digits, "permuted", "class", 3, seed=7, standardize=False)
    assert torch.equal(again.tasks[2].test_x[:], stream.tasks[2].test_x[:])
    other = build_stream(digits, "permuted", "class", 3, seed=8, standardize=False)
    assert not torch.equal(other.tasks[2].test_x[:], stream.tasks[2].test_x[:])


def test_permuted_domain_il_keeps_labels(digits):
    stream = build_stream(digits, "permuted", "domain", 3, seed=0)
    assert stream.head_sizes == [10]
    assert all(torch.equal(t.train_y, digits.train_y) for t in stream.tasks)


def test_rotated_stream(digits):
    stream = build_stream(digits, "rotated", "domain", 2, seed=0, angles=[0, 90], standardize=False)
    assert [t.description for t in stream.tasks] == ["rotated 0°", "rotated 90°"]
    assert torch.equal(stream.tasks[0].test_x[:], digits.test_x)
    # torchvision rotates counter-clockwise, as rot90 does from axis H towards axis W
    expected = torch.rot90(digits.test_x, 1, dims=(2, 3))
    torch.testing.assert_close(stream.tasks[1].test_x[:], expected, atol=1e-5, rtol=0)
    default = build_stream(digits, "rotated", "task", 4, seed=0)
    assert [t.description for t in default.tasks] == [
        "rotated 0°",
        "rotated 45°",
        "rotated 90°",
        "rotated 135°",
    ]


def test_standardize_uses_training_statistics(digits):
    stream = build_stream(digits, "split", "class", 1, seed=0, standardize=True)
    x = stream.tasks[0].train_x[:]
    assert abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("identity_first", [True, False])
def test_identity_first_from_the_config(fast_config, digits, identity_first):
    """benchmark.identity_first reaches the stream a run trains on: task 0 sees the images
    as they are, or under a permutation of its own like every other task."""
    config = fast_config(
        "benchmark=permuted_fmnist",
        "benchmark.dataset=digits",
        "benchmark.num_tasks=2",
        "benchmark.standardize=false",
        f"benchmark.identity_first={str(identity_first).lower()}",
    )
    first = make_stream(config).tasks[0]
    assert torch.equal(first.train_x[:], digits.train_x) == identity_first
    pixels = first.train_x[:].flatten(1).sort(1).values  # a permutation only moves pixels
    assert torch.equal(pixels, digits.train_x.flatten(1).sort(1).values)
    assert first.description == ("identity" if identity_first else "permutation 0")


def test_eval_samples_per_task_measures_the_matrix_on_a_fixed_seeded_subset(fast_config, tmp_path):
    """eval.samples_per_task=50: every task is evaluated on 50 of its test samples, the
    same ones for every strategy of a seed (equal accuracies before training), others for
    another seed; results.json and the report say so."""
    import json

    from lab.errors import ConfigError
    from lab.experiment import run_experiment
    from lab.report import write_report

    naive = run_experiment(fast_config("eval.samples_per_task=50"), tmp_path / "naive")
    ewc = run_experiment(fast_config("eval.samples_per_task=50", "strategy=ewc"), tmp_path / "ewc")
    saved = json.loads((tmp_path / "naive" / "results.json").read_text())
    assert [t["test_samples"] for t in saved["tasks"]] == [50] * 5
    assert all(round(50 * a, 6) == round(50 * a) for row in naive["acc_matrix"] for a in row)
    assert naive["init_acc"] == ewc["init_acc"]
    full = make_stream(fast_config())
    for seed in (0, 1):
        subset = make_stream(fast_config("eval.samples_per_task=50", f"seed={seed}"))
        for task, whole in zip(subset.tasks, full.tasks, strict=True):
            # a subset of the task's own test samples, in their order
            rows = [
                (whole.test_x[:] == x).all(dim=(1, 2, 3)).nonzero().item() for x in task.test_x[:]
            ]
            assert rows == sorted(rows) and len(set(rows)) == 50
        if seed == 0:
            first = rows
    assert rows != first  # another seed, other samples
    write_report([str(tmp_path)], tmp_path / "report")
    assert "on 50 test samples per task" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(ConfigError, match=r"eval.samples_per_task=0 is invalid"):
        fast_config("eval.samples_per_task=0")


def materialised_images(dataset, benchmark: dict, seed: int) -> list[tuple]:
    """Each task's (train, test) images as one transformed, standardised float copy of the
    whole dataset: how streams were held before they were made on demand."""
    n = benchmark["num_tasks"]
    if benchmark["stream"] == "permuted":
        rng = np.random.default_rng(seed)
        pixels = [torch.from_numpy(rng.permutation(64)) for _ in range(n)]
        pixels[0] = torch.arange(64)  # identity_first
        transforms = [lambda x, p=p: x.flatten(1)[:, p].reshape(x.shape) for p in pixels]
    else:
        from torchvision.transforms.functional import InterpolationMode, rotate

        transforms = [
            lambda x, a=180.0 * t / n: rotate(x, a, interpolation=InterpolationMode.BILINEAR)
            for t in range(n)
        ]
    mean = dataset.train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = dataset.train_x.std(dim=(0, 2, 3), keepdim=True)
    return [
        ((f(dataset.train_x) - mean) / std, (f(dataset.test_x) - mean) / std) for f in transforms
    ]


@pytest.mark.parametrize("benchmark", ["permuted_fmnist", "rotated_fmnist"])
def test_the_matrix_of_a_stream_made_on_demand_equals_that_of_its_materialised_copies(
    fast_config, digits, tmp_path, monkeypatch, benchmark
):
    """Images made batch by batch from the shared dataset (training, evaluation, EWC's
    Fisher) give the 5-task matrix bit for bit that whole transformed copies give."""
    config = fast_config(
        f"benchmark={benchmark}",
        "benchmark.dataset=digits",
        "benchmark.num_tasks=5",
        "scenario=domain",
        "strategy=ewc",
        "train.batch_size=64",
        "train.eval_batch_size=100",
    )
    on_demand = run_experiment(config, tmp_path / "on_demand")

    copies = materialised_images(digits, config["benchmark"], config["seed"])

    def materialised_stream(config, dataset=None, inputs=None, device=None):
        stream = make_stream(config, dataset, inputs, device)
        stream.tasks = [
            dataclasses.replace(task, train_x=train, test_x=test)
            for task, (train, test) in zip(stream.tasks, copies, strict=True)
        ]
        return stream

    monkeypatch.setattr(lab.experiment, "make_stream", materialised_stream)
    materialised = run_experiment(config, tmp_path / "materialised")
    assert on_demand["acc_matrix"] == materialised["acc_matrix"]
    assert on_demand["metrics"]["acc"] < max(on_demand["acc_matrix"][0])  # it learned, forgot


def test_standardisation_is_per_channel_on_a_colour_benchmark(fast_config, tmp_path):
    """split_cifar10 on tiny CIFAR-10 batches whose channels differ (red bright and
    narrow, green mid, blue dark and wide): after standardisation each channel of the
    training images has mean 0 and std 1 (one mean and std over all channels would leave
    the red channel's mean at about +1.2 and the blue one's at -1.1)."""
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    low, high = np.array([200, 90, 0])[:, None], np.array([255, 150, 100])[:, None]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        planes = rng.integers(low[None], high[None], (10, 3, 1024))
        batch = {b"data": planes.reshape(10, 3072).astype(np.uint8), b"labels": list(range(10))}
        (directory / name).write_bytes(pickle.dumps(batch))
    config = fast_config("benchmark=split_cifar10", f"data.root={tmp_path}")
    stream = make_stream(config)
    x = torch.cat([task.train_x[:] for task in stream.tasks])
    assert x.shape == (50, 3, 32, 32)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-4)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), rtol=0, atol=1e-4)
    # the test images, with the training set's statistics: the same channels, near 0 and 1
    test = torch.cat([task.test_x[:] for task in stream.tasks])
    assert test.mean(dim=(0, 2, 3)).abs().max() < 0.05
