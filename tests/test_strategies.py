"""EWC, online EWC, LwF, L2, weight decay, SI and MAS against hand computations."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from test_finetune import PRETRAINED  # digits 0-4, then a task-IL stream over 5-9

from lab.config import validate
from lab.data import build_stream, load_dataset
from lab.engine import TrainSettings, evaluate, train_task
from lab.errors import ConfigError
from lab.experiment import build, run_experiment
from lab.models import build_model
from lab.optim import SGDW, OptimizerSettings, make_optimizer
from lab.strategies import EWC, L2, MAS, SI, LwF, build_strategy
from lab.strategies.base import Batch, penalised_parameters
from lab.strategies.ewc import fisher_diagonal
from lab.strategies.weight_decay import WeightDecay


@pytest.fixture(scope="module")
def digits_stream():
    return build_stream(load_dataset("digits", "unused"), "split", "class", 5, seed=0)


def small_model(head_sizes=(10,), seed=0, name="mlp"):
    torch.manual_seed(seed)
    if name == "cnn":
        return build_model("cnn", (1, 8, 8), list(head_sizes), channels=[2, 3], hidden_size=5)
    return build_model("mlp", (1, 8, 8), list(head_sizes), hidden_sizes=[6])


def test_ewc_penalty_value_and_gradient_for_a_hand_set_fisher():
    model = small_model()
    ewc = EWC(lambda_=4.0)
    params = penalised_parameters(model)
    anchor = {n: p.detach().clone() for n, p in params.items()}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    fisher["heads.0.bias"][:3] = torch.tensor([1.0, 2.0, 0.5])
    ewc.add(anchor, fisher)
    with torch.no_grad():
        model.heads[0].bias[:3] += torch.tensor([0.1, -0.2, 0.3])  # the weight shift
        model.backbone.layers[1].weight += 1.0  # zero Fisher: not penalised
    expected = 1.0 * 0.1**2 + 2.0 * 0.2**2 + 0.5 * 0.3**2
    assert ewc.penalty(model).item() == pytest.approx(expected)
    ce = torch.tensor(0.7)
    assert ewc.loss(model, None, None, None, ce).item() == pytest.approx(0.7 + 4.0 / 2 * expected)
    ewc.loss(model, None, None, None, ce).backward()
    # d/dtheta lambda/2 F (theta - theta*)^2 = lambda F (theta - theta*)
    expected_grad = 4.0 * torch.tensor([1.0 * 0.1, 2.0 * -0.2, 0.5 * 0.3])
    torch.testing.assert_close(model.heads[0].bias.grad[:3], expected_grad)
    assert torch.all(model.backbone.layers[1].weight.grad == 0)


def test_separate_ewc_sums_one_penalty_per_task_online_keeps_one(digits_stream):
    separate, online = EWC(mode="separate"), EWC(mode="online", gamma=0.5)
    model = small_model()
    tasks, f = digits_stream.tasks, []
    for t in range(3):
        for ewc in (separate, online):
            ewc.after_task(model, tasks[t], tasks[: t + 1])
        f.append(separate.latest[1])
        with torch.no_grad():  # the next task moves the weights
            for p in model.parameters():
                p.add_(0.01 * (t + 1))
    assert separate.tasks == 3
    for n, (a, _, _) in separate.sums.items():
        torch.testing.assert_close(a.float(), f[0][n] + f[1][n] + f[2][n])
    # online: F = gamma^2 F0 + gamma F1 + F2, anchored at the latest weights
    anchor, running = online.latest
    assert not online.sums
    for n in running:
        torch.testing.assert_close(running[n], 0.25 * f[0][n] + 0.5 * f[1][n] + f[2][n])
        torch.testing.assert_close(anchor[n], separate.latest[0][n])


def anchor_three_tasks(ewc: EWC, model, tasks) -> list[tuple[dict, dict]]:
    """EWC after each of three tasks, the weights moved in between; each (theta*, F)."""
    anchors = []
    for t in range(3):
        ewc.after_task(model, tasks[t], tasks[: t + 1])
        anchors.append(ewc.latest)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return anchors


def test_separate_penalties_consolidate_into_one_quadratic(digits_stream):
    """A (theta - m)^2 + c, computed once per task, equals sum_k F_k (theta - theta*_k)^2
    in value and gradient."""
    ewc, model = EWC(mode="separate"), small_model()
    anchors = anchor_three_tasks(ewc, model, digits_stream.tasks)
    params = penalised_parameters(model)
    explicit = sum(
        (fisher[n] * (params[n] - anchor[n]).square()).sum()
        for anchor, fisher in anchors
        for n in fisher
    )
    got = ewc.penalty(model)
    assert got.item() == pytest.approx(explicit.item(), rel=1e-5)
    grads = torch.autograd.grad(got, list(params.values()))
    expected = torch.autograd.grad(explicit, list(params.values()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


def naive_fisher(model, x, y, names, estimator, task_id=None):
    """Reference: one backward pass per sample (and per label for the exact Fisher)."""
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(params[n]) for n in names}
    model.eval()
    for xi, yi in zip(x, y, strict=True):
        log_probs = torch.log_softmax(model(xi[None], task_id), -1)[0]
        labels = range(len(log_probs)) if estimator == "exact" else [int(yi)]
        for c in labels:
            weight = log_probs[c].exp().item() if estimator == "exact" else 1.0
            grads = torch.autograd.grad(log_probs[c], [params[n] for n in names], retain_graph=True)
            for n, g in zip(names, grads, strict=True):
                fisher[n] += weight * g.square()
    return {n: f / len(x) for n, f in fisher.items()}


@pytest.mark.parametrize("estimator", ["empirical", "exact"])
@pytest.mark.parametrize("heads", [(10,), (2, 2, 2)])
@pytest.mark.parametrize("name", ["mlp", "cnn"])  # closed form (linear) and vmap (conv)
def test_vectorised_fisher_equals_a_per_sample_loop(digits_stream, estimator, heads, name):
    torch.set_default_dtype(torch.float64)  # compare to 1e-6 without float32 round-off
    try:
        model = small_model(heads, name=name)
        task = digits_stream.tasks[1]
        x, y = task.train_x[:40].double(), task.train_y[:40] % heads[0]
        task_id = 1 if len(heads) > 1 else None
        names = list(penalised_parameters(model))
        fast = fisher_diagonal(model, x, y, 1, names, estimator, batch_size=16)
        slow = naive_fisher(model, x, y, names, estimator, task_id)
    finally:
        torch.set_default_dtype(torch.float32)
    assert set(fast) == set(slow)
    if len(heads) > 1:  # task-IL: the backbone only
        assert all(n.startswith("backbone.") for n in fast)
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], atol=1e-6, rtol=0)
        assert float(fast[n].abs().max()) > 1e-6


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_sampled_fisher_is_the_empirical_fisher_of_labels_drawn_from_the_model(digits_stream, name):
    model = small_model(name=name).eval()
    x = digits_stream.tasks[0].train_x[:30]
    names = list(penalised_parameters(model))
    with torch.no_grad():
        probs = torch.softmax(model(x), -1)
    drawn = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    sampled = fisher_diagonal(
        model, x, drawn * 0, 0, names, "sampled", torch.Generator().manual_seed(3), batch_size=64
    )
    empirical = fisher_diagonal(model, x, drawn, 0, names, "empirical")
    for n in names:
        torch.testing.assert_close(sampled[n], empirical[n])


def test_fisher_of_a_parameter_that_does_not_affect_the_output_is_zero(digits_stream):
    model = small_model()
    with torch.no_grad():
        model.heads[0].weight[:, 2] = 0.0  # hidden unit 2 no longer reaches the output
    task = digits_stream.tasks[0]
    names = list(penalised_parameters(model))
    for estimator in ("empirical", "sampled", "exact"):
        fisher = fisher_diagonal(
            model, task.train_x, task.train_y, 0, names, estimator, torch.Generator()
        )
        first = model.backbone.layers[1]
        assert first.weight.shape[0] == 6
        assert torch.all(fisher["backbone.layers.1.weight"][2] == 0)
        assert fisher["backbone.layers.1.bias"][2] == 0
        assert fisher["backbone.layers.1.weight"][[0, 1, 3, 4, 5]].sum() > 0


def test_ewc_loads_a_checkpoint_that_kept_every_anchor(digits_stream):
    """Checkpoints written before EWC kept running sums hold every (theta*_k, F_k): one
    loads into the same penalty as the strategy that wrote it."""
    ewc, model = EWC(), small_model()
    anchors = anchor_three_tasks(ewc, model, digits_stream.tasks)
    new_keys = ("latest", "sums", "tasks")
    old = {k: v for k, v in ewc.state_dict().items() if k not in new_keys}
    loaded = EWC()
    loaded.load_state_dict({**old, "anchors": anchors})
    assert loaded.tasks == 3
    assert loaded.penalty(model).item() == ewc.penalty(model).item() > 0


def test_fisher_on_a_subset_of_samples(digits_stream):
    """fisher_samples: the Fisher over a fixed subset drawn by the strategy's seeded generator."""
    ewc = EWC(fisher_samples=25)
    ewc.set_seed(3)
    task, model = digits_stream.tasks[0], small_model()
    ewc.after_task(model, task, [task])
    _, fisher = ewc.latest
    drawn = torch.randperm(len(task.train_y), generator=torch.Generator().manual_seed(3))[:25]
    names = list(penalised_parameters(model))
    subset = fisher_diagonal(model, task.train_x[drawn], task.train_y[drawn], 0, names)
    whole = fisher_diagonal(model, task.train_x, task.train_y, 0, names)
    for name in names:
        torch.testing.assert_close(fisher[name], subset[name])
    assert not torch.allclose(fisher["heads.0.weight"], whole["heads.0.weight"])


