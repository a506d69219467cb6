"""The PEFT menu (lab.finetune, issue 30): IA3, BitFit, adapters, VPT, prefix tuning and
one module set per task. Each forward pass by hand on a tiny ViT (timm's test_vit at
32 px: 6 blocks of width 64, 4 patches and the class token), each mode's trainable set,
the per-task sets' isolation, the faults, and short runs end to end. All offline."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_report import write_run
from test_resume import interrupt_before_task
from test_run import lab_run

from lab import finetune as ft
from lab.engine import TrainSettings, train_task
from lab.errors import ConfigError
from lab.experiment import build, run_experiment
from lab.models import SOURCE, build_model
from lab.optim import OptimizerSettings, make_optimizer
from lab.report import write_report
from lab.strategies import Strategy
from lab.strategies.base import penalised_parameters

VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
CPU = torch.device("cpu")
BLOCKS = range(6)


def vit(head_sizes=(3,), **options):
    torch.manual_seed(0)
    return build_model("timm", (3, 32, 32), list(head_sizes), arch="test_vit", input_size=32)


def applied(mode: str, head_sizes=(3,), **options) -> torch.nn.Module:
    model = vit(head_sizes)
    ft.apply(model, ft.Finetune(mode=mode, **options))
    return model


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def randomise(model, word: str) -> None:
    """Give the mode's modules (names containing `word`) values away from their start."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if word in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if word == "ia3" else 0.0))


def block_input(model, index: int, x: torch.Tensor) -> torch.Tensor:
    """The tokens block `index` reads (after every pre-hook), for the input images x."""
    seen = {}
    block = model.backbone.model.blocks[index]
    handle = block.register_forward_hook(lambda m, args, out: seen.setdefault("x", args[0]))
    try:
        model(x, 0)
    finally:
        handle.remove()
    return seen["x"]


def test_ia3_rescales_keys_values_and_the_mlps_activation_by_hand():
    model = applied("ia3")
    randomise(model, "ia3")
    block = model.backbone.model.blocks[2]
    tokens = torch.randn(2, 5, 64)
    qkv = block.attn.qkv
    scale = qkv.ia3_l["default"].flatten()  # 3 x 64: q, k and v (timm fuses them)
    expected = F.linear(tokens, qkv.base_layer.weight, qkv.base_layer.bias) * scale
    torch.testing.assert_close(qkv(tokens), expected)
    fc2, hidden = block.mlp.fc2, torch.randn(2, 5, 192)
    scale = fc2.ia3_l["default"].flatten()  # on its input: gamma(W_1 x), the activation
    expected = F.linear(hidden * scale, fc2.base_layer.weight, fc2.base_layer.bias)
    torch.testing.assert_close(fc2(hidden), expected)
    # at the start every vector is 1: the same function
    fresh, x = vit(), torch.randn(3, 3, 32, 32)
    reference = fresh(x, 0).detach()
    ft.apply(fresh, ft.Finetune(mode="ia3"))
    torch.testing.assert_close(fresh(x, 0), reference)


