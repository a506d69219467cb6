"""timm backbones at their own input size: weights files, the input path, layer groups,
LoRA's targets, EWC's Fisher over token sequences, precision, and the faults a new user
meets. All offline: timm's tiny test models with pretrained=False, files the tests write."""

from __future__ import annotations

import json
import sys
import urllib.error
from pathlib import Path

import pytest
import timm
import torch
from conftest import FAST
from safetensors.torch import save_file
from test_image_datasets import write_cifar100
from test_resume import interrupt_before_task
from test_run import lab_run

from lab import finetune as ft
from lab.checkpoint import CHECKPOINT
from lab.data.images import Images
from lab.data.inputs import ModelInputs
from lab.errors import ConfigError, WeightsError
from lab.experiment import run_experiment
from lab.models import build_model
from lab.models.timm_backbone import TimmBackbone
from lab.strategies.ewc import fisher_diagonal

# test_vit (6 blocks of width 64) at 32 px: 4 patches and the class token
VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
TIMM_FAST = [*FAST, *VIT, "train.epochs=3"]


def save_test_vit(path: Path, with_head: bool = True) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = timm.create_model("test_vit", pretrained=False).state_dict()
    if not with_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_weights_file_loads_bit_for_bit_with_its_classifier_aside(tmp_path, suffix):
    path = tmp_path / f"test_vit{suffix}"
    state = save_test_vit(path)
    backbone = TimmBackbone((3, 32, 32), "test_vit", weights=str(path))
    loaded = backbone.model.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("head.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    classifier = backbone.pretrained_classifier  # the pre-trained head, kept out of training
    assert torch.equal(classifier.weight, state["head.weight"])
    assert torch.equal(classifier.bias, state["head.bias"])
    assert not classifier.weight.requires_grad
    assert not any(k.startswith("pretrained_classifier") for k in backbone.state_dict())
    assert backbone.pretrained  # kept as loaded: no lab re-initialisation
    model = build_model("timm", (3, 32, 32), [10], init="xavier", arch="test_vit", weights=path)
    assert torch.equal(model.backbone.model.cls_token, state["cls_token"])


def test_a_file_of_features_alone_loads_without_a_classifier(tmp_path):
    path = tmp_path / "features.safetensors"
    state = save_test_vit(path, with_head=False)
    backbone = TimmBackbone((3, 32, 32), "test_vit", weights=str(path))
    assert backbone.pretrained_classifier is None
    assert torch.equal(backbone.model.blocks[3].mlp.fc2.weight, state["blocks.3.mlp.fc2.weight"])


def test_a_weights_file_of_another_architecture_names_the_first_misfit(tmp_path):
    path = tmp_path / "wrong.safetensors"
    state = save_test_vit(path)
    state["blocks.0.attn.qkv.weight"] = torch.zeros(96, 64)  # qkv of another width
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError) as error:
        TimmBackbone((3, 32, 32), "test_vit", weights=str(path))
    message = str(error.value)
    assert "blocks.0.attn.qkv.weight is (96, 64) in the file, (192, 64) in the model" in message
    assert "\n" not in message

    resnet = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), resnet)
    with pytest.raises(WeightsError, match=r"it has no cls_token \(shape \(1, 1, 64\)\)"):
        TimmBackbone((3, 32, 32), "test_vit", weights=str(resnet))


def test_resize_channels_and_normalisation_of_a_two_image_batch_by_hand():
    # two grey 2x2 images, stored as uint8, made into a 3-channel 4x4 model input
    base = torch.tensor([[[[0, 255], [255, 0]]], [[[51, 102], [153, 204]]]], dtype=torch.uint8)
    inputs = ModelInputs(
        size=(4, 4), interpolation="bilinear", channels=3, mean=(0.5, 0.4, 0.2), std=(0.5, 0.2, 0.1)
    )
    x = Images(base, inputs=inputs)[:]
    assert x.shape == (2, 3, 4, 4)
    # bilinear 2 -> 4 (half-pixel centres): each output row/column is a, .75a+.25b, .25a+.75b, b
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=torch.float64)
    for n in range(2):
        grey = w @ (base[n, 0].double() / 255) @ w.T
        for c, (mean, std) in enumerate(zip(inputs.mean, inputs.std, strict=True)):
            torch.testing.assert_close(x[n, c].double(), (grey - mean) / std, atol=1e-6, rtol=0)
    # the first image's corner: 0 -> (0 - 0.5) / 0.5 = -1 in the red channel
    assert x[0, 0, 0, 0].item() == pytest.approx(-1.0)
    # a model without its own mean and std still gets three channels, unnormalised
    plain = Images(base, inputs=ModelInputs(size=(4, 4), channels=3))[:]
    assert plain.shape == (2, 3, 4, 4) and torch.equal(plain[:, 0], plain[:, 2])
    torch.testing.assert_close(plain[1, 1].double(), w @ (base[1, 0].double() / 255) @ w.T)
    # rows drawn in another order make the same images: a batch is each image alone
    assert torch.equal(Images(base, inputs=inputs)[torch.tensor([1, 0])], x.flip(0))