def test_l2_penalty_value_and_gradient():
    model = small_model()
    l2 = L2(lambda_=3.0)
    l2.after_task(model, None, [])
    with torch.no_grad():
        model.heads[0].bias[0] += 0.5
        model.backbone.layers[1].weight[0, 0] -= 0.2
    assert l2.penalty(model).item() == pytest.approx(0.5**2 + 0.2**2)
    l2.loss(model, None, None, None, torch.tensor(0.0)).backward()
    assert float(model.heads[0].bias.grad[0]) == pytest.approx(3.0 * 0.5)
    assert float(model.backbone.layers[1].weight.grad[0, 0]) == pytest.approx(3.0 * -0.2)


def test_l2_anchors_at_the_end_of_the_previous_task(fast_config, tmp_path):
    run_experiment(fast_config("strategy=l2", "train.epochs=1", "keep_checkpoint=true"), tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    anchor = checkpoint["strategy"]["anchor"]
    assert set(anchor) == set(checkpoint["model"])  # class-IL: every weight, the head too
    for name, weights in anchor.items():  # the weights as the last task left them
        assert torch.equal(weights, checkpoint["model"][name])


def test_task_il_anchors_only_the_shared_backbone():
    model = small_model((2, 2, 2))
    assert all(n.startswith("backbone.") for n in penalised_parameters(model))
    assert "heads.0.weight" in penalised_parameters(small_model((10,)))


def full_batch_sgd_steps(model, strategy, task, steps, lr):
    """`steps` plain-SGD steps on the whole of `task` through the engine (one per epoch)."""
    optimizer = make_optimizer(model.parameters(), OptimizerSettings("sgd", lr, 0.0))
    settings = TrainSettings(epochs=steps, batch_size=len(task.train_y))
    train_task(model, strategy, task, [task], optimizer, settings, torch.Generator(), "class")


def test_si_importance_is_the_path_integral_over_the_squared_displacement(digits_stream):
    """Two plain-SGD steps of lr on task 0: each step moves theta by -lr g, so the path
    integral is omega = -(g1 (-lr g1) + g2 (-lr g2)) = lr (g1^2 + g2^2), the displacement
    Delta = -lr (g1 + g2), and Omega = omega / (Delta^2 + xi) (Zenke et al., eq. 5)."""
    torch.set_default_dtype(torch.float64)
    try:
        task = digits_stream.tasks[0]
        task = dataclasses.replace(task, train_x=task.train_x[:].double())
        model, lr, xi = small_model(), 0.5, 1e-3
        reference = copy.deepcopy(model)
        names = list(penalised_parameters(model))

        def gradient(m):
            loss = F.cross_entropy(m(task.train_x[:]), task.train_y)
            return dict(zip(names, torch.autograd.grad(loss, list(m.parameters())), strict=True))

        g1 = gradient(reference)
        with torch.no_grad():
            for n, p in reference.named_parameters():
                p -= lr * g1[n]
        g2 = gradient(reference)
        si = SI(lambda_=1.0, eps=xi)
        full_batch_sgd_steps(model, si, task, 2, lr)
    finally:
        torch.set_default_dtype(torch.float32)
    for n in names:
        omega = lr * (g1[n].square() + g2[n].square())
        expected = omega / (lr * (g1[n] + g2[n])).square().add(xi)
        torch.testing.assert_close(si.importance[n], expected, rtol=1e-6, atol=1e-9)
    assert float(si.importance["heads.0.bias"].max()) > 1e-3
    # anchored at the weights the task ended with; the penalty is c sum Omega (theta - theta*)^2
    for n, p in model.named_parameters():
        assert torch.equal(si.anchor[n], p.detach())
    with torch.no_grad():
        model.heads[0].bias[1] += 0.3
    penalty = si.loss(model, None, None, None, torch.tensor(0.0))
    expected = float(si.importance["heads.0.bias"][1]) * 0.09
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def per_sample_sensitivity(model, x, names, head=None):
    """Reference: 1/N sum_n |d ||f(x_n)||^2 / d theta|, one backward pass per sample."""
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    model.eval()
    for xi in x:
        squared_norm = model(xi[None], head).square().sum()
        grads = torch.autograd.grad(squared_norm, [params[n] for n in names])
        for n, g in zip(names, grads, strict=True):
            total[n] += g.abs()
    return {n: t / len(x) for n, t in total.items()}


@pytest.mark.parametrize("heads", [(10,), (2, 2, 2)])
@pytest.mark.parametrize("name", ["mlp", "cnn"])  # closed form (linear) and vmap (conv)
def test_mas_importance_is_the_mean_absolute_output_sensitivity(digits_stream, heads, name):
    """After each task Omega <- alpha Omega + (1 - alpha) Omega_task (the first as it is),
    Omega_task from a per-sample loop at the weights the task ended with."""
    torch.set_default_dtype(torch.float64)
    try:
        model = small_model(heads, name=name)
        tasks = [
            dataclasses.replace(t, train_x=t.train_x[:30].double(), train_y=t.train_y[:30] % 2)
            for t in digits_stream.tasks[:2]
        ]
        mas = MAS(lambda_=1.0, alpha=0.3)
        names = list(penalised_parameters(model))
        head = (lambda t: t.id) if len(heads) > 1 else (lambda t: None)
        mas.after_task(model, tasks[0], tasks[:1])
        first = per_sample_sensitivity(model, tasks[0].train_x, names, head(tasks[0]))
        perturb = {n: 0.1 * torch.randn_like(p) for n, p in model.named_parameters()}
        with torch.no_grad():
            for n, p in model.named_parameters():
                p += perturb[n]
        mas.after_task(model, tasks[1], tasks)
        second = per_sample_sensitivity(model, tasks[1].train_x, names, head(tasks[1]))
    finally:
        torch.set_default_dtype(torch.float32)
    assert set(mas.importance) == set(names)
    for n in names:
        torch.testing.assert_close(mas.importance[n], 0.3 * first[n] + 0.7 * second[n])
        assert float(mas.importance[n].abs().max()) > 1e-6
    # the penalty lambda sum Omega (theta - theta*)^2, anchored at the last task's end
    with torch.no_grad():
        dict(model.named_parameters())[names[0]].view(-1)[0] += 0.2
    penalty = mas.loss(model, None, None, None, torch.tensor(0.0)).item()
    expected = float(mas.importance[names[0]].view(-1)[0]) * 0.04
    assert penalty == pytest.approx(expected, rel=1e-4)


def kl_by_hand(new_logits, old_logits, T):
    """sum_c p_old (log p_old - log p_new), per sample, then the batch mean, times T^2."""
    total = 0.0
    for new, old in zip(new_logits.tolist(), old_logits.tolist(), strict=True):
        z_new = sum(math.exp(v / T) for v in new)
        z_old = sum(math.exp(v / T) for v in old)
        p_old = [math.exp(v / T) / z_old for v in old]
        p_new = [math.exp(v / T) / z_new for v in new]
        total += sum(
            po * (math.log(po) - math.log(pn)) for po, pn in zip(p_old, p_new, strict=True)
        )
    return T**2 * total / len(new_logits)


def test_lwf_loss_against_a_hand_computed_kl(digits_stream):
    tasks = digits_stream.tasks
    model = small_model()
    lwf = LwF(alpha=0.7, temperature=2.0)
    lwf.before_task(model, tasks[2], tasks[:3])  # the teacher knows classes 0..3
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = Batch.of(tasks[2]).select(torch.arange(8))
    features = model.backbone(batch.x)
    logits = model.classify(features)
    with torch.no_grad():
        old = lwf.teacher(batch.x)
    expected_kd = kl_by_hand(logits[:, :4], old[:, :4], 2.0)  # old classes only (class-IL)
    ce = F.cross_entropy(logits, batch.y)
    loss = lwf.loss(model, batch, features, logits, ce)
    assert loss.item() == pytest.approx(ce.item() + 0.7 * expected_kd, rel=1e-5)
    # the new classes' outputs do not enter the distillation
    shifted = logits.detach().clone()
    shifted[:, 4:] += 5.0
    assert lwf.distillation(model, batch, features, shifted).item() == pytest.approx(
        expected_kd, rel=1e-5
    )

    vdv = LwF(weighting="van_de_ven")
    vdv.before_task(model, tasks[2], tasks[:3])
    vdv.teacher = lwf.teacher
    kd = vdv.distillation(model, batch, features, logits).item()
    assert vdv.loss(model, batch, features, logits, ce).item() == pytest.approx(
        ce.item() / 3 + (1 - 1 / 3) * kd, rel=1e-6
    )


def test_lwf_task_il_averages_over_old_heads(digits_stream):
    stream = build_stream(load_dataset("digits", "unused"), "split", "task", 5, seed=0)
    model = small_model((2,) * 5)
    lwf = LwF(temperature=1.0)
    lwf.before_task(model, stream.tasks[2], stream.tasks[:3])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = Batch.of(stream.tasks[2]).select(torch.arange(5))
    per_head = [
        kl_by_hand(model(batch.x, t), lwf.teacher(batch.x, t).detach(), 1.0) for t in (0, 1)
    ]
    features = model.backbone(batch.x)
    got = lwf.distillation(model, batch, features, model.classify(features, 2)).item()
    assert got == pytest.approx(sum(per_head) / 2, rel=1e-5)


def test_lwf_teacher_is_frozen_and_unchanged_by_training(fast_config, tmp_path):
    import lab.strategies.lwf as lwf_module

    teachers = []
    original = lwf_module.LwF.before_task

    def spy(self, model, task, seen):
        original(self, model, task, seen)
        if self.teacher is not None:
            teachers.append(
                (self.teacher, {k: v.clone() for k, v in self.teacher.state_dict().items()})
            )

    lwf_module.LwF.before_task = spy
    try:
        run_experiment(fast_config("strategy=lwf", "train.epochs=2"), tmp_path)
    finally:
        lwf_module.LwF.before_task = original
    assert len(teachers) == 4
    for teacher, before in teachers:
        assert not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, before[k])


