"""Parity of SLCA (lab.strategies.slca) with its reference code, on the same weights and data.

    python scripts/parity_ptm_slca.py --mammoth ~/src/mammoth --pilot ~/src/LAMDA-PILOT \\
        --mammoth-python ~/envs/mammoth/bin/python --pilot-python ~/envs/pilot/bin/python

References (roots default to $MAMMOTH_ROOT and $PILOT_ROOT; their Pythons to
$MAMMOTH_PYTHON and $PILOT_PYTHON):
- LAMDA-PILOT, https://github.com/sun-hailong/LAMDA-PILOT at commit
  264745534fc2233f5a50b020e50a3472c47eb756: models/slca.py (its Learner, run as it is:
  incremental_train, _stage1_training, _compute_class_mean, _stage2_compact_classifier,
  after_task), under timm 0.6.13 (PILOT pins 0.6.12, which does not import on Python 3.11).
- Mammoth, https://github.com/aimagelab/mammoth at commit
  e75a491c69fd729edeb01431afb753d9157d9a81: models/slca_utils/slca.py (SLCA_Model:
  get_optimizer, my_compute_class_means, _stage2_compact_classifier) and its head
  (models/slca_utils/inc_net.py, convs/linears.py), under timm 0.9.8 as Mammoth pins.
  Mammoth's models/__init__.py imports every model (kornia, ...) and its datasets package
  every dataset (open_clip, ...): the script imports models/slca_utils/ under a bare
  `models` package instead, and gives _stage2_compact_classifier the one thing it asks of
  get_dataset (the classes per task). models/slca.py itself cannot be imported so; its
  loss line (models/slca.py:91, CE on logits[:, offset_1:offset_2]) is stated here once.

Each reference's environment is the lab's own torch with the reference's timm and nothing
else: `--make-envs DIR` makes both (DIR/mammoth, DIR/pilot; pip needs the internet once):

    python -m venv DIR/X && DIR/X/bin/pip install --no-deps timm==V \\
        && echo SITE_PACKAGES_OF_THIS_PYTHON > DIR/X/lib/pythonM.N/site-packages/zz_lab.pth

The backbone is timm's test_vit at 32 px (embed 64, 6 blocks), pre-trained here by the lab
on digits 0-4 for 3 epochs (pretrain=source); both references build the same
VisionTransformer in their timm and load its weights. The stream is Split Fashion-MNIST,
5 tasks of 2 classes, class-IL, with 600 training images per class
(data.validation_fraction=0.9 holds the rest out) and 500 test images per task; 30 SGD
steps of 64 per task (lr 0.01, momentum 0.9, weight decay 5e-4, the reference's), SLCA's
defaults otherwise (5 alignment epochs of 256 samples per class). The references get the
lab's batches in the lab's order, its initial head, and the standard-normal draws and
permutations of its alignment, all through files; so the checks can be tight:

- the backbone's and the head's learning rates in each side's optimizer;
- the step-0 loss on the first batch (1e-5);
- the class statistics of task 0 from the same backbone and images (max |diff|, 1e-5);
- one alignment epoch from the same head, statistics and draws: its first-step loss and
  the head after it (1e-5);
- ACC after the whole short run (PILOT, run as it is; within 1 point).

Prints a markdown table and the references' known deviations (file:line); exits 1 if a
check fails. A few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
REPOS = {
    "mammoth": ("https://github.com/aimagelab/mammoth", "e75a491c69fd729edeb01431afb753d9157d9a81"),
    "pilot": (
        "https://github.com/sun-hailong/LAMDA-PILOT",
        "264745534fc2233f5a50b020e50a3472c47eb756",
    ),
}
TIMM = {"mammoth": "0.9.8", "pilot": "0.6.13"}
VIT = dict(img_size=32, patch_size=16, embed_dim=64, depth=6, num_heads=2, mlp_ratio=3)
TASKS, CLASSES_PER_TASK, STEPS, BATCH = 5, 2, 30, 64
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4

DEVIATIONS = [
    "Mammoth models/slca.py:93-100 takes no optimizer step at a task's first iteration "
    "(task_iteration 0): the first step of every task applies the sum of two batches' "
    "gradients. PILOT (models/slca.py:103-105) and the lab step on every batch.",
    "Mammoth models/slca_utils/inc_net.py:31 replaces the pre-trained ViT's final LayerNorm "
    "with a freshly initialised one (`model.norm = nn.LayerNorm(...)`); PILOT and the lab "
    "keep the model's own. (Here both references get the lab's backbone as it is.)",
    "PILOT exps/slca.json: milestones [18] of 20 epochs (models/slca.py:152, MultiStepLR): "
    "the last 2 epochs at lr/10; the lab has no schedule. Mammoth's milestone '40' "
    "(models/slca.py:39, a string after models/slca.py:53's split) never fires.",
    "ca_epochs: Mammoth 5 (models/slca.py:37), PILOT 3 (exps/slca.json); the lab's default is "
    "Mammoth's.",
    "PILOT models/slca.py:186 finds a class's task as c_id // task_size with the current "
    "task's size: wrong for tasks of unequal sizes; Mammoth (slca_utils/slca.py:116-117) "
    "and the lab use each class's own task. (Equal tasks here.)",
    "Both references draw the alignment's samples and shuffle from the global RNG "
    "(MultivariateNormal.sample, torch.randperm: PILOT models/slca.py:193,203; Mammoth "
    "slca_utils/slca.py:124,134); the lab from the strategy's generator. This script "
    "feeds the lab's draws to the references.",
    "Class covariance: PILOT in float64 (models/slca.py:269), Mammoth in float32 "
    "(slca_utils/slca.py:83); the lab in float64. Mammoth's my_compute_class_means stops "
    "after 5 samples per class under --debug_mode (slca_utils/slca.py:74), and its "
    "alignment after 5 steps (slca_utils/slca.py:139).",
    "PILOT runs under timm 0.6.13, not its pinned 0.6.12 (which fails to import on Python "
    "3.11); its VisionTransformer computes attention without fused kernels (about 1e-7 from "
    "the lab's timm).",
]


# ---------------------------------------------------------------- the references' side


class Recorded:
    """A data set as the references' data managers hand it out: tensors already made."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batches=None):
        self.x, self.y, self.batches = x, y, batches