def test_a_vits_layer_groups_follow_timms_grouping_and_freezing_keeps_them(fast_config, tmp_path):
    path = tmp_path / "start.safetensors"
    save_test_vit(path, with_head=False)
    model = build_model("timm", (1, 8, 8), [10], arch="test_vit", input_size=32)
    names = [name for name, _ in ft.layer_groups(model)]
    assert names == [
        "backbone.model.cls_token+pos_embed+patch_embed",
        *[f"backbone.model.blocks.{i}" for i in range(5)],
        "backbone.model.blocks.5+norm",  # timm joins the final norm to the last block
    ]
    # convolutional networks: the stem, then each stage (timm's coarse grouping)
    convnext = build_model("timm", (3, 32, 32), [10], arch="test_convnext")
    stages = [f"backbone.model.stages.{i}" for i in range(4)]
    assert [n for n, _ in ft.layer_groups(convnext)] == [
        "backbone.model.stem",
        *stages,
        "backbone.model.head",  # head: its norm, before the fc
    ]
    resnet = build_model("timm", (3, 32, 32), [10], arch="test_resnet")
    assert [n for n, _ in ft.layer_groups(resnet)] == [
        "backbone.model.conv1+bn1",
        *[f"backbone.model.layer{i}" for i in range(1, 5)],
    ]
    config = fast_config(
        *VIT, f"model.weights={path}", "train.epochs=2",
        "finetune.mode=freeze", "finetune.freeze=2", "keep_checkpoint=true",
    )  # fmt: skip
    run_experiment(config, tmp_path / "run")
    trained = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["model"]
    start = TimmBackbone((3, 32, 32), "test_vit", weights=str(path), input_size=32)
    frozen = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    frozen |= {k for k in start.model.state_dict() if k.startswith("blocks.0.")}
    for key, value in start.model.state_dict().items():
        same = torch.equal(trained[f"backbone.model.{key}"], value)
        assert same == (key in frozen), key


def test_lora_adapts_a_vits_attention_and_mlp_and_never_its_patch_embedding():
    model = build_model("timm", (3, 32, 32), [10], arch="test_vit", input_size=32)
    ft.apply(model, ft.Finetune(mode="lora"))
    adapted = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    layers = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    assert adapted == {f"backbone.model.blocks.{i}.{m}" for i in range(6) for m in layers}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("heads.") for n in trainable)

    chosen = build_model("timm", (3, 32, 32), [10], arch="test_vit", input_size=32)
    ft.apply(chosen, ft.Finetune(mode="lora", lora={**ft.Finetune().lora, "targets": ["qkv"]}))
    adapted = {n.split(".lora_A")[0] for n, _ in chosen.named_parameters() if ".lora_A." in n}
    assert adapted == {f"backbone.model.blocks.{i}.attn.qkv" for i in range(6)}
    with pytest.raises(ConfigError, match="'attn.qkvv', not a Linear/Conv2d of the backbone"):
        bad = build_model("timm", (3, 32, 32), [10], arch="test_vit", input_size=32)
        ft.apply(
            bad, ft.Finetune(mode="lora", lora={**ft.Finetune().lora, "targets": ["attn.qkvv"]})
        )


def test_ewcs_fisher_over_token_sequences_equals_per_sample_gradients():
    torch.manual_seed(0)
    model = build_model("timm", (3, 32, 32), [3], arch="test_vit", input_size=32)
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 1, 0])
    names = [n for n, _ in model.named_parameters()]
    fisher = fisher_diagonal(model, x, y, task_id=0, names=names, batch_size=3)
    model.eval()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xi, yi in zip(x, y, strict=True):  # one sample at a time: the definition
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(xi[None]), yi[None]).backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad.square() / len(x)
    for n in ("backbone.model.blocks.2.attn.qkv.weight", "backbone.model.blocks.0.mlp.fc1.bias"):
        # a sum over the tokens, squared: not the sum of the tokens' squares
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-9)
    for n in names:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-3, atol=1e-8, msg=n)


