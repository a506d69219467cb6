"""Parity of the lab's SimpleCIL, APER and RanPAC with their reference implementations.

    python scripts/parity_ptm_proto.py --pilot PATH --mammoth PATH [--seeds 3]
    (or MAMMOTH_ROOT / PILOT_ROOT in the environment; --pilot-python / --mammoth-python, or
     PILOT_PYTHON / MAMMOTH_PYTHON: the reference environments' interpreters)

The references: LAMDA-PILOT (https://github.com/sun-hailong/LAMDA-PILOT, commit
264745534fc2233f5a50b020e50a3472c47eb756: models/simplecil.py, aper_adapter.py,
ranpac.py) and Mammoth (https://github.com/aimagelab/mammoth, commit
e75a491c69fd729edeb01431afb753d9157d9a81: models/ranpac.py, models/ranpac_utils/). Each is
imported from its checkout at run time, in its own environment, as a subprocess; nothing
of them is copied here. Their environments (torch and the rest shared from
the lab's venv; PILOT pins timm 0.6.12, which fails to import on Python 3.11, so 0.6.13;
easydict is what PILOT's utils/inc_net.py imports for its adapter backbone):

    LAB=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])'); S=lib/python3.11
    python3 -m venv P && P/bin/pip install --no-deps timm==0.6.13 easydict
    echo $LAB > P/$S/site-packages/zz_lab.pth
    python3 -m venv M && M/bin/pip install --no-deps timm==0.9.8
    echo $LAB > M/$S/site-packages/zz_lab.pth
    (then --pilot-python P/bin/python --mammoth-python M/bin/python)

What runs, on one CPU core in a few minutes: timm's test_vit at 32 px, pre-trained by the lab
on digits (pretrain=source, 3 epochs; its pretrained.safetensors is what both sides load),
on Split Fashion-MNIST (5 tasks of 2 classes, classes 0..9 in order as PILOT's order with
shuffle=false), 200 training and 100 test images per class. The lab's side runs its own
engine and strategies; then everything the two sides must share is written to one file
that the reference reads: the images (made as the lab makes them: 32 px, 3 channels, the
model's mean and std), the batches of the first session (the lab's order), the initial
weights of the first session's cosine head and of the adapters, the random projection W
and the order of the samples that RanPAC's 80/20 split of lambda cuts. Per method:

- the same loss at the first step of the first session (to 1e-5; SimpleCIL trains nothing:
  instead its prototypes, to 1e-5);
- the same lambda after every task (RanPAC; from the lab's features themselves for
  Mammoth's, whose backbone is ViT-B/16 alone: models/ranpac_utils/inc_net.py);
- the same final accuracy over all classes after the stream (within 1 point, or within 3
  standard errors of the difference over --seeds seeds).

A check that fails where a deviation of the reference is written down below (DEVIATIONS,
with its file and line) is reported as such; any other failure exits 1. The table printed
is docs/ptm-proto.md's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PILOT_GIT = (
    "https://github.com/sun-hailong/LAMDA-PILOT (commit 264745534fc2233f5a50b020e50a3472c47eb756)"
)
MAMMOTH_GIT = (
    "https://github.com/aimagelab/mammoth (commit e75a491c69fd729edeb01431afb753d9157d9a81)"
)
TRAIN_PER_CLASS, TEST_PER_CLASS = 200, 100
BATCH, MOMENTUM, WEIGHT_DECAY = 48, 0.9, 0.0005  # PILOT's exps/*.json
LR = 0.1  # PILOT's 0.01 moves the adapters too little in this short a session
ADAPTER_DIM = 64  # PILOT's ffn_num
PROJECTION = 1000  # M: the references' 10000 needs a GPU for the 17 solves per task
# epochs of the first session (PILOT's tuned_epoch: 20), its cosine schedule held at lr
EPOCHS = 5

METHODS = {  # the lab's overrides, and PILOT's model and backbone
    "simplecil": (["strategy=simplecil"], "simplecil", "pretrained_vit_b16_224"),
    "aper (adapter)": (
        ["strategy=aper", "finetune.mode=adapter"],
        "aper_adapter",
        "pretrained_vit_b16_224_adapter",
    ),
    "ranpac (adapter)": (
        ["strategy=ranpac", "finetune.mode=adapter", f"strategy.projection={PROJECTION}"],
        "ranpac",
        "pretrained_vit_b16_224_adapter",
    ),
    "ranpac (no adaptation)": (
        ["strategy=ranpac", "strategy.adapt=false", f"strategy.projection={PROJECTION}"],
        "ranpac",
        "pretrained_vit_b16_224",
    ),
}

# (method, check): what the reference does otherwise, where, and what it changes here. A
# failed check is excused only by its entry here.
ADAPTER = (
    "PILOT's AdaptFormer adapter reads the block's input x, not LN(x) "
    "(backbone/vit_adapter.py:168, `self.adaptmlp(x, add_residual=False)` before norm2), "
    "drops out its bottleneck at 0.1 (vit_adapter.py:159) and starts its down projection's "
    "bias at 0 (vit_adapter.py:67); the lab's adapter mode follows the paper's x' = LN(x) "
    "(lab/finetune/adapter.py), no dropout, and the runner gives PILOT the lab's initial "
    "adapter weights"
)
COSINE_READOUT = (
    "PILOT scores RanPAC by sigma * cos(h, W_out) (utils/inc_net.py:579-581 through "
    "backbone/linears.py:58 and 65, CosineLinear), not the paper's h W_out, which the lab "
    "and Mammoth use (models/ranpac_utils/inc_net.py:120)"
)
DEVIATIONS = {
    ("aper (adapter)", "accuracy"): ADAPTER,
    ("ranpac (adapter)", "accuracy"): f"{ADAPTER}; and {COSINE_READOUT}",
    ("ranpac (adapter)", "lambda"): (
        "PILOT's lambdas come from its own adapted features (the adapter's deviations); "
        "Mammoth's, from the lab's features, are the same"
    ),
    ("ranpac (no adaptation)", "accuracy"): COSINE_READOUT,
}
# Known differences that the checks are set up around (docs/ptm-proto.md lists them too)
NOTES = [
    "PILOT's first session anneals the learning rate by a cosine over its epochs "
    "(models/aper_adapter.py:111, models/ranpac.py:123); the lab keeps optimizer.lr: the "
    "runner sets PILOT's min_lr = init_lr, which holds its schedule at lr",
    "PILOT's RanPAC cannot run without a first session: _init_train logs `info`, unbound "
    "after zero epochs (models/ranpac.py:165); the runner skips _init_train there",
    "PILOT pins timm 0.6.12, which fails to import on Python 3.11: its env has 0.6.13; its "
    "adapter backbone imports easydict (installed with --no-deps)",
    "PILOT's backbones are ViT-B/16 (utils/inc_net.py get_backbone, backbone/vit_adapter.py "
    "vit_base_patch16_224_adapter's weight conversion at width 768): the runner builds them "
    "at test_vit's size (width 64, 6 blocks, 2 heads, MLP ratio 3) and converts the lab's "
    "weights as vit_adapter.py does",
    "Mammoth's RanPACNet builds a ViT-B/16 alone (models/ranpac_utils/inc_net.py:32-33): its "
    "RanPAC (setup_RP, replace_fc, optimise_ridge_parameter, CosineLinear) runs on the lab's "
    "own features; its datasets package imports open_clip (datasets/seq_dtd.py:2), which "
    "RanPAC does not use: the runner stubs the package",
    "G, C and the solves are float32 on both sides, as the references hold them "
    "(models/ranpac.py:63-64); M = 1000 here, not the default 10000",
    "PILOT's SSF starts gamma ~ N(1, 0.02), beta ~ N(0, 0.02) (backbone/vit_ssf.py:378-385); "
    "the lab's ssf mode starts at the identity (not run here: vpt and ssf are not in this "
    "script)",
]


def missing_reference(name: str, url: str, variable: str) -> str:
    git, commit = url.split(" ")[0], url.split()[-1].rstrip(")")
    return (
        f"no {name} checkout: git clone {git} {name} && git -C {name} checkout {commit}, "
        f"then pass --{name} PATH or set {variable}"
    )


def compose(overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lab.config import validate
    from lab.run import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(hydra_compose(config_name="config", overrides=overrides))


COMMON = [
    "logger.mode=disabled",
    "model=timm",
    "model.arch=test_vit",
    "model.input_size=32",
    "progress=false",
]


def pretrain(work: Path) -> Path:
    """test_vit pre-trained by the lab on digits; the weights in timm's layout."""
    from lab.experiment import run_experiment

    config = compose(
        [
            *COMMON,
            "benchmark=split_digits",
            "strategy=simplecil",
            "pretrain=source",
            "pretrain.dataset=digits",
            "pretrain.epochs=3",
            "pretrain.batch_size=32",
        ]
    )
    run_experiment(config, work / "pretrain")
    return work / "pretrain" / "pretrained.safetensors"


