"""Rehearsal: the memory's policies; experience replay, DER and A-GEM through the lab engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lab.data import build_stream, load_dataset
from lab.engine import train_task
from lab.experiment import build, run_experiment, seed_everything, train_settings
from lab.models import build_model
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import AGEM, DER
from lab.strategies.base import Batch
from lab.strategies.der import _mse
from lab.strategies.memory import Memory


@pytest.fixture(scope="module")
def digits_stream():
    return build_stream(load_dataset("digits", "unused"), "split", "class", 5, seed=0)


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


def test_reservoir_keeps_each_samples_logits_with_it():
    memory, generator = Memory(20), torch.Generator().manual_seed(0)
    for start in range(0, 300, 32):
        batch = samples(range(start, min(start + 32, 300)))
        memory.offer(batch, generator, batch.x.repeat(1, 3))  # logits: the id, 3 times
    assert memory.offered == 300 and int(memory.data.y.max()) >= 20  # slots were replaced
    assert torch.equal(memory.logits, memory.data.x.repeat(1, 3))


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


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def agem_step(model, agem, batch):
    """One step's gradient as the engine leaves it for the optimizer."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch.x), batch.y).backward()
    plain = flat_grad(model).clone()
    agem.after_backward(model)
    return plain, flat_grad(model)


def reference_gradient(model, memory: Batch) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(memory.x), memory.y).backward()
    g_ref = flat_grad(model).clone()
    model.zero_grad(set_to_none=True)
    return g_ref


def agem_after(task, sample_size: int):
    """A small MLP, and A-GEM with a memory of 40 samples of `task`."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), [10], hidden_sizes=[16])
    agem = AGEM(patterns_per_exp=40, sample_size=sample_size)
    agem.after_task(model, task, [task])
    return model, agem


def test_agem_projects_a_conflicting_gradient_and_leaves_an_agreeing_one(digits_stream):
    """With the whole memory as the reference sample: a batch whose gradient opposes the
    memory's is projected to g - (g.g_ref / g_ref.g_ref) g_ref, orthogonal to g_ref (Chaudhry
    et al. 2019, eq. 11); a batch of the memory's own samples is left exactly as it was."""
    task = digits_stream.tasks[0]
    model, agem = agem_after(task, sample_size=40)
    memory = agem.memory.data
    assert len(memory) == 40 and set(memory.y.tolist()) <= set(task.train_y.tolist())
    g_ref = reference_gradient(model, memory)

    wrong = Batch(memory.x, 9 - memory.y, memory.task_ids)  # other labels: they conflict
    plain, projected = agem_step(model, agem, wrong)
    assert plain @ g_ref < 0
    expected = plain - (plain @ g_ref) / (g_ref @ g_ref) * g_ref
    torch.testing.assert_close(projected, expected, rtol=1e-5, atol=1e-7)
    assert projected @ g_ref >= -1e-6 * plain.norm() * g_ref.norm()

    plain, kept = agem_step(model, agem, memory.select(torch.arange(20)))
    assert plain @ g_ref >= 0 and torch.equal(kept, plain)


def test_agem_keeps_patterns_per_exp_samples_of_each_task_and_remembers(fast_config, tmp_path):
    naive = run_experiment(fast_config("scenario=domain"), tmp_path / "naive")
    config = fast_config("strategy=agem", "strategy.patterns_per_exp=100", "scenario=domain")
    agem = run_experiment(config, tmp_path / "agem")
    memory = json.loads((tmp_path / "agem" / "results.json").read_text())["memory"]
    assert memory == {
        "capacity": 100,
        "policy": "per_task",
        "size": 500,
        "per_task": {str(t): 100 for t in range(5)},
    }
    # the first task: naive forgets part of it, A-GEM's projections keep it
    assert agem["acc_matrix"][-1][0] > naive["acc_matrix"][-1][0] + 0.05