def test_weight_decay_sets_the_optimizer():
    params = [torch.nn.Parameter(torch.ones(1))]
    coupled = WeightDecay(strength=0.2).optimizer_settings(OptimizerSettings("sgd", lr=0.1))
    opt = make_optimizer(params, coupled)
    assert type(opt) is torch.optim.SGD and opt.defaults["weight_decay"] == 0.2
    adamw = WeightDecay(0.2, decoupled=False).optimizer_settings(OptimizerSettings("adamw", 0.1))
    assert type(make_optimizer(params, adamw)) is torch.optim.Adam  # AdamW, coupled = Adam + L2

    decoupled = WeightDecay(strength=0.2, decoupled=True).optimizer_settings(
        OptimizerSettings("sgd", lr=0.1)
    )
    opt = make_optimizer(params, decoupled)
    assert isinstance(opt, SGDW)
    params[0].grad = torch.tensor([0.5])
    opt.step()
    # theta <- theta (1 - lr * wd) - lr * g = 1 * 0.98 - 0.05
    assert params[0].item() == pytest.approx(0.93)


def test_other_strategies_keep_the_optimizer_weight_decay(fast_config):
    config = fast_config("strategy=ewc", "optimizer.weight_decay=0.01")
    settings = OptimizerSettings(**config["optimizer"])
    assert build_strategy("ewc").optimizer_settings(settings).weight_decay == 0.01


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lambda": -1}, "strategy.lambda=-1 is invalid; valid: a number >= 0"),
        ({"fisher": "diag"}, "valid: empirical, sampled, exact"),
        ({"mode": "offline"}, "valid: separate, online"),
        ({"gamma": 2}, "strategy.gamma=2 is invalid"),
        ({"lamda": 1}, "strategy.lamda is not a hyperparameter of ewc; valid: lambda, fisher"),
    ],
)
def test_bad_ewc_hyperparameters(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_strategy("ewc", **params)


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=ewc", "strategy.lambda=0", "strategy.fisher=sampled"],
        ["strategy=online_ewc", "strategy.lambda=0", "strategy.fisher=sampled"],
        ["strategy=lwf", "strategy.alpha=0"],
        ["strategy=l2", "strategy.lambda=0"],
        # its strength replaces optimizer.weight_decay: at 0 no decay is left
        ["strategy=weight_decay", "strategy.strength=0", "optimizer.weight_decay=0.1"],
        ["strategy=replay", "strategy.mem_size=0"],
        ["strategy=replay", "strategy.mem_size=0", "strategy.policy=class_balanced"],
        ["strategy=si", "strategy.lambda=0"],
        ["strategy=mas", "strategy.lambda=0"],
        ["strategy=der", "strategy.mem_size=0"],
        ["strategy=der", "strategy.mem_size=0", "strategy.policy=class_balanced"],
        ["strategy=agem", "strategy.patterns_per_exp=0"],
    ],
)
@pytest.mark.parametrize("scenario", ["class", "task"])
def test_strength_zero_reproduces_naive_exactly(fast_config, tmp_path, overrides, scenario):
    # dropout draws from the global RNG: a strategy that touched it would change the matrix
    common = ["train.epochs=3", "model.dropout=0.1", f"scenario={scenario}"]
    naive = run_experiment(fast_config(*common), tmp_path / "naive")
    method = run_experiment(fast_config(*common, *overrides), tmp_path / "method")
    assert method["acc_matrix"] == naive["acc_matrix"]
    assert method["strategy"] != "naive"