def _loader(dataset, batch_size=64, shuffle=False, num_workers=0, **_):
    """The references' DataLoader: the lab's batches in the lab's order for training,
    the rest in order, as (index, inputs, targets) as PILOT reads them."""
    if dataset.batches is not None:
        return [(None, x, y) for x, y in dataset.batches]
    return [
        (None, dataset.x[i : i + batch_size], dataset.y[i : i + batch_size])
        for i in range(0, len(dataset.y), batch_size)
    ]


class FedDraws:
    """The lab's standard-normal draws and permutations, handed to the reference in turn
    where it asks the global RNG (torch.distributions' _standard_normal, torch.randperm)."""

    def __init__(self, normals: list[torch.Tensor], permutations: list[torch.Tensor]):
        self.normals, self.permutations = list(normals), list(permutations)

    def __enter__(self):
        import torch.distributions.multivariate_normal as mvn

        self.mvn, self.saved = mvn, (mvn._standard_normal, torch.randperm)

        def normal(shape, dtype, device):
            z = self.normals.pop(0)
            assert tuple(z.shape) == tuple(shape), (z.shape, shape)
            return z.to(dtype=dtype, device=device)

        def randperm(n, *args, **kwargs):
            p = self.permutations.pop(0)
            assert len(p) == n
            return p

        mvn._standard_normal, torch.randperm = normal, randperm
        return self

    def __exit__(self, *exc):
        self.mvn._standard_normal, torch.randperm = self.saved
        assert exc[0] is not None or not (self.normals or self.permutations), "draws left"


class RecordingF(types.ModuleType):
    """torch.nn.functional with cross_entropy's values recorded (the references' losses)."""

    def __init__(self):
        super().__init__("F")
        self.losses: list[float] = []

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def cross_entropy(self, *args, **kwargs):
        loss = torch.nn.functional.cross_entropy(*args, **kwargs)
        self.losses.append(loss.item())
        return loss