def test_ia3_on_an_mlp_rescales_each_layers_output():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), [2], hidden_sizes=[20, 10])
    ft.apply(model, ft.Finetune(mode="ia3"))
    assert trainable_names(model) == {
        "backbone.layers.1.ia3_l.default",
        "backbone.layers.3.ia3_l.default",
        "heads.0.weight",
        "heads.0.bias",
    }
    randomise(model, "ia3")
    layer, x = model.backbone.layers[1], torch.randn(4, 64)
    expected = layer.base_layer(x) * layer.ia3_l["default"].flatten()
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kind", ["parallel", "sequential"])
def test_the_adapters_branch_is_zero_at_the_start_and_by_hand(kind):
    options = {"dim": 4, "kind": kind, "scale": 0.1}
    x = torch.randn(3, 3, 32, 32)
    reference = vit()(x, 0).detach()
    model = applied("adapter", adapter=options)
    torch.testing.assert_close(model(x, 0), reference)  # W_up = 0: the same function
    randomise(model, "adapter")
    block, h = model.backbone.model.blocks[1], torch.randn(2, 5, 64)
    if kind == "parallel":  # MLP(h) + s * W_up ReLU(W_down h), beside the MLP
        a = block.mlp.adapter
        branch = 0.1 * a.up(torch.relu(a.down(h)))
        plain = block.mlp.fc2(block.mlp.act(block.mlp.fc1(h)))
        torch.testing.assert_close(block.mlp.forward(h), plain)  # timm's MLP, as it was
        torch.testing.assert_close(block.mlp(h), plain + branch)
    else:  # f(h) + W_up GELU(W_down f(h)), after the attention and after the MLP
        a = block.mlp.adapter
        f = block.mlp.fc2(block.mlp.act(block.mlp.fc1(h)))
        torch.testing.assert_close(block.mlp(h), f + a.up(F.gelu(a.down(f))))
        a = block.attn.adapter
        f = block.attn.forward(h)  # the attention alone, without its hook
        torch.testing.assert_close(block.attn(h), f + a.up(F.gelu(a.down(f))))
    assert not torch.allclose(model(x, 0), reference)


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_vpts_tokens_sit_after_the_class_token_and_the_output_ignores_them(kind):
    model = applied("vpt", vpt={"tokens": 3, "kind": kind})
    backbone, x = model.backbone.model, torch.randn(2, 3, 32, 32)
    prompts = [b.prompt.tokens[0] for b in backbone.blocks if hasattr(b, "prompt")]
    assert len(prompts) == (6 if kind == "deep" else 1)
    for i in BLOCKS:
        tokens = block_input(model, i, x)
        assert tokens.shape == (2, 1 + 3 + 4, 64)  # class token, 3 prompts, 4 patches
        if i < len(prompts):  # a block's own prompts at positions 1..3, for every image
            assert torch.equal(tokens[:, 1:4], prompts[i].expand(2, -1, -1))
    # the output by hand: the blocks on [cls; P; E], the prompts' outputs dropped, norm, cls
    with torch.no_grad():
        h = backbone.norm_pre(backbone._pos_embed(backbone.patch_embed(x)))
        for i, block in enumerate(backbone.blocks):
            own = prompts[i] if i < len(prompts) else None
            if i == 0:
                h = torch.cat([h[:, :1], own.expand(2, -1, -1), h[:, 1:]], 1)
            elif own is not None:
                h = torch.cat([h[:, :1], own.expand(2, -1, -1), h[:, 4:]], 1)
            h = block.forward(h)  # the block alone, without the hooks
        h = backbone.norm(torch.cat([h[:, :1], h[:, 4:]], 1))
        torch.testing.assert_close(model.backbone(x), h[:, 0])
        backbone.global_pool = "avg"  # a mean over the patch tokens: never the prompts'
        torch.testing.assert_close(model.backbone(x), h[:, 1:].mean(1))


def test_prefix_keys_and_values_join_the_attention_by_hand():
    model = applied("prefix", prefix={"tokens": 2})
    attn, x = model.backbone.model.blocks[3].attn, torch.randn(2, 5, 64)
    keys, values = attn.prefix.keys, attn.prefix.values  # (heads, P, d_h)
    heads, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(2, 5, 3, heads, d).permute(2, 0, 3, 1, 4)
    k = torch.cat([keys.expand(2, -1, -1, -1), k], 2)  # (B, heads, P + N, d_h)
    v = torch.cat([values.expand(2, -1, -1, -1), v], 2)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1)
    assert weights.shape == (2, heads, 5, 2 + 5)  # the queries are the tokens' alone
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 64))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)
    attn.fused_attn = False  # timm's unfused path (EWC's per-sample Fisher takes it)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


HEADS = {"heads.0.weight", "heads.0.bias"}
LAYERS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def block_names(*suffixes: str) -> set[str]:
    return {f"backbone.model.blocks.{i}.{s}" for i in BLOCKS for s in suffixes}