@pytest.mark.parametrize(
    "strategy", ["ewc", "online_ewc", "lwf", "l2", "weight_decay", "si", "mas", "der"]
)
def test_default_strengths_train_stably_on_digits(compose_cfg, tmp_path, strategy):
    """`lab-run benchmark=split_digits strategy=...` as a user types it, in every scenario:
    a default strength never makes training explode (EWC's general lambda=1000 does here,
    hence the benchmark's own, benchmark.strengths)."""
    for scenario in ("task", "domain", "class"):
        overrides = ["benchmark=split_digits", f"strategy={strategy}", f"scenario={scenario}"]
        config = validate(compose_cfg([*overrides, "logger=none"]))
        results = run_experiment(config, tmp_path / scenario)
        assert results["diverged"] == [] and max(results["train_loss"]) < 10, (scenario, results)


def test_ewc_keeps_the_weights_that_matter_for_the_old_task():
    """Domain-IL digits, two tasks: EWC keeps the Fisher-weighted drift from task 0's
    weights small, and with it task 0's accuracy (naive: 0.75, EWC: 0.98 when written)."""
    stream = build_stream(load_dataset("digits", "unused"), "split", "domain", 5, seed=0)
    t0, t1 = stream.tasks[:2]
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), stream.head_sizes, hidden_sizes=[64])
    settings, optimizer = (
        TrainSettings(epochs=5, batch_size=32),
        OptimizerSettings("sgd", 0.01, 0.9),
    )

    def train(m, strategy, task, seen):
        train_task(
            m,
            strategy,
            task,
            seen,
            make_optimizer(m.parameters(), optimizer),
            settings,
            torch.Generator().manual_seed(task.id),
            "domain",
        )
        return m

    train(model, build_strategy("naive"), t0, [t0])
    ewc = build_strategy("ewc", **{"lambda": 1e4})
    ewc.after_task(model, t0, [t0])
    naive = train(copy.deepcopy(model), build_strategy("naive"), t1, [t0, t1])
    protected = train(copy.deepcopy(model), ewc, t1, [t0, t1])
    assert ewc.penalty(protected).item() < ewc.penalty(naive).item() / 10
    assert evaluate(protected, [t0])[0] > evaluate(naive, [t0])[0] + 0.1
    assert evaluate(protected, [t1])[0] > 0.9  # and the new task is still learned