def _vit(timm_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(**VIT, num_classes=0)
    vit.load_state_dict(timm_state)
    vit.out_dim = VIT["embed_dim"]
    return vit


def _load_head(fc, weight: torch.Tensor, bias: torch.Tensor, sizes: list[int]) -> None:
    """The lab's head rows into the reference's per-task heads (SimpleContinualLinear)."""
    start = 0
    with torch.no_grad():
        for head, size in zip(fc.heads, sizes, strict=True):
            linear = head[-1]
            linear.weight.copy_(weight[start : start + size])
            linear.bias.copy_(bias[start : start + size])
            start += size


def _fc_rows(fc) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.cat([h[-1].weight.detach() for h in fc.heads]),
        torch.cat([h[-1].bias.detach() for h in fc.heads]),
    )


def _statistics_diff(means, covs, lab) -> float:
    return max(
        max(
            (means[c].double() - lab["means"][c].double()).abs().max().item() for c in lab["means"]
        ),
        max((covs[c].double() - lab["covs"][c].double()).abs().max().item() for c in lab["means"]),
    )


def run_pilot(root: Path, data: dict) -> dict:
    sys.path.insert(0, str(root))
    import models.slca as pilot
    import numpy as np
    import utils.inc_net as inc_net

    out: dict = {}
    recording = RecordingF()
    pilot.F = recording
    pilot.DataLoader = _loader
    inc_net.get_backbone = lambda args, pretrained=False: _vit(data["backbone"])
    args = {
        "memory_size": 0,
        "memory_per_class": 0,
        "fixed_memory": False,
        "device": ["cpu"],
        "batch_size": BATCH,
        "epochs": 1,
        "lrate": LR,
        "lrate_decay": 0.1,
        "weight_decay": WEIGHT_DECAY,
        "milestones": [18],
        "ca_epochs": data["ca_epochs"],
        "ca_with_logit_norm": 0.1,
        "seed": 0,
        "backbone_type": "vit_base_patch16_224",
        "model_name": "slca",
    }
    tasks = data["tasks"]

    class Manager:  # PILOT's DataManager, over the lab's tensors
        dataset_name = "fmnist"

        def get_task_size(self, t):
            return CLASSES_PER_TASK

        def get_dataset(self, indices, source, mode, appendent=None, ret_data=False):
            indices = [int(i) for i in indices]
            t = indices[0] // CLASSES_PER_TASK
            if source == "train" and mode == "train":
                return Recorded(None, None, tasks[t]["batches"])
            if source == "test":
                x = torch.cat([task["test_x"] for task in tasks[: t + 1]])
                y = torch.cat([task["test_y"] for task in tasks[: t + 1]])
            else:
                keep = torch.isin(tasks[t]["train_y"], torch.tensor(indices))
                x, y = tasks[t]["train_x"][keep], tasks[t]["train_y"][keep]
            return (x, y, Recorded(x, y)) if ret_data else Recorded(x, y)

    # 1. the whole short run, as PILOT's trainer drives its Learner
    learner = pilot.Learner(args)
    update_fc = learner._network.update_fc

    def update_from_the_labs_init(nb_classes, freeze_old=True):
        update_fc(nb_classes, freeze_old)
        new = learner._network.fc.heads[-1:]  # the new task's head alone
        start = (len(learner._network.fc.heads) - 1) * CLASSES_PER_TASK
        rows = slice(start, start + nb_classes)
        _load_head(types.SimpleNamespace(heads=new), *(t[rows] for t in data["head"]), [nb_classes])

    learner._network.update_fc = update_from_the_labs_init
    stage2 = learner._stage2_compact_classifier
    draws = iter(data["alignment_draws"])

    def fed_stage2(task_size):
        normals, permutations = next(draws)
        with FedDraws(normals, permutations):
            stage2(task_size)

    learner._stage2_compact_classifier = fed_stage2
    manager, accuracies = Manager(), []
    for t in range(TASKS):
        recording.losses.clear()
        learner.incremental_train(manager)
        if t == 0:
            out["step0_loss"] = recording.losses[0]
            out["lr_backbone"], out["lr_head"] = learner_optimizer_rates(learner)
        learner._network.eval()
        with torch.no_grad():
            accuracies = [
                (learner._network(task["test_x"])["logits"].argmax(1) == task["test_y"])
                .double()
                .mean()
                .item()
                for task in tasks[: t + 1]
            ]
        learner.after_task()
    out["final_row"] = accuracies

    # 2. the class statistics of task 0 from the lab's backbone after task 0
    learner = pilot.Learner(args)
    learner._network.backbone.load_state_dict(data["statistics_task0"]["backbone"])
    learner._network.update_fc(CLASSES_PER_TASK)
    learner._cur_task, learner._known_classes, learner._total_classes = 0, 0, CLASSES_PER_TASK
    learner._compute_class_mean(manager)
    out["statistics_diff"] = _statistics_diff(
        {c: torch.tensor(learner._class_means_slca[c]) for c in range(2)},
        {c: learner._class_covs_slca[c] for c in range(2)},
        data["statistics_task0"],
    )

    # 3. one alignment epoch from the lab's head, statistics and draws (after task 1)
    one = data["one_epoch"]
    learner = pilot.Learner({**args, "ca_epochs": 1})
    learner._network.update_fc(CLASSES_PER_TASK)
    learner._network.update_fc(CLASSES_PER_TASK)
    _load_head(learner._network.fc, one["weight"], one["bias"], [2, 2])
    learner._cur_task, learner._total_classes = 1, 4
    learner.task_sizes = [2, 2]
    learner._class_means_slca = np.stack([one["means"][c].double().numpy() for c in range(4)])
    learner._class_covs_slca = torch.stack([one["covs"][c] for c in range(4)])
    learner.test_loader = _loader(Recorded(tasks[0]["test_x"][:8], tasks[0]["test_y"][:8]))
    recording.losses.clear()
    with FedDraws(*one["draws"]):
        learner._stage2_compact_classifier(CLASSES_PER_TASK)
    out["ca_first_loss"] = recording.losses[0]
    out["ca_head"] = _fc_rows(learner._network.fc)
    return out