def subsample(task, generator: torch.Generator):
    """The task's first TRAIN_PER_CLASS / TEST_PER_CLASS images of each class (a seeded
    draw), made as tensors."""

    def pick(y: torch.Tensor, per_class: int) -> torch.Tensor:
        rows = [
            (y == c).nonzero()[:, 0][torch.randperm(int((y == c).sum()), generator=generator)]
            for c in sorted(set(y.tolist()))
        ]
        return torch.cat([r[:per_class] for r in rows]).sort().values

    train, test = pick(task.train_y, TRAIN_PER_CLASS), pick(task.test_y, TEST_PER_CLASS)
    return dataclasses.replace(
        task,
        train_x=task.train_x[train],
        train_y=task.train_y[train],
        test_x=task.test_x[test],
        test_y=task.test_y[test],
    )


def run_ours(method: str, seed: int, weights: Path, inputs: Path) -> dict:
    """The lab's side, through its engine; writes what the references need to `inputs`."""
    from lab import finetune as ft
    from lab.engine import train_stream
    from lab.experiment import build, train_settings
    from lab.optim import OptimizerSettings
    from lab.strategies.features import features_of

    overrides, _, _ = METHODS[method]
    config = compose(
        [
            *COMMON,
            f"model.weights={weights}",
            *overrides,
            "benchmark=split_fmnist",
            "benchmark.class_order=[0,1,2,3,4,5,6,7,8,9]",
            f"seed={seed}",
            f"train.epochs={EPOCHS}",
            f"train.batch_size={BATCH}",
            "optimizer=sgd",
            f"optimizer.lr={LR}",
            f"optimizer.momentum={MOMENTUM}",
            f"optimizer.weight_decay={WEIGHT_DECAY}",
            f"finetune.adapter.dim={ADAPTER_DIM}",
        ]
    )
    torch.manual_seed(seed)
    stream, model, strategy = build(config, torch.device("cpu"))
    draw = torch.Generator().manual_seed(0)  # the same images for every seed
    stream.tasks = [subsample(t, draw) for t in stream.tasks]
    assert [t.outputs for t in stream.tasks] == [[2 * i, 2 * i + 1] for i in range(5)]
    strategy.attach(model, stream)
    settings = ft.Finetune(**config["finetune"])
    ft.apply(model, settings)
    shared: dict = {
        "tasks": [
            {"train_x": t.train_x, "train_y": t.train_y, "test_x": t.test_x, "test_y": t.test_y}
            for t in stream.tasks
        ],
        "weights": str(weights),
    }
    head = model.heads[0]
    if hasattr(head, "adapt"):  # the first session's cosine head
        shared["head"] = head.adapt.weight.detach().clone()
    readout = getattr(head, "final", head)
    if hasattr(readout, "projection"):
        shared["projection"] = readout.projection.clone()
    vit = model.backbone.model
    if hasattr(vit.blocks[0].mlp, "adapter"):
        shared["adapters"] = [
            {k: v.detach().clone() for k, v in b.mlp.adapter.state_dict().items()}
            for b in vit.blocks
        ]
    n = len(stream.tasks[0].train_y)  # the engine's first epoch: its generator's first draw
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shared["batches"] = [order[i : i + BATCH] for i in range(0, n, BATCH)]
    orders = []
    if hasattr(strategy, "split_order"):
        draw_order = strategy.split_order

        def recorded(samples: int) -> torch.Tensor:
            orders.append(draw_order(samples))
            return orders[-1]

        strategy.split_order = recorded
    features = []
    if hasattr(strategy, "lambdas"):  # Mammoth's RanPAC reads the lab's features
        after_task = strategy.after_task

        def keep_features(model, task, seen):
            after_task(model, task, seen)
            features.append(features_of(model, task.train_x))

        strategy.after_task = keep_features
    losses = []
    train_stream(
        model,
        stream,
        strategy,
        OptimizerSettings(**config["optimizer"]),
        train_settings(config),
        generator=torch.Generator().manual_seed(seed),
        on_task_end=lambda result: losses.append(result.losses),
        finetune=settings,
    )
    shared["split_orders"] = orders
    test_x = torch.cat([t.test_x for t in stream.tasks])
    test_y = torch.cat([t.test_y for t in stream.tasks])
    model.eval()
    with torch.inference_mode():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    if features:
        shared["features"] = features
        shared["test_features"] = features_of(model, test_x)
    torch.save(shared, inputs)
    ours = {"loss0": losses[0][0] if losses[0] else None, "accuracy": 100 * accuracy}
    if hasattr(strategy, "lambdas"):
        ours["lambdas"] = list(strategy.lambdas)
    if method == "simplecil":
        ours["prototypes"] = head.weight.clone()
    return ours