def test_der_loss_is_ce_plus_alpha_mse_of_stored_logits_plus_beta_ce(digits_stream):
    """Buzzega et al. 2020, eq. 6, with the memory's draws replayed from a copy of the
    strategy's generator: CE on the batch + alpha MSE(f(x'), z') + beta CE(f(x''), y'')."""
    task = digits_stream.tasks[0]
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), [10], hidden_sizes=[16])
    der = DER(mem_size=30, replay_batch_size=8, alpha=0.3, beta=0.7)
    data = Batch.of(task)
    stored = torch.randn(30, 10)
    der.memory.offer(data.select(torch.arange(30)), der.generator, stored)
    assert torch.equal(der.memory.logits, stored)
    batch = data.select(torch.arange(30, 46))
    generator = torch.Generator()
    generator.set_state(der.generator.get_state())
    first, second = (torch.randint(30, (8,), generator=generator) for _ in range(2))

    extended = der.rehearse(batch)
    assert len(extended) == 16 + 8 + 8
    logits = model(extended.x)
    loss = der.loss(model, extended, None, logits, torch.tensor(float("nan")))
    memory = data.select(torch.arange(30))
    expected = (
        F.cross_entropy(model(batch.x), batch.y)
        + 0.3 * ((model(memory.x[first]) - stored[first]) ** 2).mean()
        + 0.7 * F.cross_entropy(model(memory.x[second]), memory.y[second])
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert der.memory.offered == 46  # the batch was offered, with this step's logits


def test_der_class_balanced_keeps_the_logits_of_the_model_at_the_tasks_end(fast_config):
    config = fast_config("strategy=der", "strategy.policy=class_balanced")
    seed_everything(0)
    stream, model, strategy = build(config, torch.device("cpu"))
    optimizer = make_optimizer(model.parameters(), OptimizerSettings(**config["optimizer"]))
    settings, generator = train_settings(config), torch.Generator().manual_seed(0)
    task = stream.tasks[0]
    train_task(model, strategy, task, [task], optimizer, settings, generator, "class")
    memory = strategy.memory
    assert len(memory) == 200 and memory.logits.shape == (200, 10)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(memory.logits, model(memory.data.x))


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_der_remembers_in_class_il_and_runs_with_masked_logits(fast_config, tmp_path, scenario):
    """Class-IL: far above naive. Task-IL with seen_classes_only off, and class-IL with it on
    (masked logits stored as -inf): every loss finite."""
    naive = run_experiment(fast_config(f"scenario={scenario}"), tmp_path / "naive")
    der = run_experiment(fast_config("strategy=der", f"scenario={scenario}"), tmp_path / "der")
    assert der["diverged"] == [] and np.isfinite(der["train_loss"]).all()
    if scenario == "class":
        assert naive["metrics"]["acc"] < 0.25
        assert der["metrics"]["acc"] > naive["metrics"]["acc"] + 0.5
        masked = fast_config("strategy=der", "train.seen_classes_only=true")
        masked = run_experiment(masked, tmp_path / "masked")
        assert masked["diverged"] == [] and np.isfinite(masked["train_loss"]).all()
        assert masked["metrics"]["acc"] > naive["metrics"]["acc"] + 0.3
    else:
        assert der["metrics"]["acc"] > 0.9


def kept_counts(trials: int, size: int, fill) -> np.ndarray:
    """How often each of `size` samples (ids 0..size-1) is in a memory that `fill(seed)`
    made, over `trials` seeds: each trial a fixed seed, so the counts are fixed numbers."""
    counts = np.zeros(size)
    for seed in range(trials):
        memory = fill(torch.Generator().manual_seed(seed))
        ids = memory.data.x[:, 0].long()
        assert len(ids.unique()) == len(ids)  # drawn without replacement: no sample twice
        counts[ids.numpy()] += 1
    return counts


def assert_within(counts: np.ndarray, trials: int, p: float, sds: float = 5.0) -> None:
    """Every count within `sds` binomial standard deviations of trials * p."""
    sd = np.sqrt(trials * p * (1 - p))
    assert np.abs(counts - trials * p).max() < sds * sd, (counts, trials * p, sd)


def test_reservoir_keeps_the_nth_sample_with_probability_capacity_over_n():
    """A memory of 2, offered samples 0, 1, 2 in one batch and 3 in another, 4000 times:
    each of the 4 is kept with probability 2/4 (count 2000, sd 31.6; within 4 sd here). A
    count off by one (sample k replaces with probability 2/(k-1)) keeps samples 0 and 1
    with probability 1/3 and 2 and 3 with 2/3: counts 1333 and 2667, 21 sd away."""

    def fill(generator):
        memory = Memory(2)
        memory.offer(samples(range(3)), generator)
        memory.offer(samples(range(3, 4)), generator)
        return memory

    assert_within(kept_counts(4000, 4, fill), 4000, 2 / 4, sds=4)


def test_class_balanced_draws_each_classs_share_uniformly():
    """Two classes of 10 samples each into a memory of 4: each sample is kept with
    probability 2/10 (1000 seeds: count 200, sd 12.6; within 5 sd). At the next task
    (a third and fourth class), each class's share falls to 1 and is drawn from the 2 held:
    every first-task sample stays with probability 1/10 (count 100, sd 9.5). Drawing
    the first samples of a class instead keeps samples 0, 1 (10, 11) every time: 63 sd off."""
    first = Batch(torch.arange(20.0)[:, None], torch.arange(20) // 10, torch.zeros(20).long())
    second = Batch(
        torch.arange(20.0, 40.0)[:, None], torch.arange(20) // 10 + 2, torch.ones(20).long()
    )

    def fill(generator, tasks):
        memory = Memory(4, "class_balanced")
        for task in tasks:
            memory.rebalance(task, generator)
        return memory

    assert_within(kept_counts(1000, 20, lambda g: fill(g, [first])), 1000, 2 / 10)
    counts = kept_counts(1000, 40, lambda g: fill(g, [first, second]))
    assert_within(counts[:20], 1000, 1 / 10)
    assert_within(counts[20:], 1000, 1 / 10)


def test_per_task_memory_draws_each_task_uniformly():
    """A-GEM's memory of 3 per task, from tasks of 12 samples: each sample is kept with
    probability 3/12 (1000 seeds: count 250, sd 13.7; within 5 sd); the first 3 of a task
    every time would be 55 sd off."""

    def fill(generator):
        memory = Memory(3, "per_task")
        for t in range(2):
            memory.keep_per_task(samples(range(12 * t, 12 * t + 12), task=t), generator)
        assert len(memory) == 6 and memory.data.task_ids.tolist().count(0) == 3
        return memory

    assert_within(kept_counts(1000, 24, fill), 1000, 3 / 12)


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=replay"],
        ["strategy=replay", "strategy.policy=class_balanced"],
        ["strategy=der"],
        ["strategy=der", "strategy.policy=class_balanced"],
        ["strategy=agem", "strategy.patterns_per_exp=50", "strategy.sample_size=20"],
    ],
    ids=["replay", "replay-class-balanced", "der", "der-class-balanced", "agem"],
)
def test_a_memory_never_draws_from_the_global_rng(fast_config, overrides):
    """Two tasks through the engine, the second with a full memory that is drawn from at
    every step: the global RNG (the model's initialisation, dropout's) is where it was."""
    config = fast_config(*overrides, "train.epochs=2")
    seed_everything(0)
    stream, model, strategy = build(config, torch.device("cpu"))
    settings, generator = train_settings(config), torch.Generator().manual_seed(0)
    state = torch.get_rng_state()
    for task in stream.tasks[:2]:
        optimizer = make_optimizer(model.parameters(), OptimizerSettings(**config["optimizer"]))
        seen = stream.tasks[: task.id + 1]
        train_task(model, strategy, task, seen, optimizer, settings, generator, "class")
    assert len(strategy.memory) > 0
    assert torch.equal(torch.get_rng_state(), state)