def learner_optimizer_rates(learner) -> tuple[float, float]:
    """The backbone's and the head's lr of PILOT's stage-1 optimizer, rebuilt by its own
    _stage1_training (its loop run over no batch)."""
    captured = {}
    run = learner._run
    learner._run = lambda loader, test, optimizer, scheduler: captured.setdefault("o", optimizer)
    learner._stage1_training([], [])
    learner._run = run
    backbone, head = captured["o"].param_groups
    return backbone["lr"], head["lr"]


def run_mammoth(root: Path, data: dict) -> dict:
    sys.path.insert(0, str(root))
    for name in ("models", "datasets"):  # bare packages: see the module's docstring
        package = types.ModuleType(name)
        package.__path__ = [str(root / name)]
        sys.modules[name] = package
    sys.modules["datasets"].get_dataset = None
    import models.slca_utils.inc_net as inc_net
    import models.slca_utils.slca as mammoth

    class Convnet(torch.nn.Module):  # Mammoth's backbone interface over timm's ViT
        def __init__(self):
            super().__init__()
            self.vit = _vit(data["backbone0"])
            self.out_dim = self.feature_dim = VIT["embed_dim"]

        def forward(self, x, returnt="features"):
            return self.vit(x)

    inc_net.get_convnet = lambda name, pretrained=False: Convnet()
    mammoth.get_dataset = lambda args: types.SimpleNamespace(
        N_CLASSES_PER_TASK=CLASSES_PER_TASK, N_TASKS=TASKS
    )
    recording = RecordingF()
    mammoth.F = recording
    args = types.SimpleNamespace(
        memory_size=0,
        memory_per_class=0,
        fixed_memory=False,
        feature_extractor_type="vit-b-p16",
        ca_epochs=1,
        ca_with_logit_norm=0.1,
        milestones=["40"],
        lr_decay=0.1,
        lr=LR,
        optim_wd=WEIGHT_DECAY,
        debug_mode=False,
    )
    out: dict = {}
    model = mammoth.SLCA_Model("cpu", args)
    model._network.update_fc(CLASSES_PER_TASK)
    _load_head(model._network.fc, data["head"][0][:2], data["head"][1][:2], [2])
    optimizer, _ = model.get_optimizer()
    out["lr_backbone"], out["lr_head"] = (g["lr"] for g in optimizer.param_groups)
    first = data["tasks"][0]
    x, y = first["batches"][0]
    model._network.train()
    logits = model._network(x, bcb_no_grad=model.fix_bcb)["logits"]
    out["step0_loss"] = torch.nn.functional.cross_entropy(logits[:, 0:2], y - 0).item()

    model = mammoth.SLCA_Model("cpu", args)  # statistics from the backbone after task 0
    model._network.convnet.vit.load_state_dict(data["statistics_task0"]["backbone"])
    model._network.update_fc(CLASSES_PER_TASK)
    loader = [
        (first["train_x"][i : i + 256], first["train_y"][i : i + 256])
        for i in range(0, len(first["train_y"]), 256)
    ]
    means, covs = model.my_compute_class_means(loader, 0, 2)
    out["statistics_diff"] = _statistics_diff(means, covs, data["statistics_task0"])

    one = data["one_epoch"]
    model._network.update_fc(CLASSES_PER_TASK)
    _load_head(model._network.fc, one["weight"], one["bias"], [2, 2])
    model._cur_task = 1
    dim = VIT["embed_dim"]
    class_means, class_covs = torch.zeros(10, dim), torch.zeros(10, dim, dim)
    for c in range(4):
        class_means[c], class_covs[c] = one["means"][c], one["covs"][c]
    with FedDraws(*one["draws"]):
        model._stage2_compact_classifier(class_means, class_covs, 2, 4)
    out["ca_first_loss"] = recording.losses[0]
    out["ca_head"] = _fc_rows(model._network.fc)
    return out


