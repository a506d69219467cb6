"""SLCA (lab.strategies.slca): its formulas by hand, its slow learner's two learning rates and
frozen rows, its alignment end to end on timm's test_vit at 32 px, and a resume bit for bit.
Offline: the backbone is pre-trained briefly on digits 0-4 by the lab itself."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import FAST, compose_config

from lab import engine
from lab.config import validate
from lab.errors import ConfigError
from lab.experiment import run_experiment
from lab.models import build_model
from lab.strategies import STRATEGIES, build_strategy
from lab.strategies.base import Batch
from lab.strategies.slca import SLCA, class_statistics, normalised_logits, sample_features

VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
# three tasks (4, 3 and 3 digits), a few steps each, a short alignment
STREAM = [*FAST, *VIT, "strategy=slca", "benchmark.num_tasks=3", "train.iterations=4"]
STREAM += ["strategy.ca_epochs=2", "strategy.samples_per_class=32"]
STREAM += ["optimizer.momentum=0.9", "optimizer.weight_decay=5e-4"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """test_vit pre-trained on digits 0-4 by the lab (pretrain=source), in timm's layout."""
    run = tmp_path_factory.mktemp("pretrained")
    overrides = [*FAST, *VIT, "benchmark.num_tasks=2", "train.iterations=1"]
    overrides += ["pretrain=source", "pretrain.dataset=digits", "pretrain.classes=[0,1,2,3,4]"]
    overrides += ["pretrain.epochs=3", "pretrain.batch_size=32"]
    result = run_experiment(validate(compose_config(overrides)), run)
    assert result["pretrain"]["init_acc"] > 0.6  # a backbone that knows something
    return run / "pretrained.safetensors"


def test_class_statistics_are_the_mean_and_the_unbiased_covariance_plus_the_ridge():
    features = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    mean, covariance = class_statistics(features, ridge=0.5)
    assert mean.tolist() == [2.0, 3.0]
    # deviations (-1,-1), (1,-1), (0,2): sums of products 2, 0, 6 over n - 1 = 2
    assert covariance.tolist() == [[1.0 + 0.5, 0.0], [0.0, 3.0 + 0.5]]
    assert mean.dtype == covariance.dtype == torch.float32


def test_alignment_samples_come_from_the_strategys_generator_with_each_classs_moments():
    """20,000 draws of N(s mu, Sigma) in 2-D: each sample mean within 5 standard errors
    (sqrt(Sigma_ii / n) <= 0.01, so 0.05) of s mu, each covariance entry within 0.075 (5
    SE: sqrt((S_ii S_jj + S_ij^2) / n) <= 0.015) of Sigma; s is the reference's mean scale,
    0.95 for the first of two tasks and 1 for the last."""
    strategy = SLCA(samples_per_class=20000, mean_shrink=0.1)
    strategy.set_seed(3)
    mu = {0: torch.tensor([1.0, -2.0]), 1: torch.tensor([-3.0, 0.5])}
    sigma = torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    strategy.means, strategy.covariances = mu, {0: sigma, 1: sigma * 0.5}
    before = torch.get_rng_state()
    samples = strategy.sample([[0], [1]])
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG untouched
    first, second = samples[:20000], samples[20000:]
    assert (first.mean(0) - 0.95 * mu[0]).abs().max() < 0.05
    assert (second.mean(0) - mu[1]).abs().max() < 0.05
    assert (torch.cov(first.T) - sigma).abs().max() < 0.075
    assert (torch.cov(second.T) - sigma * 0.5).abs().max() < 0.075
    strategy.set_seed(3)
    assert torch.equal(strategy.sample([[0], [1]]), samples)  # the generator's, reproducibly
    # mean + L z with the generator's z, as MultivariateNormal.sample computes it from z
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(9))
    drawn = sample_features(mu[0], sigma, 4, torch.Generator().manual_seed(9))
    expected = mu[0] + z @ torch.linalg.cholesky(sigma).T
    assert torch.allclose(drawn, expected, atol=1e-6)


def test_logit_normalisation_divides_by_the_mean_of_each_tasks_norm_over_tau():
    logits = torch.tensor([[3.0, 4.0, 6.0, 8.0]])  # task norms 5 and 10: their mean 7.5
    out = normalised_logits(logits, [2, 2], tau=0.1)
    expected = [x / (7.5 + 1e-7) / 0.1 for x in (3.0, 4.0, 6.0, 8.0)]
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)
    one = normalised_logits(logits, [4], tau=0.5)  # one task: the whole row's norm
    assert one[0].tolist() == pytest.approx([x / math.sqrt(125) / 0.5 for x in (3, 4, 6, 8)])


