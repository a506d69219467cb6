"""Rehearsal: the memory's policies, and experience replay through the lab engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from lab.engine import train_task
from lab.experiment import build, run_experiment, seed_everything, train_settings
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies.base import Batch
from lab.strategies.memory import Memory


def samples(ids: range, task: int = 0) -> Batch:
    """Samples whose input is their id, so that the memory's content can be read back."""
    y = torch.tensor(list(ids))
    return Batch(y.float()[:, None], y, torch.full_like(y, task))


def test_reservoir_keeps_every_sample_with_equal_probability():
    """500 samples offered in batches of 32 to a memory of 50, 400 times: each is kept
    with probability 50/500, early and late alike (a chi-square test, fixed seeds)."""
    kept = np.zeros(500)
    for seed in range(400):
        memory, generator = Memory(50), torch.Generator().manual_seed(seed)
        for start in range(0, 500, 32):
            memory.offer(samples(range(start, min(start + 32, 500))), generator)
        assert len(memory) == 50 and memory.offered == 500
        ids = memory.data.x[:, 0].long()
        assert torch.equal(ids, memory.data.y) and len(ids.unique()) == 50  # whole samples
        kept[ids.numpy()] += 1
    assert kept.sum() == 400 * 50
    assert stats.chisquare(kept).pvalue > 0.01
    # the first and the last 100 samples offered: the same share of the memory
    assert abs(kept[:100].mean() - kept[-100:].mean()) < 3 * np.sqrt(2 * 40 * 0.9 / 100)


def test_reservoir_fills_up_in_order_before_it_replaces():
    memory, generator = Memory(10), torch.Generator().manual_seed(0)
    memory.offer(samples(range(6)), generator)
    assert memory.data.y.tolist() == list(range(6))
    memory.offer(samples(range(6, 8)), generator)
    assert memory.data.y.tolist() == list(range(8))


def test_class_balanced_memory_gives_every_class_an_equal_share():
    memory, generator = Memory(10, "class_balanced"), torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 20 + [1] * 3 + [2] * 20)  # class 1 has fewer than its share
    first = Batch(torch.zeros(43, 1), labels, torch.zeros(43).long())
    memory.rebalance(first, generator)
    assert sorted(memory.data.y.tolist()) == [0] * 4 + [1] * 3 + [2] * 3
    second = Batch(torch.zeros(40, 1), torch.tensor([3] * 20 + [4] * 20), torch.ones(40).long())
    memory.rebalance(second, generator)
    counts = torch.bincount(memory.data.y, minlength=5).tolist()
    assert counts == [2, 2, 2, 2, 2]  # 10 over 5 classes
    # a class is a (task, target) pair: task- and domain-IL reuse targets across tasks
    third = Batch(torch.zeros(40, 1), torch.tensor([0] * 20 + [1] * 20), torch.full((40,), 2))
    memory.rebalance(third, generator)
    assert len(memory) == 10 and (memory.data.task_ids == 2).sum() == 2


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_replay_remembers_in_class_il_and_records_its_memory(fast_config, tmp_path, policy):
    naive = run_experiment(fast_config(), tmp_path / "naive")
    config = fast_config("strategy=replay", f"strategy.policy={policy}")
    replay = run_experiment(config, tmp_path / "replay")
    # naive keeps only the last task (final ACC ~ 1/5); 200 samples of the past keep the rest
    assert naive["metrics"]["acc"] < 0.25
    assert replay["metrics"]["acc"] > naive["metrics"]["acc"] + 0.5
    memory = json.loads((tmp_path / "replay" / "results.json").read_text())["memory"]
    assert memory["capacity"] == 200 and memory["size"] == 200 and memory["policy"] == policy
    assert sorted(memory["per_task"]) == ["0", "1", "2", "3", "4"]
    if policy == "class_balanced":  # 10 classes, 2 per task: 20 each
        assert set(memory["per_task"].values()) == {40}


def test_replay_in_task_il_trains_each_remembered_sample_through_its_own_head(
    fast_config, tmp_path
):
    """In task-IL a head gets gradients only from its own task's samples: after task 0,
    head 0 moves again during task 1 only through the samples replayed from task 0."""
    config = fast_config("strategy=replay", "scenario=task")
    seed_everything(0)
    stream, model, strategy = build(config, torch.device("cpu"))
    settings, generator = train_settings(config), torch.Generator().manual_seed(0)

    def train(task):
        optimizer = make_optimizer(model.parameters(), OptimizerSettings(**config["optimizer"]))
        seen = stream.tasks[: task.id + 1]
        train_task(model, strategy, task, seen, optimizer, settings, generator, "task")

    train(stream.tasks[0])
    head_0 = model.heads[0].weight.detach().clone()
    train(stream.tasks[1])
    assert not torch.equal(model.heads[0].weight, head_0)
    results = run_experiment(config, tmp_path)
    assert results["status"] == "complete" and results["metrics"]["acc"] > 0.9
