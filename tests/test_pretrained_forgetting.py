"""What a pre-trained model forgets of its own pre-training (pretrain=model), and the
remedies of the fine-tuning literature: L2-SP, WiSE-FT and LP-FT. Offline: timm's
test_vit, weights files the tests write, ImageNet's two folder layouts written by hand."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import FAST
from PIL import Image

from lab.data.folders import center_crop, load_imagenet_val
from lab.engine import TrainSettings, linear_probe
from lab.errors import ConfigError, DataNotFoundError
from lab.experiment import run_experiment
from lab.finetune import Finetune
from lab.models import build_model
from lab.optim import OptimizerSettings
from lab.pretrain import model_source
from lab.report.figures import pareto_front, wise_ft_mean_curve
from lab.strategies import build_strategy
from lab.strategies.wise_ft import interpolated

VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
# a task-IL stream over digits 5-9; the source, digits 0-4, is not in it
STREAM = [*FAST, *VIT, "scenario=task", "benchmark.class_order=[5,6,7,8,9]"]
STREAM += ["benchmark.num_tasks=2", "train.epochs=1"]
SOURCE = ["pretrain.dataset=digits", "pretrain.classes=[0,1,2,3,4]"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A run that pre-trains test_vit on digits 0-4 itself, then learns the stream; its
    pretrained.safetensors is the source in timm's layout, the source head its classifier."""
    from conftest import compose_config

    from lab.config import validate

    run = tmp_path_factory.mktemp("direct")
    overrides = [*STREAM, "pretrain=source", *SOURCE, "pretrain.epochs=5", "pretrain.batch_size=32"]
    config = validate(compose_config(overrides))
    return run_experiment(config, run), run / "pretrained.safetensors"


def test_a_source_saved_in_timms_layout_is_the_models_own_with_the_same_column(
    pretrained, fast_config, tmp_path
):
    direct, weights = pretrained
    config = fast_config(
        *STREAM[len(FAST) :], f"model.weights={weights}", "pretrain=model", *SOURCE
    )
    reloaded = run_experiment(config, tmp_path)
    assert reloaded["pretrain"]["init_acc"] == direct["pretrain"]["init_acc"] > 0.5
    assert reloaded["pretrain"]["acc"] == direct["pretrain"]["acc"]  # the whole column
    assert reloaded["acc_matrix"] == direct["acc_matrix"]


def test_lwf_distils_and_ewc_anchors_a_hub_models_own_head(pretrained, fast_config, tmp_path):
    """The model's classifier counts as the task before the stream: LwF distils it, EWC's
    Fisher is taken on its data. Both keep more of the source than naive fine-tuning here
    (of the source after the stream: naive 0.35, EWC 0.50, LwF 0.65)."""
    _, weights = pretrained
    common = [*STREAM[len(FAST) :], f"model.weights={weights}", "pretrain=model", *SOURCE]
    common += ["train.epochs=5"]
    naive = run_experiment(fast_config(*common), tmp_path / "naive")["pretrain"]["acc"][-1]
    lwf = run_experiment(fast_config(*common, "strategy=lwf", "strategy.alpha=1"), tmp_path / "l")
    ewc = run_experiment(
        fast_config(*common, "strategy=ewc", "strategy.lambda=100"), tmp_path / "e"
    )
    assert lwf["pretrain"]["acc"][-1] > naive + 0.1
    assert ewc["pretrain"]["acc"][-1] > naive + 0.1


def test_pretrain_model_needs_a_models_own_classifier(fast_config, tmp_path):
    with pytest.raises(ConfigError, match=r"pretrain=model with model=mlp .*valid: model=timm"):
        run_experiment(fast_config("pretrain=model", "pretrain.dataset=digits"), tmp_path)
    with pytest.raises(ConfigError, match=r"pretrain=model with model=timm \(no pre-trained"):
        run_experiment(fast_config(*VIT, "pretrain=model", "pretrain.dataset=digits"), tmp_path)


def test_pretrain_classes_must_name_every_output_of_the_head(pretrained, fast_config, tmp_path):
    _, weights = pretrained
    config = fast_config(
        *VIT, f"model.weights={weights}", "pretrain=model", "pretrain.dataset=digits"
    )
    with pytest.raises(ConfigError, match=r"digits has labels 0..9, the model's classifier 5"):
        run_experiment(config, tmp_path / "a")
    config["pretrain"]["classes"] = [0, 1, 2]
    with pytest.raises(ConfigError, match=r"names 3 labels for the model's classifier of 5"):
        run_experiment(config, tmp_path / "b")