# The reference's side: run by its own interpreter, its checkout first on the path.
PILOT_RUNNER = r"""
import json, sys
from functools import partial

import numpy as np
import torch
from torch import nn

root, inputs, output, model_name, backbone_type, seed, settings = sys.argv[1:8]
settings = json.loads(settings)
sys.path.insert(0, root)
torch.manual_seed(int(seed))
from easydict import EasyDict
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

import utils.inc_net as inc_net
from backbone import vit_adapter
import models.simplecil, models.aper_adapter, models.ranpac

shared = torch.load(inputs, weights_only=False)
timm_weights = {k: v for k, v in load_file(shared["weights"]).items() if not k.startswith("head.")}
D = 64  # test_vit's width (PILOT's backbones are ViT-B/16's 768)


def plain():  # utils/inc_net.py get_backbone's pretrained_vit_b16_224, at test_vit's size
    model = VisionTransformer(img_size=32, patch_size=16, embed_dim=D, depth=6, num_heads=2,
                              mlp_ratio=3, num_classes=0)
    model.load_state_dict(timm_weights)
    model.out_dim = D
    return model.eval()


def adapter():  # its _adapter backbone and vit_adapter.py's weight conversion, at D
    config = EasyDict(ffn_adapt=True, ffn_option="parallel", ffn_adapter_layernorm_option="none",
                      ffn_adapter_init_option="lora", ffn_adapter_scalar="0.1",
                      ffn_num=settings["adapter_dim"], d_model=D, vpt_on=False, vpt_num=0)
    model = vit_adapter.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=D, depth=6, num_heads=2, mlp_ratio=3,
        qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0,
        global_pool=False, drop_path_rate=0.0, tuning_config=config)
    state = {}
    for key, value in timm_weights.items():
        if "qkv." in key:
            for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
                state[key.replace("qkv", part)] = value[i * D : (i + 1) * D]
        else:
            state[key.replace("mlp.", "")] = value
    msg = model.load_state_dict(state, strict=False)
    for name, p in model.named_parameters():
        p.requires_grad = name in msg.missing_keys
    for block, start in zip(model.blocks, shared["adapters"]):  # the lab's initial adapters
        for name, layer in (("down", block.adaptmlp.down_proj), ("up", block.adaptmlp.up_proj)):
            layer.load_state_dict({k.split(".")[1]: v for k, v in start.items()
                                   if k.startswith(name + ".")})
    model.out_dim = D
    return model.eval()


def get_backbone(args, pretrained=False):
    return adapter() if args["backbone_type"].endswith("_adapter") else plain()


inc_net.get_backbone = get_backbone
tasks = shared["tasks"]
current = {"task": 0}


class Split(torch.utils.data.Dataset):
    def __init__(self, x, y, source, mode):
        self.x, self.y, self.labels, self.source, self.mode = x, y, y.numpy(), source, mode

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return i, self.x[i], self.y[i]


class Manager:  # PILOT's DataManager, over the lab's images
    def get_task_size(self, task):
        return 2

    def get_dataset(self, indices, source, mode):
        chosen = [t for t in tasks if int(t["train_y"][0]) in set(indices.tolist())]
        x = torch.cat([t[f"{source}_x"] for t in chosen])
        y = torch.cat([t[f"{source}_y"] for t in chosen])
        return Split(x, y, source, mode)


class Loader:  # the lab's orders where they matter, the natural one elsewhere
    def __init__(self, dataset, batch_size, shuffle=False, num_workers=0):
        n = len(dataset)
        if dataset.source == "train" and dataset.mode == "train" and current["task"] == 0:
            self.batches = shared["batches"]
        elif dataset.source == "train" and dataset.mode == "test" and shared["split_orders"]:
            order = shared["split_orders"][current["task"]]
            self.batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        else:
            natural = torch.arange(n)
            self.batches = [natural[i : i + batch_size] for i in range(0, n, batch_size)]
        self.dataset = dataset

    def __iter__(self):
        for rows in self.batches:
            yield rows, self.dataset.x[rows], self.dataset.y[rows]

    def __len__(self):
        return len(self.batches)


for module in (models.simplecil, models.aper_adapter, models.ranpac):
    module.DataLoader = Loader
modules = {"simplecil": models.simplecil, "aper_adapter": models.aper_adapter,
           "ranpac": models.ranpac}
Learner = modules[model_name].Learner
first_losses = []
cross_entropy = torch.nn.functional.cross_entropy


def recorded(logits, targets, *args, **kwargs):
    loss = cross_entropy(logits, targets, *args, **kwargs)
    first_losses.append(loss.item())
    return loss


torch.nn.functional.cross_entropy = recorded
original_train = Learner._train


def train(self, *loaders):  # the lab's initial head, rows of the first task's classes
    if self._cur_task == 0 and "head" in shared:
        self._network.fc.weight.data.copy_(shared["head"][: self._total_classes])
    return original_train(self, *loaders)


Learner._train = train
if settings["epochs"] == 0:  # models/ranpac.py:165 reads `info`, unbound after no epoch
    Learner._init_train = lambda self, *args: None
lambdas = []
if model_name == "ranpac":
    original_setup, original_ridge = Learner.setup_RP, Learner.optimise_ridge_parameter

    def setup(self):
        original_setup(self)
        self.W_rand = shared["projection"].clone()
        self._network.W_rand = self.W_rand

    def choose(self, features, y):
        lambdas.append(float(original_ridge(self, features, y)))
        return lambdas[-1]

    Learner.setup_RP, Learner.optimise_ridge_parameter = setup, choose
args = {"memory_size": 0, "memory_per_class": 0, "fixed_memory": False,
        "device": [torch.device("cpu")],
        "model_name": model_name, "backbone_type": backbone_type, "batch_size": settings["batch"],
        "init_lr": settings["lr"], "weight_decay": settings["weight_decay"],
        "min_lr": settings["lr"],
        "optimizer": "sgd", "tuned_epoch": settings["epochs"], "init_cls": 2, "increment": 2,
        "nb_classes": 10, "use_RP": True, "M": settings["projection"],
        "ffn_num": settings["adapter_dim"],
        "use_simplecil": False}
learner, manager = Learner(args), Manager()
for task in range(len(tasks)):
    current["task"] = task
    learner.incremental_train(manager)
    learner.after_task()
network = learner._network.eval()
test_x = torch.cat([t["test_x"] for t in tasks])
test_y = torch.cat([t["test_y"] for t in tasks])
with torch.no_grad():
    accuracy = (network(test_x)["logits"].argmax(1) == test_y).float().mean().item()
result = {"loss0": first_losses[0] if first_losses else None, "accuracy": 100 * accuracy,
          "lambdas": lambdas}
if model_name == "simplecil":
    result["prototypes"] = network.fc.weight.tolist()
json.dump(result, open(output, "w"))
"""