def test_replay_batch_size_samples_join_each_batch(fast_config):
    """strategy.replay_batch_size=7: every batch gets 7 memory samples, DER's two terms 7
    each; null (the default) gives train.batch_size (32), the epoch's shorter last batch too."""
    for name, extra in (("replay", 7), ("der", 14)):
        _, _, strategy = build(
            fast_config(f"strategy={name}", "strategy.replay_batch_size=7"), torch.device("cpu")
        )
        strategy.memory.offer(samples(range(100)), strategy.generator, torch.zeros(100, 10))
        assert len(strategy.rehearse(samples(range(100, 116)))) == 16 + extra
    _, _, default = build(fast_config("strategy=replay"), torch.device("cpu"))
    default.memory.offer(samples(range(100)), default.generator)
    assert len(default.rehearse(samples(range(100, 105)))) == 5 + 32


def test_der_stores_the_logits_of_the_current_batch(digits_stream):
    """A memory of 100 holding 30: the 16 samples of the step join it with the logits the
    step computed for them (rows 0..15 of the forward pass), not the memory's rows."""
    task = digits_stream.tasks[0]
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), [10], hidden_sizes=[16])
    der = DER(mem_size=100, replay_batch_size=8, alpha=0.3, beta=0.7)
    data = Batch.of(task)
    der.memory.offer(data.select(torch.arange(30)), der.generator, torch.randn(30, 10))
    batch = data.select(torch.arange(30, 46))
    extended = der.rehearse(batch)
    logits = model(extended.x)
    der.loss(model, extended, None, logits, F.cross_entropy(logits, extended.y))
    assert len(der.memory) == 46 and torch.equal(der.memory.data.y[30:], batch.y)
    torch.testing.assert_close(der.memory.logits[30:], model(batch.x), rtol=0, atol=0)