@pytest.mark.parametrize(
    "mode, options, expected",
    [
        ("ia3", {}, block_names("attn.qkv.ia3_l.default", "mlp.fc2.ia3_l.default")),
        (
            "bitfit",
            {},
            {"backbone.model.patch_embed.proj.bias", "backbone.model.norm.bias"}
            | block_names(*(f"{m}.bias" for m in (*LAYERS, "norm1", "norm2"))),
        ),
        (
            "adapter",
            {"adapter": {"dim": 4, "kind": "parallel", "scale": 0.1}},
            block_names(
                *(f"mlp.adapter.{w}.{p}" for w in ("down", "up") for p in ("weight", "bias"))
            ),  # noqa: E501
        ),
        (
            "adapter",
            {"adapter": {"dim": 4, "kind": "sequential", "scale": 0.1}},
            block_names(
                *(
                    f"{where}.adapter.{w}.{p}"
                    for where in ("attn", "mlp")
                    for w in ("down", "up")
                    for p in ("weight", "bias")
                ),
                *(f"norm{i}.{p}" for i in (1, 2) for p in ("weight", "bias")),
            ),
        ),
        ("vpt", {}, {"backbone.model.blocks.0.prompt.tokens"}),
        ("vpt", {"vpt": {"tokens": 2, "kind": "deep"}}, block_names("prompt.tokens")),
        ("prefix", {}, block_names("attn.prefix.keys", "attn.prefix.values")),
        (
            "lora",
            {},
            block_names(*(f"{m}.lora_{ab}.default.weight" for m in LAYERS for ab in "AB")),
        ),
        ("linear_probe", {}, set()),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_modes_trainable_set_exactly(mode, options, expected):
    model = applied(mode, **options)
    assert trainable_names(model) == expected | HEADS
    counted = ft.count_trainable(model)
    in_backbone = sum(p.numel() for n, p in model.named_parameters() if n in expected)
    heads = 64 * 3 + 3
    assert counted == {
        "backbone_modules": in_backbone,
        "heads": heads,
        "total": in_backbone + heads,
    }
    # what EWC's Fisher and L2's anchor cover: what trains (one shared head: it too)
    assert set(penalised_parameters(model)) == expected | HEADS


def test_bitfit_on_an_mlp_trains_its_biases_alone():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), [2, 2], hidden_sizes=[20, 10])
    ft.apply(model, ft.Finetune(mode="bitfit"))
    assert trainable_names(model) == {
        "backbone.layers.1.bias",
        "backbone.layers.3.bias",
        *(f"heads.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")),
    }
    assert ft.count_trainable(model) == {"backbone_modules": 30, "heads": 44, "total": 74}


@pytest.mark.parametrize("mode", ["adapter", "vpt", "prefix"])
def test_a_vit_mode_on_an_mlp_is_refused_in_one_line(mode):
    model = build_model("mlp", (1, 8, 8), [2], hidden_sizes=[20])
    with pytest.raises(ConfigError) as error:
        ft.apply(model, ft.Finetune(mode=mode))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"finetune.mode={mode} does not apply to model=mlp: it needs a timm")
    assert message.endswith("valid there: full, freeze, linear_probe, lora, ia3, bitfit")


def test_bad_peft_values_are_one_line(fast_config):
    cases = {
        ("scenario=class", "finetune.mode=lora", "finetune.per_task=true"): (
            "finetune.per_task=true with scenario=class: a task's modules are chosen by its "
            "task id, which only task-IL gives at test time; valid: scenario=task"
        ),
        ("finetune.adapter.kind=serial",): (
            "finetune.adapter.kind='serial' is invalid; valid: parallel, sequential"
        ),
        ("finetune.vpt.kind=wide",): "finetune.vpt.kind='wide' is invalid; valid: shallow, deep",
        ("finetune.prefix.tokens=0",): "finetune.prefix.tokens=0 is invalid; valid: an integer",
        ("engine=avalanche", "finetune.mode=vpt"): "pretrain and finetune run on the lab engine",
    }
    for overrides, expected in cases.items():
        with pytest.raises(ConfigError) as error:
            fast_config(*overrides)
        assert expected in str(error.value) and "\n" not in str(error.value), overrides
    model = build_model("mlp", (1, 8, 8), [2, 2], hidden_sizes=[20])
    with pytest.raises(ConfigError, match="per_task=true with finetune.mode=full: that mode adds"):
        ft.apply(model, ft.Finetune(mode="full", per_task=True))