def test_the_slow_learners_loss_is_the_cross_entropy_over_the_tasks_own_classes():
    strategy = SLCA()
    strategy.current = [2, 3]
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [9.0, 0.0, 2.0, 0.0]])
    batch = Batch(torch.zeros(2, 1), torch.tensor([3, 2]), torch.zeros(2, dtype=torch.long))
    loss = strategy.loss(None, batch, None, logits, torch.tensor(0.0))
    by_hand = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand():
    """Two tasks of one class each, 3 samples per class, one epoch (2 steps of 3): the
    draws replayed from the generator, each step's gradient by autograd on the normalised
    logits, the SGD update (weight decay, momentum 0.9) written out; the unseen row 2 and
    its bias untouched."""
    strategy = SLCA(ca_epochs=1, samples_per_class=3, logit_norm=0.1, mean_shrink=0.1)
    strategy.set_seed(5)
    strategy.lr, strategy.weight_decay = 0.5, 0.01
    mu = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, 1.0])}
    strategy.means, strategy.covariances = mu, {0: 0.1 * torch.eye(2), 1: 0.1 * torch.eye(2)}
    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.3, -0.2], [0.1, 0.4], [7.0, 7.0]]))
        head.bias.copy_(torch.tensor([0.05, -0.05, 3.0]))
    start = [p.detach().clone() for p in head.parameters()]
    losses = strategy.align(head, [[0], [1]])

    g = torch.Generator().manual_seed(5)
    x0 = 0.95 * mu[0] + torch.randn(3, 2, generator=g) * math.sqrt(0.1)  # s_0 = 0.95
    x1 = mu[1] + torch.randn(3, 2, generator=g) * math.sqrt(0.1)  # s_1 = 1
    order = torch.randperm(6, generator=g)
    inputs, targets = torch.cat([x0, x1])[order], torch.tensor([0, 0, 0, 1, 1, 1])[order]
    w, b = start[0][:2].clone(), start[1][:2].clone()
    momentum, by_hand = None, []
    for step in range(2):
        w.requires_grad_(True), b.requires_grad_(True)
        logits = inputs[3 * step : 3 * step + 3] @ w.T + b
        norms = (logits.abs() + 1e-7).mean(dim=1, keepdim=True)  # one column per task
        loss = torch.nn.functional.cross_entropy(
            logits / norms / 0.1, targets[3 * step : 3 * step + 3]
        )
        gw, gb = torch.autograd.grad(loss, [w, b])
        by_hand.append(loss.item())
        with torch.no_grad():
            d = (gw + 0.01 * w, gb + 0.01 * b)
            momentum = (
                d
                if momentum is None
                else tuple(0.9 * m + x for m, x in zip(momentum, d, strict=True))
            )
            w, b = w - 0.5 * momentum[0], b - 0.5 * momentum[1]
    assert torch.allclose(head.weight[:2], w, atol=1e-6)
    assert torch.allclose(head.bias[:2], b, atol=1e-6)
    assert torch.equal(head.weight[2], start[0][2]) and torch.equal(head.bias[2], start[1][2])
    assert losses == pytest.approx([sum(by_hand) / 2], rel=1e-6)


def test_the_heads_start_as_the_references_from_the_strategys_generator():
    """Truncated normal of std 0.02 (SimpleContinualLinear), zero bias; the global RNG
    untouched. 128 x 10 weights: the sample std within 0.002 (about 3 SE) of 0.02."""
    model = build_model("mlp", (1, 8, 8), [10], hidden_sizes=[128])
    before = torch.get_rng_state()
    SLCA().attach(model, None)
    assert torch.equal(torch.get_rng_state(), before)
    weight = model.heads[0].weight
    assert abs(weight.std().item() - 0.02) < 0.002 and weight.abs().max() < 0.1
    assert model.heads[0].bias.eq(0).all()


def test_hyperparameters_are_checked_and_other_scenarios_refused():
    config = validate(compose_config([*FAST, "strategy=slca"]))
    assert config["strategy"] == {
        "name": "slca",
        "lr_ratio": 0.01,
        "ca_epochs": 5,
        "samples_per_class": 256,
        "logit_norm": 0.1,
        "mean_shrink": 0.1,
        "covariance_ridge": 1e-4,
        "ca_lr": None,
        "ca_momentum": 0.9,
        "ca_weight_decay": None,
    }
    for scenario in ("task", "domain"):
        refused = f"scenario='{scenario}' is invalid; valid: class (strategy=slca is made for it)"
        with pytest.raises(ConfigError, match=re.escape(refused) + "$"):
            validate(compose_config([*FAST, "strategy=slca", f"scenario={scenario}"]))
    with pytest.raises(ConfigError, match=r"strategy.lr_ratio=-1 is invalid"):
        build_strategy("slca", lr_ratio=-1)
    with pytest.raises(ConfigError, match=r"strategy.mean_shrink=2 is invalid; valid: \[0, 1\]"):
        build_strategy("slca", mean_shrink=2)
    task_il = build_model("mlp", (1, 8, 8), [2, 2], hidden_sizes=[4])
    with pytest.raises(ConfigError, match=r"one class-IL head; valid: scenario=class"):
        SLCA().attach(task_il, None)


