"""The prototype learners on pre-trained models (issue 31): SimpleCIL, APER and RanPAC, and
the ssf fine-tuning mode. Their formulas by hand, end to end on timm's test_vit at 32 px
(pre-trained briefly on digits by the lab), and a cut run resuming bit for bit."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import FAST, compose_config

from lab import finetune as ft
from lab.config import validate
from lab.engine import train_task
from lab.errors import ConfigError
from lab.experiment import build, run_experiment, train_settings
from lab.finetune import Finetune
from lab.models import build_model
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import STRATEGIES
from lab.strategies.features import features_of
from lab.strategies.prototypes import PrototypeHead, cosine
from lab.strategies.ranpac import GRID, choose_lambda, ridge

VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
SHORT = [*FAST, *VIT, "train.iterations=4"]
METHODS = {
    "simplecil": ["strategy=simplecil"],
    "aper": ["strategy=aper", "finetune.mode=adapter"],
    "ranpac": ["strategy=ranpac", "strategy.projection=64", "finetune.mode=adapter"],
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[dict, str]:
    """SimpleCIL on a test_vit the lab pre-trains on digits first (pretrain=source): its
    results, and the pre-trained weights (timm's layout) the other tests start from."""
    run = tmp_path_factory.mktemp("pretrained")
    overrides = [*SHORT, "strategy=simplecil", "pretrain=source", "pretrain.dataset=digits"]
    config = validate(compose_config([*overrides, "pretrain.epochs=2", "pretrain.batch_size=64"]))
    return run_experiment(config, run), str(run / "pretrained.safetensors")


def config_of(weights: str, *overrides: str) -> dict:
    return validate(compose_config([*SHORT, f"model.weights={weights}", *overrides]))


def setup(config: dict):
    """The stream, the model with the method's and the regime's modules, and the strategy,
    as a run has them before its first task."""
    torch.manual_seed(config["seed"])
    stream, model, strategy = build(config, torch.device("cpu"))
    strategy.attach(model, stream)
    ft.apply(model, Finetune(**config["finetune"]))
    return stream, model, strategy


def test_ssf_scales_and_shifts_after_pilots_ops_and_starts_as_the_same_function():
    torch.manual_seed(0)
    model = build_model("timm", (3, 32, 32), [4], arch="test_vit", input_size=32)
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    ft.apply(model, Finetune(mode="ssf"))
    assert torch.equal(model(x), before)  # gamma = 1, beta = 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    vit = model.backbone.model
    ops = ["patch_embed.proj", "norm"] + [
        f"blocks.{i}.{op}"
        for i in range(len(vit.blocks))
        for op in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    ]
    expected = {f"backbone.model.{op}.ssf.{p}" for op in ops for p in ("scale", "shift")}
    assert trainable == expected | {"heads.0.weight", "heads.0.bias"}
    qkv = vit.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.ssf.scale.uniform_(0.5, 1.5)
        qkv.ssf.shift.normal_()
    tokens = torch.randn(2, 5, 64)
    by_hand = (tokens @ qkv.weight.T + qkv.bias) * qkv.ssf.scale + qkv.ssf.shift
    torch.testing.assert_close(qkv(tokens), by_hand)
    conv = vit.patch_embed.proj  # per channel of its NCHW output
    with torch.no_grad():
        conv.ssf.scale.uniform_(0.5, 1.5)
    out = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=16)
    torch.testing.assert_close(conv(x), out * conv.ssf.scale.view(1, -1, 1, 1))
    with pytest.raises(ConfigError, match=r"finetune.mode=ssf does not apply to model=mlp"):
        ft.check_model(build_model("mlp", (1, 8, 8), [4], hidden_sizes=[8]), Finetune(mode="ssf"))


def test_prototypes_are_class_means_scored_by_cosine_and_an_unbuilt_class_never_wins():
    head = PrototypeHead(width=2, classes=3)
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, -2.0], [0.0, -4.0]])
    head.add(features, torch.tensor([0, 0, 2, 2]), [0, 2])
    assert head.weight.tolist() == [[2.0, 0.0], [0.0, 0.0], [0.0, -3.0]]
    x = torch.tensor([[-1.0, 1.0]])  # cosine -0.71 to both prototypes: class 1's zero row
    logits = head(x)  # would score 0 and win, but it has no prototype
    s = 2**-0.5
    assert logits[0, 0].item() == pytest.approx(-s) and logits[0, 2].item() == pytest.approx(-s)
    assert logits[0, 1].item() == float("-inf")
    torch.testing.assert_close(cosine(x, head.weight)[0, [0, 2]], torch.tensor([-s, -s]))