# Mammoth's RanPAC (models/ranpac.py setup_RP, replace_fc, optimise_ridge_parameter and
# ranpac_utils/inc_net.py CosineLinear) on the lab's own features: its backbone is
# ViT-B/16 alone (RanPACNet builds it at width 768), so the features come from the lab.
MAMMOTH_RUNNER = r"""
import json, sys, types
from functools import partial
from types import SimpleNamespace

import torch

root, inputs, output, projection = sys.argv[1:5]
sys.path.insert(0, root)
# Mammoth's datasets package imports every dataset (seq_dtd needs open_clip); RanPAC uses
# none of it here
stub = types.ModuleType("datasets")
for name in ("get_dataset", "get_dataset_names", "get_dataset_config_names", "get_dataset_class"):
    setattr(stub, name, lambda *args, **kwargs: [])
sys.modules["datasets"] = stub
import models.ranpac as ranpac
from models.ranpac_utils.inc_net import CosineLinear

shared = torch.load(inputs, weights_only=False)
network = SimpleNamespace(device="cpu", convnet=lambda x: x, eval=lambda: None, fc=None)
self = SimpleNamespace(net=SimpleNamespace(_network=network), device="cpu",
                       args=SimpleNamespace(rp_size=int(projection)),
                       dataset=SimpleNamespace(N_CLASSES=10))
lambdas = []


def choose(features, y):
    lambdas.append(float(ranpac.RanPAC.optimise_ridge_parameter(self, features, y)))
    return lambdas[-1]


self.optimise_ridge_parameter = choose
for task, features in enumerate(shared["features"]):
    network.fc = CosineLinear(features.shape[1], 2 * (task + 1))  # begin_task's new head
    if task == 0:
        ranpac.RanPAC.setup_RP(self)
        network.fc.W_rand = shared["projection"].clone()
        self.W_rand = network.fc.W_rand
    order = shared["split_orders"][task]
    y = shared["tasks"][task]["train_y"]
    loader = [(features[order[i : i + 48]], y[order[i : i + 48]]) for i in range(0, len(order), 48)]
    ranpac.RanPAC.replace_fc(self, loader)
test_y = torch.cat([t["test_y"] for t in shared["tasks"]])
with torch.no_grad():
    logits = network.fc(shared["test_features"])["logits"]
accuracy = (logits.argmax(1) == test_y).float().mean().item()
json.dump({"accuracy": 100 * accuracy, "lambdas": lambdas}, open(output, "w"))
"""