@pytest.fixture(scope="module")
def observed(weights, tmp_path_factory):
    """One SLCA run, watched: each task's optimizer, and the head at the start and end of
    each task's training, and after each alignment."""
    seen: dict[str, list] = {"optimizers": [], "start": [], "trained": [], "aligned": []}
    make_optimizer = engine.make_optimizer
    before_task, after_task = SLCA.before_task, SLCA.after_task

    def head(model):
        return model.heads[0].weight.detach().clone()

    def record_optimizer(groups, settings):
        optimizer = make_optimizer(groups, settings)
        seen["optimizers"].append(optimizer)
        return optimizer

    def record_before(self, model, task, seen_tasks):
        before_task(self, model, task, seen_tasks)
        seen["start"].append((head(model), list(self.current)))
        seen["model"] = model

    def record_after(self, model, task, seen_tasks):
        seen["trained"].append(head(model))
        after_task(self, model, task, seen_tasks)
        seen["aligned"].append(head(model))
        seen["unaligned"] = self.unaligned["weight"].clone()

    patch = pytest.MonkeyPatch()
    patch.setattr(engine, "make_optimizer", record_optimizer)
    patch.setattr(SLCA, "before_task", record_before)
    patch.setattr(SLCA, "after_task", record_after)
    try:
        config = validate(compose_config([*STREAM, f"model.weights={weights}"]))
        result = run_experiment(config, tmp_path_factory.mktemp("slca"))
    finally:
        patch.undo()
    return result, seen


def test_the_backbone_trains_at_lr_ratio_times_the_heads_lr_without_the_optimizers_decay(
    observed,
):
    result, seen = observed
    model = seen["model"]
    backbone = {id(p) for p in model.backbone.parameters()}
    heads = {id(p) for p in model.heads.parameters()}
    for optimizer in seen["optimizers"]:
        rates = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                rates[id(p)] = group["lr"]
            assert group["weight_decay"] == 0.0  # SLCA applies the coupled decay itself
        assert {rates[i] for i in backbone} == {0.01 * 0.01}  # optimizer.lr * lr_ratio
        assert {rates[i] for i in heads} == {0.01}
    assert len(seen["optimizers"]) == 3


def test_the_slow_learner_moves_only_the_rows_of_the_tasks_own_classes(observed):
    result, seen = observed
    for (start, current), trained in zip(seen["start"], seen["trained"], strict=True):
        others = [c for c in range(10) if c not in current]
        assert torch.equal(start[others], trained[others])  # no decay, no momentum there
        assert not torch.equal(start[current], trained[current])


def test_alignment_follows_every_task_but_the_first_and_the_next_task_trains_from_before_it(
    observed,
):
    result, seen = observed
    report = result["slca"]
    assert [a["task"] for a in report["alignment"]] == [1, 2]
    assert [a["classes"] for a in report["alignment"]] == [7, 10]
    assert all(
        len(a["epoch_losses"]) == 2 and a["samples_per_class"] == 32 for a in report["alignment"]
    )
    assert report["classes_with_statistics"] == 10 and report["feature_dim"] == 64
    assert torch.equal(seen["trained"][0], seen["aligned"][0])  # no alignment after task 0
    assert not torch.equal(seen["trained"][1], seen["aligned"][1])
    assert torch.equal(seen["start"][2][0], seen["trained"][1])  # the head from before the CA
    assert torch.equal(seen["unaligned"], seen["trained"][2])
    # the aligned head is the one evaluated: the last row scores every task seen
    assert all(acc > 0 for acc in result["acc_matrix"][-1])


def test_slca_resumes_bit_for_bit_after_a_cut_before_task_2(weights, tmp_path, monkeypatch):
    config = validate(
        compose_config([*STREAM, f"model.weights={weights}", "model.drop_path_rate=0.1"])
    )
    whole = run_experiment(config, tmp_path / "whole")
    before_task = SLCA.before_task

    def cut(self, model, task, seen):
        if task.id == 2:
            raise KeyboardInterrupt
        before_task(self, model, task, seen)

    with monkeypatch.context() as patch:
        patch.setattr(SLCA, "before_task", cut)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    saved = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert len(saved["acc_matrix"]) == 2
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["slca"] == whole["slca"]  # the alignments' losses too, bit for bit
    state = STRATEGIES["slca"]().state_dict()
    assert {"means", "covariances", "unaligned", "alignments", "generator"} <= set(state)