def test_bf16_on_the_cpu_trains_within_a_point_of_fp32(fast_config, tmp_path):
    # domain-IL: accuracies short of 0 and 1, where a precision could show
    full = run_experiment(fast_config("scenario=domain", "train.precision=fp32"), tmp_path / "32")
    half = run_experiment(fast_config("scenario=domain", "train.precision=bf16"), tmp_path / "16")
    assert half["precision"] == "bf16" and full["precision"] == "fp32"
    assert half["train_loss"] != full["train_loss"]  # it did run in another precision
    assert half["metrics"]["learning_acc"] > 0.9
    for key in ("acc", "learning_acc", "avg_inc_acc", "bwt"):
        assert abs(half["metrics"][key] - full["metrics"][key]) <= 0.01, key
    for row_half, row_full in zip(half["acc_matrix"], full["acc_matrix"], strict=True):
        assert max(abs(a - b) for a, b in zip(row_half, row_full, strict=True)) <= 0.02


def test_auto_precision_is_fp32_on_the_cpu(fast_config, tmp_path):
    assert run_experiment(fast_config("train.epochs=1"), tmp_path)["precision"] == "fp32"


def test_a_timm_run_resumes_to_the_same_matrix(fast_config, tmp_path, monkeypatch):
    config = fast_config(
        *TIMM_FAST[len(FAST) :], "scenario=task", "optimizer=adam", "strategy=ewc",
        "strategy.lambda=10", "finetune.mode=lora",
    )  # fmt: skip
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "ewc", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["metrics"]["learning_acc"] > 0.9  # it learned: compared models, not noise


@pytest.mark.parametrize("when", ["at compile", "at the first call"])
def test_a_compile_failure_falls_back_in_one_line(fast_config, tmp_path, monkeypatch, caplog, when):
    def broken(self, *args, **kwargs):
        if when == "at compile":
            raise RuntimeError("no compiler here\nsecond line")

        def fail(*a, **k):  # torch.compile is lazy: its backend fails at the first call
            raise RuntimeError("no compiler here\ntraceback")

        self._compiled_call_impl = fail

    eager = run_experiment(fast_config("train.epochs=1"), tmp_path / "eager")
    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    fallback = run_experiment(fast_config("train.epochs=1", "train.compile=true"), tmp_path / "b")
    assert fallback["compiled"] is False
    assert fallback["acc_matrix"] == eager["acc_matrix"]
    assert "torch.compile failed (RuntimeError: no compiler here); training runs uncompiled" in (
        caplog.text
    )


def test_resnet18_weights_offline_is_one_line(fast_config, tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    config = fast_config("model=resnet18", "model.weights=IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="could not be downloaded \\(URLError: <urlopen error"):
        run_experiment(config, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


SHORT = ["logger=none", "train.iterations=45", "eval.samples_per_task=200", "optimizer=adam"]


EWC = ["strategy=ewc", "strategy.lambda=10", "strategy.fisher_samples=200"]


@pytest.mark.e2e
@pytest.mark.parametrize("regime", [["finetune.mode=lora"], EWC], ids=["lora", "ewc"])
def test_lab_run_trains_a_timm_vit_on_split_fashion_mnist(tmp_path, regime):
    done = lab_run(*VIT, *SHORT, *regime, "hydra.run.dir=run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete" and results["benchmark"] == "split_fmnist"
    matrix = results["acc_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    assert min(matrix[i][i] for i in range(5)) > 0.8  # each task learned, 28 px made 32 px RGB


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, env, expected",
    [
        (
            [*VIT, "model.pretrained=true"],
            {"HF_HUB_OFFLINE": "1"},
            "model.arch=test_vit model.pretrained=true: the weights could not be downloaded",
        ),
        (["model=timm", "model.arch=vit_nonexistent"], {}, "'vit_nonexistent' is not a timm model"),
        (
            ["strategy=ewc", "strategy.lambda=nan"],
            {},
            "strategy.lambda=nan is invalid; valid: a finite",
        ),
        (
            ["-m", "hydra/launcher=slurm", "seed=0,1"],
            {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},  # the venv's, no srun
            "hydra/launcher=slurm needs a SLURM cluster, and this machine has no srun on PATH",
        ),
    ],
    ids=["hub-offline", "unknown-arch", "nan-strength", "slurm-off-cluster"],
)
def test_a_new_users_faults_are_one_line(tmp_path, args, env, expected):
    done = lab_run(
        *args, "benchmark=split_digits", "logger=none", "hydra.run.dir=run", cwd=tmp_path, env=env
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_lab_run_trains_a_timm_vit_on_a_tiny_split_cifar100_offline(tmp_path):
    write_cifar100(tmp_path / "data", per_class=4)  # torchvision's layout, 100 classes
    done = lab_run(
        *VIT, "benchmark=split_cifar100", f"data.root={tmp_path / 'data'}", "logger=none",
        "train.iterations=3", "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete"
    assert len(results["acc_matrix"]) == 10 and all(len(r) == 10 for r in results["acc_matrix"])
    assert [t["classes"] for t in results["tasks"]][3] == list(range(30, 40))
    assert [t["test_samples"] for t in results["tasks"]] == [10] * 10  # one per class