# ---------------------------------------------------------------------- the lab's side


def replay_draws(state: torch.Tensor, classes: int, n: int, dim: int, epochs: int):
    """The standard-normal draws and permutations SLCA.align takes from its generator in
    `state`, in its order: per epoch, n x dim per class, then one permutation."""
    generator = torch.Generator().set_state(state)
    normals, permutations = [], []
    for _ in range(epochs):
        normals += [torch.randn(n, dim, generator=generator) for _ in range(classes)]
        permutations.append(torch.randperm(classes * n, generator=generator))
    return normals, permutations


def run_lab(work: Path, seed: int) -> tuple[dict, dict]:
    """The lab's run, watched: what the references are given, and what the lab measured."""
    sys.path.insert(0, str(HERE.parent.parent))
    from hydra import compose, initialize_config_dir

    import lab.strategies.slca as slca_module
    from lab.config import validate
    from lab.experiment import run_experiment
    from lab.run import config_dir
    from lab.strategies.slca import SLCA

    for old in ("pretrain", "lab"):  # a run dir that holds a complete run is not run again
        shutil.rmtree(work / old, ignore_errors=True)

    def config(overrides):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return validate(compose(config_name="config", overrides=overrides))

    vit = ["model=timm", "model.arch=test_vit", "model.input_size=32", "logger=none"]
    source = [*vit, "benchmark=split_digits", "benchmark.num_tasks=2", "train.iterations=1"]
    source += ["pretrain=source", "pretrain.dataset=digits", "pretrain.classes=[0,1,2,3,4]"]
    source += ["pretrain.epochs=3", "pretrain.batch_size=32", f"seed={seed}"]
    run_experiment(config(source), work / "pretrain")
    weights = work / "pretrain" / "pretrained.safetensors"

    given: dict = {"tasks": [], "alignment_draws": []}
    lab: dict = {"step0_loss": None}
    original = {k: getattr(SLCA, k) for k in ("attach", "before_task", "after_task", "align")}
    original["loss"], original["rehearse"] = SLCA.loss, SLCA.rehearse

    def attach(self, model, stream):
        original["attach"](self, model, stream)
        head = model.heads[0]
        given["head"] = (head.weight.detach().clone(), head.bias.detach().clone())
        given["backbone0"] = {k: v.clone() for k, v in model.backbone.model.state_dict().items()}
        given["backbone"] = given["backbone0"]

    def before_task(self, model, task, seen):
        original["before_task"](self, model, task, seen)
        assert list(task.outputs) == [2 * task.id, 2 * task.id + 1]  # the references' layout
        given["tasks"].append(
            {
                "batches": [],
                "train_x": task.train_x[:].cpu(),
                "train_y": task.train_y.cpu(),
                "test_x": task.test_x[:].cpu(),
                "test_y": task.test_y.cpu(),
            }
        )

    def rehearse(self, batch):
        given["tasks"][-1]["batches"].append((batch.x.detach().cpu(), batch.y.cpu()))
        return batch

    def loss(self, model, batch, features, logits, ce):
        value = original["loss"](self, model, batch, features, logits, ce)
        if lab["step0_loss"] is None:
            lab["step0_loss"] = value.item()
        return value

    def after_task(self, model, task, seen):
        if task.id == 1:  # the alignment's inputs, for one epoch on both sides
            lab["one_epoch"] = {"generator": self.generator.get_state()}
        original["after_task"](self, model, task, seen)
        if task.id == 0:
            given["statistics_task0"] = {
                "backbone": {k: v.clone() for k, v in model.backbone.model.state_dict().items()},
                "means": {c: self.means[c] for c in (0, 1)},
                "covs": {c: self.covariances[c] for c in (0, 1)},
            }
        if task.id == 1:
            lab["one_epoch"].update(
                weight=self.unaligned["weight"],
                bias=self.unaligned["bias"],
                means={c: self.means[c] for c in range(4)},
                covs={c: self.covariances[c] for c in range(4)},
            )

    def align(self, head, blocks):
        classes = sum(len(b) for b in blocks)
        given["alignment_draws"].append(
            replay_draws(
                self.generator.get_state(),
                classes,
                self.samples_per_class,
                head.in_features,
                self.ca_epochs,
            )
        )
        return original["align"](self, head, blocks)

    for name, hook in dict(
        attach=attach,
        before_task=before_task,
        rehearse=rehearse,
        loss=loss,
        after_task=after_task,
        align=align,
    ).items():
        setattr(SLCA, name, hook)
    stream = [*vit, f"model.weights={weights}", "benchmark=split_fmnist", "strategy=slca"]
    stream += [f"benchmark.num_tasks={TASKS}", f"train.iterations={STEPS}"]
    stream += [f"train.batch_size={BATCH}", "data.validation_fraction=0.9"]
    stream += ["eval.samples_per_task=500", f"seed={seed}", "optimizer=sgd"]
    stream += [f"optimizer.lr={LR}", f"optimizer.momentum={MOMENTUM}"]
    stream += [f"optimizer.weight_decay={WEIGHT_DECAY}"]
    optimizers = []
    import lab.engine as engine

    make = engine.make_optimizer
    engine.make_optimizer = lambda groups, s: optimizers.append(make(groups, s)) or optimizers[-1]
    try:
        result = run_experiment(config(stream), work / "lab")
    finally:
        for name, hook in original.items():
            setattr(SLCA, name, hook)
        engine.make_optimizer = make
    lab["final_row"] = result["acc_matrix"][-1]
    rates = sorted({g["lr"] for g in optimizers[0].param_groups})
    lab["lr_backbone"], lab["lr_head"] = rates[0], rates[-1]
    given["ca_epochs"] = result["config"]["strategy"]["ca_epochs"]

    # one alignment epoch from the head before task 1's alignment, on both sides
    one = lab["one_epoch"]
    strategy = SLCA(ca_epochs=1)
    strategy.means, strategy.covariances = one["means"], one["covs"]
    strategy.lr, strategy.weight_decay = LR, WEIGHT_DECAY
    strategy.generator.set_state(one["generator"])
    head = torch.nn.Linear(one["weight"].shape[1], 4)
    with torch.no_grad():
        head.weight.copy_(one["weight"][:4])
        head.bias.copy_(one["bias"][:4])
    recording = RecordingF()
    slca_module.F = recording
    try:
        strategy.align(head, [[0, 1], [2, 3]])
    finally:
        slca_module.F = torch.nn.functional
    lab["ca_first_loss"] = recording.losses[0]
    lab["ca_head"] = (head.weight.detach().clone(), head.bias.detach().clone())
    given["one_epoch"] = {
        "weight": one["weight"][:4],
        "bias": one["bias"][:4],
        "means": one["means"],
        "covs": one["covs"],
        "draws": replay_draws(one["generator"], 4, strategy.samples_per_class, head.in_features, 1),
    }
    return given, lab