def train(model, task, settings, epochs=2):
    optimizer = make_optimizer(
        ft.param_groups(model, settings, 0.05),
        OptimizerSettings("adamw", lr=0.05, weight_decay=0.1),  # decay touches what it may
    )
    train_task(
        model, Strategy(), task, [task], optimizer, TrainSettings(epochs=epochs, batch_size=32),
        torch.Generator().manual_seed(0), "task", finetune=settings,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["lora", "vpt"])
def test_task_1s_training_leaves_task_0s_modules_bit_for_bit(fast_config, mode):
    config = fast_config(*VIT, "scenario=task", "benchmark.num_tasks=2")
    stream, model, _ = build(config, CPU)
    settings = ft.Finetune(mode=mode, per_task=True)
    ft.apply(model, settings)
    bank = model.backbone.task_modules
    shared = {n: p.detach().clone() for n, p in model.named_parameters() if "task_modules" not in n}
    assert all(not p.requires_grad for n, p in model.backbone.named_parameters() if "sets" not in n)
    train(model, stream.tasks[0], settings)
    after_0 = [{k: p.detach().clone() for k, p in s.items()} for s in bank.sets]
    x = stream.tasks[0].test_x[:8]
    outputs_0 = model(x, 0).detach()
    train(model, stream.tasks[1], settings)
    for k, p in bank.sets[0].items():
        assert torch.equal(p, after_0[0][k]), k  # task 0's own set: untouched
    assert any(not torch.equal(p, after_0[1][k]) for k, p in bank.sets[1].items())
    assert torch.equal(model(x, 0), outputs_0)  # task 0 answers as it did
    for n, p in model.named_parameters():  # the backbone, its original modules: frozen
        if n in shared and not n.startswith("heads."):
            assert torch.equal(p, shared[n]), n
    # one batch of both tasks: each sample through its own task's modules
    mixed = torch.cat([x[:4], x[4:]])
    ids = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    together = model.features(mixed, ids)
    for t in (0, 1):
        torch.testing.assert_close(together[ids == t], model.features(mixed[ids == t], t))
    # the source, and a call without a task id: the mode's modules as they started
    torch.testing.assert_close(model.features(x, SOURCE), model.backbone(x))


@pytest.mark.parametrize("mode", ["adapter", "vpt", "prefix"])
def test_a_copy_runs_its_own_modules(mode):
    """LwF's teacher is a deep copy: its hooks and forwards must read its own modules."""
    model = applied(mode)
    randomise(model, {"adapter": "adapter", "vpt": "prompt", "prefix": "prefix"}[mode])
    teacher, x = copy.deepcopy(model), torch.randn(2, 3, 32, 32)
    before = teacher(x, 0).detach()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and not n.startswith("heads."):
                # random, not a constant: a constant added to every prompt token's
                # components is what the blocks' LayerNorms subtract again
                p.add_(torch.randn_like(p))
    torch.testing.assert_close(teacher(x, 0), before)
    assert not torch.allclose(model(x, 0), before)


MODE_RUNS = {
    "ia3": ["finetune.mode=ia3"],
    "bitfit": ["finetune.mode=bitfit"],
    "adapter-parallel": ["finetune.mode=adapter"],
    "adapter-sequential": ["finetune.mode=adapter", "finetune.adapter.kind=sequential"],
    "vpt-deep": ["finetune.mode=vpt", "finetune.vpt.kind=deep"],
    "prefix": ["finetune.mode=prefix"],
}
SHORT = [*VIT, "scenario=task", "benchmark.num_tasks=2", "train.iterations=10", "optimizer=adam"]
SOURCED = ["pretrain=source", "pretrain.classes=[0,1,2,3,4]", "pretrain.epochs=1",
           "benchmark.class_order=[5,6,7,8,9]"]  # fmt: skip