def test_simplecil_classifies_by_the_cosine_to_its_class_means(pretrained, tmp_path):
    results, weights = pretrained
    assert results["simplecil"] == {"prototypes": 10, "feature_width": 64, "scale": 1.0}
    assert results["trainable_parameters"]["total"] == 0
    assert results["train_loss"] == [None] * 5  # no step at all
    assert results["metrics"]["acc"] > 0.5  # a backbone pre-trained on digits knows them
    # stochastic depth: prototypes taken in train mode would differ from eval mode's
    stream, model, strategy = setup(
        config_of(weights, "strategy=simplecil", "model.drop_path_rate=0.1")
    )
    for task in stream.tasks[:2]:
        strategy.after_task(model, task, stream.tasks)
    head, task = model.heads[0], stream.tasks[1]
    features = features_of(model, task.train_x)
    for c in task.outputs:
        torch.testing.assert_close(head.weight[c], features[task.train_y == c].mean(0))
    test = features_of(model, task.test_x)
    built = sorted(stream.tasks[0].outputs + task.outputs)
    by_hand = torch.tensor(built)[cosine(test, head.weight[built]).argmax(1)]
    assert torch.equal(model(task.test_x[:]).argmax(1), by_hand)


def test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features(pretrained):
    _, weights = pretrained
    config = config_of(weights, *METHODS["aper"], "train.iterations=6")
    stream, model, strategy = setup(config)
    pristine = copy.deepcopy(model.frozen_backbone)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"backbone", "heads"}
    assert all(".adapter." in n for n in trainable if n.startswith("backbone."))
    assert {n for n in trainable if n.startswith("heads.")} == {
        "heads.0.adapt.weight",
        "heads.0.adapt.sigma",
    }
    first = stream.tasks[0]
    before = model(first.test_x[:8])  # the first session's head: its classes alone
    others = [c for c in range(10) if c not in first.outputs]
    assert torch.isinf(before[:, others]).all() and before[:, first.outputs].isfinite().all()
    settings = train_settings(config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, OptimizerSettings(**config["optimizer"]))
    order = torch.Generator().manual_seed(0)
    losses = train_task(model, strategy, first, [first], optimizer, settings, order, "class")
    assert len(losses) == 6 and strategy.train_steps(stream.tasks[1], 6) == 0
    assert not any(p.requires_grad for p in model.parameters())  # frozen after the session
    adapted = model.backbone.model.blocks[0].mlp.adapter.up.weight
    assert adapted.abs().sum() > 0  # the adapter trained
    features = features_of(model, first.train_x)
    assert features.shape[1] == 2 * 64
    assert torch.equal(features[:, :64], in_batches(pristine, first.train_x))  # bit for bit
    assert torch.equal(features[:, 64:], in_batches(model.backbone, first.train_x))
    head = model.heads[0].final
    for c in first.outputs:
        torch.testing.assert_close(head.weight[c], features[first.train_y == c].mean(0))


@torch.inference_mode()
def in_batches(backbone: torch.nn.Module, x) -> torch.Tensor:
    """A backbone's eval-mode output in features_of's batches of 256."""
    backbone.eval()
    return torch.cat([backbone(x[i : i + 256]) for i in range(0, len(x), 256)])


def test_ridge_readout_is_the_closed_form():
    g = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # (G + 2 I)^-1 = [[5, -1], [-1, 6]] / 29
    expected = torch.tensor([[5.0, -2.0], [-1.0, 12.0]]) / 29
    torch.testing.assert_close(ridge(g, c, 2.0), expected)


def test_lambda_is_the_grid_value_with_the_least_held_out_error():
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(50, 6, generator=generator).relu()
    y = torch.nn.functional.one_hot(torch.randint(3, (50,), generator=generator), 3).float()
    chosen, errors = choose_lambda(h, y)
    fit, h64, y64 = 40, h.double(), y.double()  # int(50 * 0.8) rows fit, 10 held out
    by_hand = []
    for lam in GRID:
        inverse = torch.linalg.inv(h64[:fit].T @ h64[:fit] + lam * torch.eye(6, dtype=h64.dtype))
        w = inverse @ h64[:fit].T @ y64[:fit]
        by_hand.append(((h64[fit:] @ w - y64[fit:]) ** 2).mean().item())
    assert errors == pytest.approx(by_hand, rel=1e-3)
    best = min(range(len(GRID)), key=by_hand.__getitem__)
    assert chosen == GRID[best] and 0 < best < len(GRID) - 1  # an interior minimum


