"""Fine-tuning regimes (lab.finetune), augmentation (lab.augment) and ResNet-18."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import FAST, compose_config
from test_resume import interrupt_before_task

from lab import finetune as ft
from lab.augment import Augment
from lab.config import validate
from lab.engine import TrainSettings, train_task
from lab.errors import ConfigError
from lab.experiment import build, run_experiment, seed_everything
from lab.models import SOURCE, build_model
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import STRATEGIES, Strategy
from lab.strategies.base import penalised_parameters
from lab.strategies.ewc import EWC, fisher_diagonal
from lab.strategies.prompting import PROMPT_LEARNERS

CPU = torch.device("cpu")
# pre-train on digits 0-4, then a task-IL stream over 5-9: the finetune_modes setting, small
PRETRAINED = [
    "pretrain=source",
    "pretrain.classes=[0,1,2,3,4]",
    "pretrain.epochs=5",
    "benchmark.class_order=[5,6,7,8,9]",
    "benchmark.num_tasks=2",
    "scenario=task",
]


def mlp(head_sizes=(2, 2)):
    torch.manual_seed(0)
    return build_model("mlp", (1, 8, 8), list(head_sizes), hidden_sizes=[20, 10])


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_one_task(model, settings: ft.Finetune, epochs=2, stream_config=None):
    """The first task of a digits stream with SGD, momentum and weight decay."""
    stream, _, _ = build(stream_config, CPU)
    task = stream.tasks[0]
    optimizer = make_optimizer(
        ft.param_groups(model, settings, 0.1),
        OptimizerSettings("sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
    )
    train_task(
        model,
        Strategy(),
        task,
        [task],
        optimizer,
        TrainSettings(epochs=epochs, batch_size=32),
        torch.Generator().manual_seed(0),
        "task",
        finetune=settings,
    )


@pytest.mark.parametrize(
    "settings, frozen_prefixes",
    [
        (ft.Finetune(mode="freeze", freeze=1), ["backbone.layers.1."]),
        (ft.Finetune(mode="freeze", freeze=["backbone.layers.3"]), ["backbone.layers.3."]),
        (ft.Finetune(mode="linear_probe"), ["backbone."]),
        (
            ft.Finetune(mode="lora"),
            ["backbone.layers.1.base_layer.", "backbone.layers.3.base_layer."],
        ),
    ],
)
def test_frozen_parameters_stay_bit_identical(fast_config, settings, frozen_prefixes):
    """With momentum and weight decay on: frozen means untouched, not merely small steps."""
    model = mlp((10,))  # one shared head: every parameter that may move does
    ft.apply(model, settings)
    before = snapshot(model)
    train_one_task(model, settings, stream_config=fast_config())
    after = snapshot(model)
    for name in before:
        frozen = name.startswith(tuple(frozen_prefixes))
        assert torch.equal(before[name], after[name]) == frozen, name
        assert dict(model.named_parameters())[name].requires_grad != frozen, name


@pytest.mark.parametrize("rank", [1, 4])
def test_lora_trains_rank_times_in_plus_out_per_layer(rank):
    model = mlp()
    ft.apply(
        model,
        ft.Finetune(mode="lora", lora={"rank": rank, "alpha": 8, "dropout": 0.0, "targets": None}),
    )
    backbone = sum(p.numel() for n, p in model.backbone.named_parameters() if p.requires_grad)
    assert backbone == rank * (64 + 20) + rank * (20 + 10)  # A: r x in, B: out x r
    heads = sum(p.numel() for p in model.heads.parameters() if p.requires_grad)
    assert heads == 2 * (10 * 2 + 2)
    frozen = sum(p.numel() for p in model.backbone.parameters() if not p.requires_grad)
    assert frozen == 64 * 20 + 20 + 20 * 10 + 10  # the base weights, all of them


def test_lora_starts_as_the_same_function_and_targets_are_checked():
    model, x = mlp(), torch.randn(5, 1, 8, 8)
    reference = model(x, 0).detach()
    ft.apply(
        model,
        ft.Finetune(
            mode="lora", lora={"rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["layers.3"]}
        ),
    )
    torch.testing.assert_close(model(x, 0), reference)  # B starts at 0
    assert [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n] == [
        "backbone.layers.3.lora_A.default.weight",
        "backbone.layers.3.lora_B.default.weight",
    ]
    with pytest.raises(
        ConfigError, match=r"finetune.lora.targets has 'layers.9'.*valid: layers.1, layers.3"
    ):
        ft.apply(
            mlp(),
            ft.Finetune(
                mode="lora", lora={"rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["layers.9"]}
            ),
        )


def test_layer_wise_learning_rates():
    model = mlp()
    settings = ft.Finetune(head_lr_scale=10.0, backbone_lr_scale=0.5, layer_decay=0.1)
    groups = ft.param_groups(model, settings, lr=0.2)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model.heads[0].weight)] == pytest.approx(2.0)
    assert lr_of[id(model.backbone.layers[3].weight)] == pytest.approx(0.2 * 0.5)  # top group
    assert lr_of[id(model.backbone.layers[1].bias)] == pytest.approx(0.2 * 0.5 * 0.1)
    assert len(lr_of) == len(list(model.parameters()))  # every parameter exactly once
    optimizer = make_optimizer(groups, OptimizerSettings("sgd", lr=0.2))
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.01, 0.1, 2.0])


def test_progressive_unfreezing_opens_one_group_from_the_top_per_n_epochs(fast_config):
    config = fast_config("scenario=task")
    settings = ft.Finetune(unfreeze_every=2)
    # 2 epochs with N=2: only the heads ever train, then everything is trainable again
    model = mlp()
    before = snapshot(model)
    train_one_task(model, settings, epochs=2, stream_config=config)
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("backbone."))
    assert not torch.equal(before["heads.0.weight"], after["heads.0.weight"])
    assert all(p.requires_grad for p in model.parameters())
    # 3 epochs with N=1: epoch 1 opens the top group, epoch 2 the bottom one
    model = mlp()
    opened = []
    original = ft.unfreeze

    def spy(model_, settings_, epoch):
        original(model_, settings_, epoch)
        opened.append([p.requires_grad for p in model_.backbone.parameters()])

    ft.unfreeze = spy
    try:
        train_one_task(model, ft.Finetune(unfreeze_every=1), epochs=3, stream_config=config)
    finally:
        ft.unfreeze = original
    # backbone parameters: layer 1 (weight, bias), layer 3 (weight, bias)
    assert opened == [[False] * 4, [False, False, True, True], [True] * 4, [True] * 4]


def test_regularisers_act_on_what_trains():
    model = mlp((10,))
    ft.apply(
        model,
        ft.Finetune(mode="lora", lora={"rank": 2, "alpha": 4, "dropout": 0.0, "targets": None}),
    )
    names = set(penalised_parameters(model))
    assert names == {n for n, p in model.named_parameters() if "lora_" in n} | {
        "heads.0.weight",
        "heads.0.bias",
    }
    linear_probe = mlp((10,))
    ft.apply(linear_probe, ft.Finetune(mode="linear_probe"))
    assert set(penalised_parameters(linear_probe)) == {"heads.0.weight", "heads.0.bias"}


REGIMES = {
    "full": [],
    "freeze": ["finetune.mode=freeze"],
    "linear_probe": ["finetune.mode=linear_probe"],
    "lora": ["finetune.mode=lora"],
    "progressive": ["finetune.unfreeze_every=1", "finetune.layer_decay=0.5", "train.epochs=3"],
}


@pytest.fixture(scope="module")
def naive_in(tmp_path_factory):
    """Naive fine-tuning from the same pre-trained start, in a regime (run once each)."""
    runs = {}

    def run(mode: str) -> dict:
        if mode not in runs:
            config = validate(compose_config([*FAST, *PRETRAINED, *REGIMES[mode]]))
            runs[mode] = run_experiment(config, tmp_path_factory.mktemp(f"naive-{mode}"))
        return runs[mode]

    return run


# (but the learners made for class-IL alone, the prompt learners needing a timm ViT too:
# tests/test_ptm_*.py run them after a source)
TASK_IL = {name for name, cls in STRATEGIES.items() if "task" in cls.scenarios}


@pytest.mark.parametrize("strategy", sorted(TASK_IL - set(PROMPT_LEARNERS)))
def test_every_strategy_runs_after_a_source_with_unfreezing_and_augmentation(
    fast_config, tmp_path, strategy
):
    """The source counts as a task before the stream (a strategy's after_task sees it
    without having watched it train: SI once failed there), the backbone unfreezes
    progressively, every batch is augmented."""
    config = fast_config(
        *PRETRAINED,
        "finetune.unfreeze_every=1",
        "train.augment.noise_std=0.1",
        "train.epochs=2",
        f"strategy={strategy}",
    )
    results = run_experiment(config, tmp_path)
    assert results["status"] == "complete" and results["diverged"] == []
    assert len(results["acc_matrix"]) == 2 and len(results["pretrain"]["acc"]) == 2
    assert results["metrics"]["acc"] > 0.8  # task-IL on digits 5-9


@pytest.mark.parametrize(
    "mode, strategy",
    [(mode, s) for mode in REGIMES for s in ("ewc", "lwf", "l2")] + [("full", "joint")],
)
def test_the_source_is_an_earlier_task_in_every_regime(
    fast_config, tmp_path, naive_in, mode, strategy
):
    """Task 0 is the stream's first task, but not the model's: EWC and L2 anchor the
    source, LwF distils its head, joint trains on it too, so each already acts in task 0,
    where without a source each trains exactly as naive does (test_strategies)."""
    if strategy == "joint" and mode != "full":
        pytest.skip("joint is an upper bound, compared in full fine-tuning only")
    results = run_experiment(
        fast_config(*PRETRAINED, *REGIMES[mode], f"strategy={strategy}"), tmp_path
    )
    naive = naive_in(mode)
    assert results["status"] == "complete" and len(results["acc_matrix"]) == 2
    source = results["pretrain"]
    assert source["init_acc"] == naive["pretrain"]["init_acc"] > 0.9  # the same start
    if mode == "linear_probe":
        # the backbone and the source head are frozen: nothing that an anchor or the
        # source's head distillation reaches can move, so the run learns what naive does
        assert results["acc_matrix"] == naive["acc_matrix"]
        assert source["acc"] == [source["init_acc"]] * 2
    else:
        assert results["train_loss"][0] != naive["train_loss"][0]


def test_ewc_anchors_the_pretrained_weights_with_the_source_fisher(
    fast_config, tmp_path, monkeypatch
):
    config = fast_config(*PRETRAINED, "strategy=ewc")
    anchors, add = [], EWC.add
    monkeypatch.setattr(EWC, "add", lambda self, *pair: (anchors.append(pair), add(self, *pair)))
    run_experiment(config, tmp_path)
    assert len(anchors) == 3  # the source's, then the stream's two tasks'
    weights, fisher = anchors[0]
    pretrained = torch.load(tmp_path / "pretrained.pt", weights_only=True)
    assert set(weights) == {n for n in pretrained if n.startswith("backbone.")}  # task-IL
    for name in weights:
        assert torch.equal(weights[name], pretrained[name])
    # the source's empirical Fisher at the pre-trained weights, computed here
    seed_everything(0)
    stream, model, _ = build(config, CPU)
    model.load_state_dict(pretrained)
    source = stream.source
    expected = fisher_diagonal(model, source.train_x, source.train_y, SOURCE, list(weights))
    for name in weights:
        torch.testing.assert_close(fisher[name], expected[name])


def test_the_sources_column_and_metrics_by_hand(fast_config, tmp_path):
    config = fast_config(*PRETRAINED, "benchmark.num_tasks=3", "keep_checkpoint=true")
    results = run_experiment(config, tmp_path)
    seed_everything(0)
    stream, model, _ = build(config, CPU)
    source = stream.source

    def accuracy(state: dict) -> float:
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            predictions = model(source.test_x[:], SOURCE).argmax(1)
        return (predictions == source.test_y).sum().item() / len(source.test_y)

    init = accuracy(torch.load(tmp_path / "pretrained.pt", weights_only=True))
    final = accuracy(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    recorded = results["pretrain"]
    assert recorded["init_acc"] == init and recorded["acc"][-1] == final
    accs = recorded["acc"]
    assert recorded["metrics"]["acc"] == accs[-1]
    assert recorded["metrics"]["bwt"] == pytest.approx(accs[-1] - init)
    assert recorded["metrics"]["forgetting"] == pytest.approx(max(init, *accs[:-1]) - accs[-1])


def test_lora_run_resumes_to_the_same_matrix(fast_config, tmp_path, monkeypatch):
    config = fast_config(*PRETRAINED, "finetune.mode=lora", "benchmark.num_tasks=3")
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["pretrain"] == whole["pretrain"]


def test_augmentation_by_hand():
    n = 450
    x = 1 + torch.arange(n * 9, dtype=torch.float32).reshape(n, 1, 3, 3)  # no two alike
    crops = Augment(crop_padding=1)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    offsets = Counter()
    for i in range(n):  # each crop is one of the 9 windows of its padded image ...
        (offset,) = [
            (r, c)
            for r in range(3)
            for c in range(3)
            if torch.equal(crops[i], padded[i, :, r : r + 3, c : c + 3])
        ]
        offsets[offset] += 1
    assert len(offsets) == 9  # ... drawn uniformly: 50 expected each
    assert all(25 <= count <= 75 for count in offsets.values()), offsets
    flipped = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(n)]
    assert all(m or torch.equal(flipped[i], x[i]) for i, m in enumerate(mirrored))
    assert 0.4 * n <= sum(mirrored) <= 0.6 * n  # each image with probability 1/2
    big = torch.zeros(4000, 1, 4, 4)
    noisy = Augment(noise_std=0.5)(big, torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(0.5, rel=0.02)
    again = Augment(crop_padding=1, flip=True, noise_std=0.5)
    torch.testing.assert_close(
        again(x, torch.Generator().manual_seed(3)), again(x, torch.Generator().manual_seed(3))
    )


AUGMENTED = [
    "benchmark=split_fmnist",
    "benchmark.num_tasks=2",
    "train.epochs=1",
    "train.iterations=20",
]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    config = validate(compose_config([*FAST, *AUGMENTED]))
    return run_experiment(config, tmp_path_factory.mktemp("plain"))


@pytest.mark.parametrize(
    "augment",
    [
        ["train.augment.crop_padding=2"],
        ["train.augment.flip=true"],
        ["train.augment.noise_std=0.1"],
    ],
)
def test_each_augmentation_changes_training(fast_config, tmp_path, plain_run, augment):
    augmented = run_experiment(fast_config(*AUGMENTED, *augment), tmp_path)
    assert augmented["train_loss"] != plain_run["train_loss"]


def test_augmented_runs_are_reproducible(fast_config, tmp_path):
    config = fast_config(
        *AUGMENTED,
        "train.augment.crop_padding=2",
        "train.augment.flip=true",
        "train.augment.noise_std=0.1",
    )
    first = run_experiment(config, tmp_path / "a")
    second = run_experiment(config, tmp_path / "b")
    assert first["train_loss"] == second["train_loss"]
    assert first["acc_matrix"] == second["acc_matrix"]


def test_bad_regime_values_are_one_line(fast_config, tmp_path):
    with pytest.raises(
        ConfigError, match=r"train.augment.flip=True is invalid; valid: false for digits"
    ):
        fast_config("train.augment.flip=true")
    with pytest.raises(
        ConfigError,
        match=r"finetune.mode='half' is invalid; valid: full, freeze, linear_probe, lora",
    ):
        fast_config("finetune.mode=half")
    with pytest.raises(ConfigError, match=r"pretrain and finetune run on the lab engine"):
        fast_config("engine=avalanche", "finetune.mode=lora")
    with pytest.raises(
        ConfigError, match=r"model.weights='imagenet' is invalid; valid: IMAGENET1K_V1"
    ):
        fast_config("model=resnet18", "model.weights=imagenet")
    with pytest.raises(ConfigError, match=r"pretrain.path='\?\?\?' is invalid"):
        fast_config("pretrain=file")
    with pytest.raises(ConfigError, match=r"finetune.freeze=5 is invalid; valid: 0..2"):
        run_experiment(fast_config("finetune.mode=freeze", "finetune.freeze=5"), tmp_path)


def test_resnet18_for_small_inputs():
    model = build_model("resnet18", (1, 28, 28), [10])
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    names = [n for n, _ in ft.layer_groups(model)]
    assert names == [f"backbone.layers.{i}" for i in range(5)]  # stem, 4 stages
    ft.apply(model, ft.Finetune(mode="freeze", freeze=1))
    assert not any(p.requires_grad for p in model.backbone.layers[0].parameters())
    assert all(p.requires_grad for p in model.backbone.layers[4].parameters())


def test_pretrained_weights_reload_to_the_same_start(fast_config, tmp_path):
    source_run = run_experiment(fast_config(*PRETRAINED), tmp_path / "source")
    loaded = fast_config(
        *[o for o in PRETRAINED if not o.startswith("pretrain")],
        "pretrain=file",
        f"pretrain.path={tmp_path / 'source' / 'pretrained.pt'}",
        "pretrain.dataset=digits",
        "pretrain.classes=[0,1,2,3,4]",
    )
    reloaded = run_experiment(loaded, tmp_path / "file")
    assert reloaded["pretrain"]["init_acc"] == source_run["pretrain"]["init_acc"]
    header = (tmp_path / "file" / "acc_matrix.csv").read_text().splitlines()[0]
    assert header == "after_task,task_0,task_1,pretrain"
    saved = json.loads((tmp_path / "file" / "results.json").read_text())
    assert saved["pretrain"]["description"] == "digits classes 0,1,2,3,4"


def test_a_lab_checkpoint_is_a_pretrained_start(fast_config, tmp_path):
    """checkpoint.pt loads weights-only: its model starts the next run where it ended."""
    first = run_experiment(fast_config("keep_checkpoint=true"), tmp_path / "first")
    path = tmp_path / "first" / "checkpoint.pt"
    second = run_experiment(fast_config("pretrain=file", f"pretrain.path={path}"), tmp_path / "b")
    assert second["init_acc"] == first["acc_matrix"][-1]