# ----------------------------------------------------------------------------- the table


def _max_diff(ours: tuple[torch.Tensor, ...], theirs: tuple[torch.Tensor, ...]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))


def checks(name: str, lab: dict, ref: dict) -> list[tuple]:
    rows = [
        (
            f"backbone lr / head lr ({name})",
            lab["lr_backbone"] / lab["lr_head"],
            ref["lr_backbone"] / ref["lr_head"],
            1e-12,
        ),
        (f"step-0 loss ({name})", lab["step0_loss"], ref["step0_loss"], 1e-5),
        (f"class statistics, task 0: max abs diff ({name})", 0.0, ref["statistics_diff"], 1e-5),
        (f"alignment: first-step loss ({name})", lab["ca_first_loss"], ref["ca_first_loss"], 1e-5),
        (
            f"head after one alignment epoch: max abs diff ({name})",
            0.0,
            _max_diff(lab["ca_head"], ref["ca_head"]),
            1e-5,
        ),
    ]
    if "final_row" in ref:
        acc = 100 * sum(lab["final_row"]) / len(lab["final_row"])
        ref_acc = 100 * sum(ref["final_row"]) / len(ref["final_row"])
        rows.append((f"ACC (%) after the short run ({name})", acc, ref_acc, 1.0))
    return rows