def test_ranpac_grows_its_gram_and_reads_out_by_ridge(pretrained, tmp_path):
    _, weights = pretrained
    config = config_of(weights, "strategy=ranpac", "strategy.projection=32", "strategy.adapt=false")
    stream, model, strategy = setup(config)
    head = model.heads[0]
    assert head.projection.shape == (64, 32)
    for task in stream.tasks[:2]:
        strategy.after_task(model, task, stream.tasks)
    hs = [torch.relu(features_of(model, t.train_x) @ head.projection) for t in stream.tasks[:2]]
    ys = [torch.nn.functional.one_hot(t.train_y, 10).float() for t in stream.tasks[:2]]
    torch.testing.assert_close(strategy.gram, sum(h.T @ h for h in hs))
    torch.testing.assert_close(strategy.targets, sum(h.T @ y for h, y in zip(hs, ys, strict=True)))
    torch.testing.assert_close(
        head.readout, ridge(strategy.gram, strategy.targets, strategy.lambdas[-1])
    )
    test = stream.tasks[1].test_x[:]
    logits = model(test)
    h = torch.relu(features_of(model, test) @ head.projection)
    seen = sorted(stream.tasks[0].outputs + stream.tasks[1].outputs)
    torch.testing.assert_close(logits[:, seen], (h @ head.readout)[:, seen])
    assert torch.isinf(logits[:, [c for c in range(10) if c not in seen]]).all()

    results = run_experiment(config_of(weights, *METHODS["ranpac"]), tmp_path / "run")
    assert results["ranpac"]["projection"] == 64
    assert len(results["ranpac"]["lambdas"]) == 5
    assert set(results["ranpac"]["lambdas"]) <= set(GRID)
    assert results["train_loss"][0] is not None and results["train_loss"][1:] == [None] * 4
    assert results["metrics"]["acc"] > 0.5


@pytest.mark.parametrize("method", list(METHODS))
def test_a_cut_run_resumes_bit_for_bit(pretrained, tmp_path, monkeypatch, method):
    _, weights = pretrained
    config = config_of(weights, *METHODS[method], "model.drop_path_rate=0.1")
    whole = run_experiment(config, tmp_path / "whole")
    cls = STRATEGIES[method]
    original = cls.before_task

    def cut(self, model, task, seen):
        if task.id == 2:
            raise KeyboardInterrupt
        original(self, model, task, seen)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "before_task", cut)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    saved = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert len(saved["acc_matrix"]) == 2
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed.get(method) == whole.get(method)  # e.g. RanPAC's lambdas


@pytest.mark.parametrize("method", list(METHODS))
def test_each_config_composes_and_class_il_is_their_scenario(method):
    config = validate(compose_config([*SHORT, *METHODS[method]]))
    assert config["strategy"]["name"] == method
    with pytest.raises(ConfigError, match=r"^scenario='task' is invalid; valid: class"):
        validate(compose_config([*SHORT, *METHODS[method], "scenario=task"]))


def test_the_first_session_adapts_what_the_backbone_has():
    with pytest.raises(ConfigError, match=r"finetune.mode='lora' is invalid; valid: full, adapter"):
        validate(compose_config([*SHORT, "strategy=aper", "finetune.mode=lora"]))
    with pytest.raises(ConfigError, match=r"finetune.mode='lora' is invalid; valid: full"):
        validate(
            compose_config(
                [*SHORT, "strategy=ranpac", "strategy.adapt=false", "finetune.mode=lora"]
            )
        )
    overrides = [*FAST, "strategy=ranpac", "strategy.projection=8", "finetune.mode=adapter"]
    config = validate(compose_config(overrides))
    stream, model, strategy = build(config, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"adapter does not apply to model=mlp.*test_vit"):
        ft.check_model(model, Finetune(**config["finetune"]))  # before attach, in prepare


def test_aper_scores_the_pretraining_source_on_the_adapted_backbone(pretrained, tmp_path):
    """The source's own head after APER's first session reads phi*(x), the adapted
    backbone's features (width d), not the concatenation [phi, phi*] (2d) the stream's
    head reads: the run completes with a pretrain column after every task, and the
    adapters moved it off its start (it was a shape error after the first task)."""
    config = config_of(
        pretrained[1], "strategy=aper", "finetune.mode=adapter", "optimizer.lr=0.5",
        "pretrain=model", "pretrain.dataset=digits",
    )  # fmt: skip
    results = run_experiment(config, tmp_path)
    assert results["status"] == "complete"
    column = results["pretrain"]["acc"]
    assert len(column) == 5 and all(0 <= a <= 1 for a in column)
    assert column[0] != results["pretrain"]["init_acc"]  # phi*, adapted; phi would keep it
    assert column[1:] == [column[0]] * 4  # frozen after the first session