def write_jpeg(path, size=(40, 30), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def test_imagenet_val_reads_torchvisions_and_the_hubs_layouts_with_in1ks_labels(tmp_path):
    folders, flat = tmp_path / "tv", tmp_path / "hf"
    for i, wnid in enumerate(["n01440764", "n15075141"]):  # ImageNet-1k's first and last
        for k in range(3):
            write_jpeg(folders / wnid / f"ILSVRC2012_val_{i}{k}.JPEG", value=60 * i + 10 * k)
            write_jpeg(flat / f"ILSVRC2012_val_0000{i}{k}_{wnid}.JPEG", value=60 * i + 10 * k)
    a = load_imagenet_val(tmp_path, folder=folders, store_size=16)
    b = load_imagenet_val(tmp_path, folder=flat, store_size=16)
    assert a.test_y.tolist() == b.test_y.tolist() == [0, 0, 0, 999, 999, 999]
    assert torch.equal(a.test_x, b.test_x) and a.test_x.shape == (6, 3, 16, 16)
    assert len(a.train_y) == 0 and a.num_classes == 1000
    write_jpeg(flat / "ILSVRC2012_val_00000099_n99999999.JPEG")
    with pytest.raises(Exception, match=r"n99999999.*names no ILSVRC-2012 synset"):
        load_imagenet_val(tmp_path, folder=flat, store_size=16)
    with pytest.raises(DataNotFoundError, match=r"put the ILSVRC-2012 validation images in"):
        load_imagenet_val(tmp_path, folder=tmp_path / "none")


def test_imagenets_evaluation_view_is_the_centre_of_the_shorter_side_at_size_over_0875():
    """A 64 x 32 image, left half black, right half white: shorter side 32 -> 16 / 0.875
    = 18 (int), so 36 x 18, of which the centre 16 x 16 is columns 10..25: the left 8
    black, the right 8 white (the boundary at 18)."""
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    out = center_crop(Image.fromarray(pixels), 16)
    assert out.shape == (3, 16, 16)
    assert (out[:, :, :7] == 0).all() and (out[:, :, 9:] == 255).all()


def test_eval_samples_draws_that_many_per_class_and_the_fisher_reads_the_rest(tmp_path):
    folders = tmp_path / "val"
    for wnid in ["n01440764", "n01443537"]:
        for k in range(5):
            write_jpeg(folders / wnid / f"{k}.JPEG", value=20 * k)
    dataset = load_imagenet_val(tmp_path, folder=folders, store_size=8)
    task = model_source(dataset, 1000, None, 2, seed=0, inputs=None, device=None)
    assert sorted(task.test_y.tolist()) == [0, 0, 1, 1]
    test_rows, train_rows = set(task.test_x.rows.tolist()), set(task.train_x.rows.tolist())
    assert not test_rows & train_rows and len(test_rows | train_rows) == 10
    again = model_source(dataset, 1000, None, 2, seed=0, inputs=None, device=None)
    assert torch.equal(again.test_x.rows, task.test_x.rows)
    other = model_source(dataset, 1000, None, 2, seed=1, inputs=None, device=None)
    assert not torch.equal(other.test_x.rows, task.test_x.rows)


def test_l2_sp_is_alpha_half_toward_the_start_plus_beta_half_on_the_heads():
    model = build_model("mlp", (1, 2, 2), [3], hidden_sizes=[2])
    strategy = build_strategy("l2_sp", alpha=0.3, beta=0.05)
    strategy.before_task(model, None, [])
    start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    ce = torch.tensor(1.0)
    loss = strategy.loss(model, None, None, None, ce)
    toward = sum(
        (p - start[n]).square().sum() for n, p in model.backbone.named_parameters()
    )  # every entry moved by 0.5
    count = sum(p.numel() for p in model.backbone.parameters())
    assert toward.item() == pytest.approx(0.25 * count)
    heads = sum(p.square().sum() for p in model.heads.parameters())
    assert loss.item() == pytest.approx(1 + 0.15 * 0.25 * count + 0.025 * heads.item())
    strategy.before_task(model, None, [])  # the anchor is the stream's start, for good
    assert strategy.loss(model, None, None, None, ce).item() == pytest.approx(loss.item())


def test_wise_ft_interpolates_every_tensor_but_loras_a():
    start = {"w": torch.tensor([0.0, 2.0]), "m.lora_A.default.weight": torch.tensor([1.0])}
    end = {"w": torch.tensor([1.0, 4.0]), "m.lora_A.default.weight": torch.tensor([5.0])}
    mid = interpolated(start, end, 0.25)
    assert mid["w"].tolist() == [0.25, 2.5]
    assert mid["m.lora_A.default.weight"].tolist() == [5.0]
    assert torch.equal(interpolated(start, end, 0.0)["w"], start["w"])
    assert torch.equal(interpolated(start, end, 1.0)["w"], end["w"])


def test_wise_ft_curve_runs_from_the_pre_trained_source_to_plain_fine_tuning(
    pretrained, fast_config, tmp_path
):
    _, weights = pretrained
    common = [*STREAM[len(FAST) :], f"model.weights={weights}", "pretrain=model", *SOURCE]
    naive = run_experiment(fast_config(*common), tmp_path / "naive")
    whole = run_experiment(
        fast_config(*common, "strategy=wise_ft", "strategy.alpha=1"), tmp_path / "w"
    )
    assert whole["acc_matrix"] == naive["acc_matrix"]  # alpha = 1 is plain fine-tuning
    curve = whole["wise_ft_curve"]
    assert [p["alpha"] for p in curve] == [round(0.1 * i, 1) for i in range(11)]
    assert curve[0]["source"] == whole["pretrain"]["init_acc"]  # exactly the start's
    assert curve[-1]["accuracies"] == whole["acc_matrix"][-1]
    assert curve[-1]["source"] == whole["pretrain"]["acc"][-1]
    assert (tmp_path / "w" / "wise_ft_curve.png").is_file()
    half = run_experiment(fast_config(*common, "strategy=wise_ft"), tmp_path / "half")
    assert half["acc_matrix"] != naive["acc_matrix"]  # sequential: alpha = 0.5 after each task
    assert half["pretrain"]["acc"][-1] > naive["pretrain"]["acc"][-1]


def test_lp_ft_trains_the_heads_alone_first_and_gives_the_rest_back(fast_config):
    model = build_model("mlp", (1, 8, 8), [2], hidden_sizes=[8, 8])
    from lab.experiment import make_stream

    config = fast_config("scenario=class", "benchmark.num_tasks=5")
    task = make_stream(config).tasks[0]
    backbone = copy.deepcopy(model.backbone.state_dict())
    head = model.heads[0].weight.detach().clone()
    first, *_, last = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)]
    first.weight.requires_grad_(False)  # a regime's frozen layer
    linear_probe(
        model,
        task,
        [task],
        "class",
        OptimizerSettings(lr=0.1),
        TrainSettings(batch_size=32),
        torch.Generator().manual_seed(0),
        Finetune(lp_epochs=2),
    )
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(head, model.heads[0].weight)
    assert not first.weight.requires_grad  # as the regime left it
    assert last.weight.requires_grad