def make_envs(folder: Path) -> None:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    for name, version in TIMM.items():
        env = folder / name
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [env / "bin" / "pip", "install", "--no-deps", f"timm=={version}"], check=True
        )
        pythons = list((env / "lib").glob("python*/site-packages"))
        (pythons[0] / "zz_lab.pth").write_text(site + "\n")
        print(f"{name}: {env / 'bin' / 'python'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mammoth", default=os.environ.get("MAMMOTH_ROOT"))
    parser.add_argument("--pilot", default=os.environ.get("PILOT_ROOT"))
    parser.add_argument("--mammoth-python", default=os.environ.get("MAMMOTH_PYTHON"))
    parser.add_argument("--pilot-python", default=os.environ.get("PILOT_PYTHON"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="a folder for the files both sides read (default: temp)")
    parser.add_argument("--make-envs", metavar="DIR", help="make both references' Pythons")
    parser.add_argument("--reference", choices=REPOS, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.make_envs:
        make_envs(Path(args.make_envs))
        return 0
    if args.reference:  # in the reference's Python: read the lab's files, write its answers
        work = Path(args.work)
        data = torch.load(work / "given.pt", weights_only=False)
        runner = run_pilot if args.reference == "pilot" else run_mammoth
        root = Path(getattr(args, args.reference))
        os.chdir(root)
        torch.save(runner(root, data), work / f"{args.reference}.pt")
        return 0
    roots = {"mammoth": args.mammoth, "pilot": args.pilot}
    pythons = {"mammoth": args.mammoth_python, "pilot": args.pilot_python}
    for name, root in roots.items():
        if not root or not Path(root).is_dir():
            url, commit = REPOS[name]
            print(
                f"no {name} checkout (--{name} or {name.upper()}_ROOT): git clone {url} && "
                f"git -C {url.rsplit('/', 1)[1]} checkout {commit}",
                file=sys.stderr,
            )
            return 2
        if not pythons[name]:
            print(
                f"no Python for {name} (--{name}-python or {name.upper()}_PYTHON): "
                f"make one with timm {TIMM[name]}: python {HERE.name} --make-envs DIR",
                file=sys.stderr,
            )
            return 2
    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="parity_slca_"))
    work.mkdir(parents=True, exist_ok=True)
    given, lab = run_lab(work, args.seed)
    torch.save(given, work / "given.pt")
    rows = []
    for name in ("pilot", "mammoth"):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
        command = [pythons[name], str(HERE), "--reference", name, f"--{name}", roots[name]]
        done = subprocess.run([*command, "--work", str(work)], env=env)
        if done.returncode:
            print(f"the {name} side failed (above)", file=sys.stderr)
            return 1
        rows += checks(name, lab, torch.load(work / f"{name}.pt", weights_only=False))
    print("| method | check | ours | reference | tolerance | within? |")
    print("| --- | --- | --- | --- | --- | --- |")
    failed = False
    for check, ours, ref, tolerance in rows:
        within = abs(ours - ref) <= tolerance
        failed |= not within
        verdict = "yes" if within else "NO"
        print(f"| slca | {check} | {ours:.7g} | {ref:.7g} | {tolerance:g} | {verdict} |")
    print("\nKnown deviations of the references:\n")
    for deviation in DEVIATIONS:
        print(f"- {deviation}")
    print(json.dumps({"work": str(work)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