@pytest.mark.parametrize("regime", list(MODE_RUNS))
def test_every_mode_runs_with_ewc_a_source_and_probes(fast_config, tmp_path, regime):
    config = fast_config(
        *SHORT, *SOURCED, *MODE_RUNS[regime], "strategy=ewc", "strategy.lambda=10",
        "strategy.fisher_samples=64", "analysis.probe=true", "analysis.probe_samples=64",
        "analysis.cka=true", "analysis.cka_samples=64", "eval.samples_per_task=64",
    )  # fmt: skip
    results = run_experiment(config, tmp_path)
    assert results["status"] == "complete" and results["diverged"] == []
    assert len(results["pretrain"]["acc"]) == 2 and len(results["probe_matrix"]) == 2
    assert len(results["cka"]) == 2
    counted = results["trainable_parameters"]
    assert counted["total"] == counted["backbone_modules"] + counted["heads"]
    assert 0 < counted["backbone_modules"] < 30_000  # of test_vit's 365,000


def test_a_per_task_run_resumes_bit_for_bit_and_keeps_its_source(
    fast_config, tmp_path, monkeypatch
):
    config = fast_config(
        *SHORT, *SOURCED, "benchmark.num_tasks=3", "finetune.mode=adapter",
        "finetune.per_task=true", "strategy=ewc", "strategy.lambda=10",
        "strategy.fisher_samples=32", "eval.samples_per_task=64",
    )  # fmt: skip
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "ewc", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["pretrain"] == whole["pretrain"]
    # the source reads the frozen backbone with the modules as they started: it keeps all
    assert whole["pretrain"]["acc"] == [whole["pretrain"]["init_acc"]] * 3
    # task j's answers do not move once it is learned: its modules and head are its own
    matrix = whole["acc_matrix"]
    assert all(matrix[i][j] == matrix[j][j] for j in range(3) for i in range(j, 3))
    adapters = 6 * (64 * 16 + 16 + 16 * 64 + 64)
    assert whole["trainable_parameters"]["backbone_modules"] == 3 * adapters


def test_the_report_shows_trainable_parameters_and_train_time(tmp_path):
    root = tmp_path / "runs"
    for seed, (params, seconds) in enumerate([(1200, 3.0), (1200, 5.0)]):
        path = root / f"lora{seed}"
        write_run(path, "naive", seed, [[0.9, 0.0], [0.5, 1.0]])
        results = json.loads((path / "results.json").read_text())
        results["trainable_parameters"] = {"backbone_modules": 1000, "heads": 200, "total": params}
        results["timing"] = {"train_s": seconds}
        (path / "results.json").write_text(json.dumps(results))
    report = write_report([str(root)], tmp_path / "out")
    text = report.markdown.read_text()
    assert "| Trainable params | Train time (s) | Seeds |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| naive |")]
    assert row.endswith("| 1,200 | 4.0 ± 1.4 | 2 |")


@pytest.mark.e2e
def test_lab_run_trains_per_task_vpt_on_test_vit_and_refuses_it_on_an_mlp(tmp_path):
    common = ["benchmark=split_digits", "logger=none", "train.iterations=3", "scenario=task"]
    done = lab_run(
        *VIT, *common, "finetune.mode=vpt", "finetune.per_task=true", "hydra.run.dir=run",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete" and len(results["acc_matrix"]) == 5
    assert results["trainable_parameters"]["backbone_modules"] == 5 * 5 * 64  # 5 tokens a task
    refused = lab_run(*common, "finetune.mode=prefix", "hydra.run.dir=mlp", cwd=tmp_path)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "finetune.mode=prefix does not apply to model=mlp" in lines[0]
    assert "Traceback" not in refused.stderr