def test_der_mse_is_the_mean_over_the_entries_finite_on_both_sides():
    """-inf marks a logit the training masked (now) or a narrower head's padding (stored):
    the MSE is over the 3 entries finite on both sides, (1 + 4 + 9) / 3."""
    inf = float("inf")
    logits = torch.tensor([[1.0, 2.0, -inf], [0.0, -inf, 5.0]])
    stored = torch.tensor([[0.0, 0.0, 7.0], [3.0, 1.0, -inf]])
    assert _mse(logits, stored).item() == pytest.approx((1 + 4 + 9) / 3)
    finite = torch.tensor([[1.0, 2.0], [0.0, 5.0]])
    assert _mse(finite, torch.zeros(2, 2)).item() == pytest.approx(
        F.mse_loss(finite, torch.zeros(2, 2)).item()
    )


def test_der_class_balanced_logits_in_eval_mode_and_kept_by_old_samples(fast_config):
    """With dropout 0.5, the logits stored at a task's end are the eval-mode network's
    (train mode would drop half the units); at the next task's end the samples still held
    from the first keep the logits stored then, and the new ones get the network's now."""
    config = fast_config(
        "strategy=der", "strategy.policy=class_balanced", "model.dropout=0.5", "train.epochs=2"
    )
    seed_everything(0)
    stream, model, strategy = build(config, torch.device("cpu"))
    settings, generator = train_settings(config), torch.Generator().manual_seed(0)
    memory, stored = strategy.memory, {}
    for task in stream.tasks[:2]:
        optimizer = make_optimizer(model.parameters(), OptimizerSettings(**config["optimizer"]))
        seen = stream.tasks[: task.id + 1]
        train_task(model, strategy, task, seen, optimizer, settings, generator, "class")
        assert model.training  # left as the engine had it
        model.eval()
        with torch.no_grad():
            now = model(memory.data.x)
        model.train()
        new = memory.data.task_ids == task.id
        torch.testing.assert_close(memory.logits[new], now[new], rtol=0, atol=0)
        for x, logits in zip(memory.data.x[~new], memory.logits[~new], strict=True):
            assert torch.equal(logits, stored[x.numpy().tobytes()])
        if task.id:  # the network moved since the first task's end
            assert not torch.allclose(memory.logits[~new], now[~new])
        stored.update(
            {x.numpy().tobytes(): z for x, z in zip(memory.data.x, memory.logits, strict=True)}
        )
    assert (memory.data.task_ids == 0).sum() == 100 and len(memory) == 200


def test_agem_reference_gradient_is_on_sample_size_samples_of_the_memory(digits_stream):
    """A memory of 40 and sample_size 10: g_ref is the gradient on the 10 samples that the
    strategy's generator draws without replacement (replayed from a copy of it), and the
    projection uses that g_ref, not the whole memory's."""
    model, agem = agem_after(digits_stream.tasks[0], sample_size=10)
    memory = agem.memory.data
    copy = torch.Generator()
    copy.set_state(agem.generator.get_state())
    drawn = torch.randperm(40, generator=copy)[:10]
    g_ref = reference_gradient(model, memory.select(drawn))
    g_all = reference_gradient(model, memory)
    wrong = Batch(memory.x, 9 - memory.y, memory.task_ids)
    plain, projected = agem_step(model, agem, wrong)
    assert plain @ g_ref < 0
    expected = plain - (plain @ g_ref) / (g_ref @ g_ref) * g_ref
    torch.testing.assert_close(projected, expected, rtol=1e-5, atol=1e-7)
    whole = plain - (plain @ g_all) / (g_all @ g_all) * g_all
    assert (projected - whole).norm() > 0.1 * (expected - plain).norm()