def run_reference(python: str, script: str, argv: list[str], work: Path) -> dict:
    path = work / "runner.py"
    path.write_text(script)
    output = work / "reference.json"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(
        [python, str(path), argv[0], argv[1], str(output), *argv[2:]],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        sys.exit(f"the reference failed:\n{done.stderr[-3000:]}")
    return json.loads(output.read_text())


def mean_se(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pilot", default=os.environ.get("PILOT_ROOT"))
    parser.add_argument("--mammoth", default=os.environ.get("MAMMOTH_ROOT"))
    parser.add_argument("--pilot-python", default=os.environ.get("PILOT_PYTHON"))
    parser.add_argument(
        "--mammoth-python",
        default=os.environ.get("MAMMOTH_PYTHON"),
    )
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    for name, root, url, variable in (
        ("pilot", args.pilot, PILOT_GIT, "PILOT_ROOT"),
        ("mammoth", args.mammoth, MAMMOTH_GIT, "MAMMOTH_ROOT"),
    ):
        if not root or not Path(root).is_dir():
            print(missing_reference(name, url, variable))
            return 2
    for name, python in (("pilot", args.pilot_python), ("mammoth", args.mammoth_python)):
        if not python or not Path(python).is_file():
            print(
                f"no Python for {name} (--{name}-python or {name.upper()}_PYTHON): a venv with "
                "the reference's pinned timm; this script's docstring gives the commands"
            )
            return 2
    torch.set_num_threads(1)
    settings = {
        "batch": BATCH,
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "epochs": EPOCHS,
        "projection": PROJECTION,
        "adapter_dim": ADAPTER_DIM,
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="parity-ptm-proto-") as tmp:
        work = Path(tmp)
        weights = pretrain(work)
        for method, (_, model_name, backbone) in METHODS.items():
            runs = {"ours": [], "pilot": [], "mammoth": []}
            for seed in range(args.seeds):
                inputs = work / f"inputs-{seed}.pt"
                ours = run_ours(method, seed, weights, inputs)
                # RanPAC without adaptation: PILOT's first session of no epochs
                trains = {
                    **settings,
                    "epochs": 0 if "adapt=false" in " ".join(METHODS[method][0]) else EPOCHS,
                }
                pilot = run_reference(
                    args.pilot_python,
                    PILOT_RUNNER,
                    [args.pilot, str(inputs), model_name, backbone, str(seed), json.dumps(trains)],
                    work,
                )
                runs["ours"].append(ours)
                runs["pilot"].append(pilot)
                if "lambdas" in ours:
                    runs["mammoth"].append(
                        run_reference(
                            args.mammoth_python,
                            MAMMOTH_RUNNER,
                            [args.mammoth, str(inputs), str(PROJECTION)],
                            work,
                        )
                    )
                print(
                    f"{method} seed {seed}: ours {ours['accuracy']:.2f}, "
                    f"PILOT {pilot['accuracy']:.2f}",
                    file=sys.stderr,
                )
            rows += checks(method, runs)
    print_table(rows)
    failed = [r for r in rows if not r["within"] and (r["method"], r["check"]) not in DEVIATIONS]
    return 1 if failed else 0


def checks(method: str, runs: dict) -> list[dict]:
    ours, pilot, mammoth = runs["ours"], runs["pilot"], runs["mammoth"]
    rows = []
    if method == "simplecil":
        difference = (ours[0]["prototypes"] - torch.tensor(pilot[0]["prototypes"])).abs().max()
        rows.append(
            row(
                method,
                "prototypes (max abs diff)",
                f"{difference.item():.1e}",
                "PILOT",
                "1e-5",
                difference.item() <= 1e-5,
            )
        )
    elif ours[0]["loss0"] is not None:
        a, b = ours[0]["loss0"], pilot[0]["loss0"]
        rows.append(
            row(
                method, "loss at step 0", f"{a:.6f}", f"{b:.6f} (PILOT)", "1e-5", abs(a - b) <= 1e-5
            )
        )
    if "lambdas" in ours[0]:
        a = [o["lambdas"] for o in ours]
        for name, side in (("PILOT", pilot), ("Mammoth", mammoth)):
            b = [s["lambdas"] for s in side]
            same = sum(x == y for x, y in zip(a, b, strict=True))
            rows.append(
                row(
                    method,
                    f"lambda per task ({name})",
                    json.dumps(a[0]),
                    f"{json.dumps(b[0])} ({same}/{len(a)} seeds equal)",
                    "equal",
                    a == b,
                    check="lambda" if name == "PILOT" else "lambda (Mammoth)",
                )
            )
    for name, side in (("PILOT", pilot), ("Mammoth", mammoth)):
        if not side:
            continue
        a, sa = mean_se([o["accuracy"] for o in ours])
        b, sb = mean_se([s["accuracy"] for s in side])
        tolerance = max(1.0, 3 * (sa**2 + sb**2) ** 0.5)
        check = "accuracy" if name == "PILOT" else "accuracy (Mammoth)"
        rows.append(
            row(
                method,
                f"final accuracy, % ({name})",
                f"{a:.2f} ± {sa:.2f}",
                f"{b:.2f} ± {sb:.2f}",
                f"{tolerance:.2f}",
                abs(a - b) <= tolerance,
                check=check,
            )
        )
    return rows


def row(method, label, ours, reference, tolerance, within, check=None) -> dict:
    key = check or ("accuracy" if "accuracy" in label else label)
    return {
        "method": method,
        "check": key,
        "label": label,
        "ours": ours,
        "reference": reference,
        "tolerance": tolerance,
        "within": bool(within),
    }


def print_table(rows: list[dict]) -> None:
    print("| method | check | ours | reference | tolerance | within? |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        deviation = (r["method"], r["check"]) in DEVIATIONS
        within = "yes" if r["within"] else ("no: known deviation" if deviation else "**no**")
        cells = [r["method"], r["label"], r["ours"], r["reference"], r["tolerance"], within]
        print("| " + " | ".join(cells) + " |")
    print("\nKnown deviations of the references:\n")
    for (method, check), text in DEVIATIONS.items():
        failed = any((r["method"], r["check"]) == (method, check) and not r["within"] for r in rows)
        print(f"- {method}, {check}{' (the check fails here)' if failed else ''}: {text}")
    for text in NOTES:
        print(f"- {text}")


if __name__ == "__main__":
    sys.exit(main())