def test_si_importance_is_summed_over_the_tasks(digits_stream):
    """Omega after two tasks = Omega after the first + the second task's own omega /
    (Delta^2 + xi) (Zenke et al., eq. 5: a sum over nu <= mu): the second term is that of
    a fresh SI watching the same second task from the same weights (c = 0: the penalty
    does not change the path)."""
    first, second = digits_stream.tasks[:2]
    model = small_model()
    si = SI(lambda_=0.0)
    full_batch_sgd_steps(model, si, first, 3, 0.5)
    after_first = {n: o.clone() for n, o in si.importance.items()}
    fresh, copied = SI(lambda_=0.0), copy.deepcopy(model)
    full_batch_sgd_steps(model, si, second, 3, 0.5)
    full_batch_sgd_steps(copied, fresh, second, 3, 0.5)
    assert float(after_first["heads.0.bias"].abs().max()) > 1e-3
    for n, importance in si.importance.items():
        torch.testing.assert_close(importance, after_first[n] + fresh.importance[n])


def test_quadratic_penalty_value_and_gradient_for_a_hand_set_importance():
    """lambda sum Omega (theta - theta*)^2, and its gradient 2 lambda Omega (theta - theta*)
    (the custom backward of lab.strategies.quadratic), for SI and MAS alike."""
    for strategy in (SI(lambda_=3.0), MAS(lambda_=3.0)):
        model = small_model()
        params = penalised_parameters(model)
        strategy.anchor = {n: p.detach().clone() for n, p in params.items()}
        strategy.importance = {n: torch.zeros_like(p) for n, p in params.items()}
        strategy.importance["heads.0.bias"][:2] = torch.tensor([2.0, 0.5])
        with torch.no_grad():
            model.heads[0].bias[:2] += torch.tensor([0.1, -0.4])
            model.backbone.layers[1].weight += 1.0  # zero importance: no penalty
        loss = strategy.loss(model, None, None, None, torch.tensor(0.25))
        assert loss.item() == pytest.approx(0.25 + 3.0 * (2.0 * 0.1**2 + 0.5 * 0.4**2))
        loss.backward()
        expected = 2 * 3.0 * torch.tensor([2.0 * 0.1, 0.5 * -0.4])
        torch.testing.assert_close(model.heads[0].bias.grad[:2], expected)
        assert torch.all(model.heads[0].bias.grad[2:] == 0)
        assert torch.all(model.backbone.layers[1].weight.grad == 0)