def test_lp_ft_runs_end_to_end_and_differs_from_fine_tuning(fast_config, tmp_path):
    plain = run_experiment(fast_config("train.epochs=2"), tmp_path / "ft")
    lp_ft = run_experiment(fast_config("train.epochs=2", "finetune.lp_epochs=2"), tmp_path / "lp")
    assert lp_ft["acc_matrix"] != plain["acc_matrix"]
    assert json.loads((tmp_path / "lp" / "results.json").read_text())["status"] == "complete"


def test_the_pareto_front_and_the_mean_wise_ft_curve_by_hand():
    # (1.5, 3) is beaten on both by (2, 4); (1, 4) by (1, 5) on one and tied on the other
    assert pareto_front([(1, 5), (2, 4), (1.5, 3), (3, 1), (2, 4), (1, 4)]) == [0, 1, 4, 3]
    curves = [
        [{"alpha": 0.0, "acc": 0.2, "source": 0.9}, {"alpha": 1.0, "acc": 0.8, "source": 0.5}],
        [{"alpha": 0.0, "acc": 0.4, "source": 0.7}, {"alpha": 1.0, "acc": 0.6, "source": 0.3}],
    ]
    alphas, acc, source = wise_ft_mean_curve(curves)
    assert alphas.tolist() == [0.0, 1.0]
    assert acc.tolist() == pytest.approx([0.3, 0.7]) and source.tolist() == pytest.approx(
        [0.8, 0.4]
    )