def test_si_after_a_source_anchors_it_with_no_importance_then_watches_the_stream(
    fast_config, tmp_path, monkeypatch
):
    """SI did not watch the source train: after it, every importance is 0 and the anchor is
    the pre-trained weights, so task 0 trains exactly as naive does (the same losses, the
    same row); after each task of the stream the anchor is the weights it ended with, and
    task 1 is penalised by task 0's importance (its losses differ from naive's)."""
    seen, after_task = [], SI.after_task

    def record(self, model, task, tasks):
        after_task(self, model, task, tasks)
        seen.append(({n: o.clone() for n, o in self.importance.items()}, dict(self.anchor)))

    monkeypatch.setattr(SI, "after_task", record)
    config = fast_config(*PRETRAINED, "strategy=si", "strategy.lambda=1.0", "keep_checkpoint=true")
    si = run_experiment(config, tmp_path / "si")
    naive = run_experiment(fast_config(*PRETRAINED), tmp_path / "naive")
    assert len(seen) == 3  # the source's, then the stream's two tasks'
    pretrained = torch.load(tmp_path / "si" / "pretrained.pt", weights_only=True)
    importance, anchor = seen[0]
    assert set(anchor) == {n for n in pretrained if n.startswith("backbone.")}  # task-IL
    assert all(float(o.abs().max()) == 0 for o in importance.values())
    assert all(torch.equal(anchor[n], pretrained[n]) for n in anchor)
    assert si["acc_matrix"][0] == naive["acc_matrix"][0]
    assert si["train_loss"][0] == naive["train_loss"][0]
    assert si["train_loss"][1] != naive["train_loss"][1]
    assert max(float(o.max()) for o in seen[1][0].values()) > 0
    final = torch.load(tmp_path / "si" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(final["strategy"]["anchor"][n], final["model"][n]) for n in anchor)
    assert not all(torch.equal(seen[1][1][n], pretrained[n]) for n in anchor)


def test_class_il_ewc_after_a_source_gives_the_stream_head_zero_fisher(fast_config, tmp_path):
    """The pre-training source is scored by its own head, so class-IL's one stream head,
    which EWC anchors (it is shared), takes no part in the source's likelihood: its Fisher
    there is exactly 0 (it was a KeyError: the head's output was never recorded), and the
    backbone's is not."""
    config = fast_config(*[o for o in PRETRAINED if o != "scenario=task"], "strategy=ewc")
    results = run_experiment(config, tmp_path)
    assert results["status"] == "complete" and config["scenario"] == "class"
    stream, model, strategy = build(config, torch.device("cpu"))
    source = stream.source
    names = list(penalised_parameters(model))
    assert "heads.0.weight" in names
    fisher = fisher_diagonal(model, source.train_x[:64], source.train_y[:64], source.id, names)
    assert fisher["heads.0.weight"].abs().sum() == 0 and fisher["heads.0.bias"].abs().sum() == 0
    assert all(fisher[n].abs().sum() > 0 for n in names if n.startswith("backbone."))
