"""Parity of the lab's prompt learners (L2P, DualPrompt, CODA-Prompt) with Mammoth's.

    python scripts/parity_ptm_prompt.py --mammoth PATH [--pilot PATH] [--steps 12] [--out FILE]

Mammoth (aimagelab/mammoth, commit e75a491c69fd729edeb01431afb753d9157d9a81) is imported at
run time from --mammoth (default: $MAMMOTH_ROOT), in its own Python (--mammoth-python,
default $MAMMOTH_PYTHON), as a subprocess: nothing of it is
copied here. Its environment: a virtual environment with timm 0.9.8 (Mammoth's pin), torch,
and kornia and kornia_rs installed with --no-deps (models/utils/continual_model.py imports
kornia; nothing here uses it; written against kornia 0.9.0, kornia_rs 0.2.0). To make one:

    git clone https://github.com/aimagelab/mammoth
    git -C mammoth checkout e75a491c69fd729edeb01431afb753d9157d9a81
    python -m venv refenv && refenv/bin/pip install torch torchvision timm==0.9.8 numpy
    refenv/bin/pip install --no-deps kornia kornia_rs

--pilot is accepted for the family scripts' common command line; this family's references
are Mammoth's alone (LAMDA-PILOT's l2p/dualprompt/coda_prompt are its ports of the same code).

Both sides start from the same weights: timm's test_vit at 32 px, pre-trained here for a
few hundred steps on scikit-learn's digits (a ViT that knows something) and written to a
file both load (Mammoth's own VisionTransformer classes, at test_vit's sizes, through its
checkpoint filter for L2P's position embedding). The lab builds its model and method
(lab.experiment.build, Strategy.attach); its initial prompts, keys and head are copied into
Mammoth's modules; the same batches of Split Fashion-MNIST (class-IL, the first tasks of 2
classes each) are written to a file both read: the lab's engine (lab.engine.train_task)
trains on them in the order its generator draws, Mammoth's `observe` in the same order, a
fresh Adam per task on both sides. Checked:

- the test logits before training (max |difference|, 1e-5): the prompted forwards agree;
- the prompts chosen on the test images, before and after training (L2P: the top-N sets,
  DualPrompt: the E-prompt of key matching; the fraction of samples with the same choice);
- CODA-Prompt: each later task's Gram-Schmidt components (the same generator state on both
  sides; max |difference|);
- the loss at step 0 (1e-5), and the mean test accuracy after the run (within 1 point).

It prints a markdown table and exits 1 where a check fails; the reference's known
deviations (file:line in Mammoth) are listed below the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

COMMIT = "e75a491c69fd729edeb01431afb753d9157d9a81"
URL = "https://github.com/aimagelab/mammoth"
TASKS, BATCH, LR = 3, 16, 0.01
VIT_SIZE = {"img_size": 32, "patch_size": 16, "embed_dim": 64, "depth": 6, "num_heads": 2}
VIT_SIZE["mlp_ratio"] = 3  # timm's test_vit
# each method at a size test_vit (width 64, 6 blocks, 2 heads) holds; the reference's other
# defaults (models/l2p.py, dualprompt.py, coda_prompt.py get_parser)
METHODS = {
    "l2p": {"pool_size": 10, "length": 5, "top_k": 5, "pull_constraint_coeff": 0.1},
    "dualprompt": {"size": 10, "length": 5, "top_k": 1, "pull_constraint_coeff": 1.0},
    "coda_prompt": {"pool_size": 12, "prompt_len": 8, "ortho_mu": 0.1},
}
DEVIATIONS = [
    (
        "dualprompt",
        "models/dualprompt.py:50",
        "batchwise_prompt defaults to 1 there: at test every sample of a batch takes the batch's "
        "majority E-prompt, a vote over the test batch (its help calls it unfair); the lab's "
        "default is per sample, and both sides run per sample here",
    ),
    (
        "dualprompt",
        "models/dualprompt.py:30, models/dualprompt_utils/prompt.py:124",
        "use_permute_fix defaults to 0: the E-prompt's (2, B, ...) slice is reshaped to "
        "(B, 2, ...) without a permute, so a sample's prefix keys and values come from other "
        "samples' key or value halves (Mammoth issue #56); the lab follows the paper, and "
        "Mammoth runs with use_permute_fix=1 here",
    ),
    (
        "l2p, dualprompt",
        "models/l2p.py:66, models/dualprompt.py:71",
        "the learning rate is scaled by batch_size / 256 inside the method; the lab takes "
        "optimizer.lr as the rate: both sides get the same rate here",
    ),
    (
        "coda_prompt",
        "models/coda_prompt.py:73, utils/schedulers.py:38",
        "a cosine learning-rate schedule over each task's epochs, which the lab does not "
        "apply; with one epoch per task (here) its rate is the base rate throughout",
    ),
    (
        "coda_prompt",
        "models/coda_prompt.py:27, 30, models/coda_prompt_utils/model.py:118",
        "two weights, mu (the loss's) times ortho_mu (the penalty's), both 0 by default; "
        "the lab's ortho_mu is their product (here mu = 1, ortho_mu = 0.1 on both sides)",
    ),
    (
        "coda_prompt",
        "models/coda_prompt_utils/vit.py:132",
        "prompt_loss = torch.zeros((1,), requires_grad=True).to(x.device) is the same leaf on a "
        "CPU (.to makes a copy on CUDA alone), so the in-place prompt_loss += loss fails there "
        "('a leaf Variable that requires grad is being used in an in-place operation'): the "
        "reference trains on CUDA only; here its module gets a torch whose zeros are a copy",
    ),
    (
        "coda_prompt",
        "models/coda_prompt_utils/__init__.py:44, 54",
        "Gram-Schmidt restarts forever once a task's components exceed the key width "
        "(their residuals vanish); the lab refuses pool_size > width at attach",
    ),
    (
        "coda_prompt",
        "models/coda_prompt_utils/model.py:9, 44, 159, 172",
        "the width (768), the prompted layers (0-4) and ViT-B/16 are fixed in the code; "
        "here CodaPrompt is built at width 64 on Mammoth's VisionTransformer at test_vit's size",
    ),
    (
        "all",
        "models/l2p_utils/l2p_model.py:16, 24, models/coda_prompt_utils/model.py:163",
        "the references load ViT-B/16 hub weights and their own head initialisation; here "
        "both sides load the same test_vit weights and the lab's initial head and prompts",
    ),
    (
        "all",
        "requirements.txt:6 (timm==0.9.8)",
        "Mammoth runs on timm 0.9.8, the lab on timm 1.x: the same layers, their attention "
        "fused (scaled_dot_product_attention) or not, hence differences of ~1e-7",
    ),
]


# ---------------------------------------------------------------- Mammoth's side


def import_mammoth(mammoth: str) -> None:
    """Mammoth's packages importable in this process, without their package __init__s."""
    sys.path.insert(0, mammoth)
    # Mammoth's datasets package imports every dataset (open_clip, ...) and its models
    # package every model (their own extra packages): the methods need their files alone
    datasets = types.ModuleType("datasets")

    def unused(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: []

    datasets.__getattr__ = unused
    datasets.__path__ = [str(Path(mammoth) / "datasets")]
    sys.modules["datasets"] = datasets
    models = types.ModuleType("models")
    models.__path__ = [str(Path(mammoth) / "models")]
    models.__getattr__ = unused
    sys.modules["models"] = models


def reference_method(
    name: str,
    p: dict,
    n_classes: int,
    vit_size: dict,
    weights=None,
    initial=None,
    classes_per_task: int = 2,
):
    """Mammoth's method `name` (its ContinualModel, without its constructor, which needs a
    Mammoth dataset and hub weights) on its VisionTransformer of `vit_size`, with `weights`
    and the `initial` prompts and head where given; returns (method, chosen), chosen(x)
    the prompts it selects (None for CODA-Prompt)."""
    import torch
    from torch import nn

    class Offsets:  # the dataset's get_offsets
        def get_offsets(self, t):
            return classes_per_task * t, classes_per_task * (t + 1)

    def load(model, state):
        if state is None:  # random weights (the benchmark)
            return
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not [k for k in missing if "prompt" not in k and "head" not in k], missing
        assert not unexpected, unexpected

    args = types.SimpleNamespace(
        optimizer="adam", lr=LR, optim_wd=0.0, optim_mom=0.0, clip_grad=1.0, n_epochs=2
    )
    if name == "l2p":
        from models.l2p import L2P
        from models.l2p_utils.l2p_model import L2PModel
        from models.l2p_utils.vit_prompt import VisionTransformer, checkpoint_filter_fn

        args.__dict__.update(pull_constraint=True, pull_constraint_coeff=p["pull_constraint_coeff"])
        net = L2PModel.__new__(L2PModel)
        nn.Module.__init__(net)
        net.original_model = VisionTransformer(num_classes=n_classes, **vit_size)
        net.model = VisionTransformer(
            num_classes=n_classes,
            prompt_length=p["length"],
            embedding_key="cls",
            prompt_init="uniform",
            prompt_pool=True,
            prompt_key=True,
            pool_size=p["pool_size"],
            top_k=p["top_k"],
            batchwise_prompt=False,
            prompt_key_init="uniform",
            head_type="prompt",
            use_prompt_mask=False,
            **vit_size,
        )
        load(
            net.original_model,
            checkpoint_filter_fn(dict(weights), net.original_model) if weights else None,
        )
        load(net.model, checkpoint_filter_fn(dict(weights), net.model) if weights else None)
        if initial is not None:
            with torch.no_grad():
                net.model.prompt.prompt.copy_(initial["prompt"])
                net.model.prompt.prompt_key.copy_(initial["key"])
        for n_, q in net.model.named_parameters():
            q.requires_grad = n_.startswith(("prompt", "head"))
        net.original_model.requires_grad_(False)
        method = L2P.__new__(L2P)
        head = net.model.head

        def chosen(x):
            cls = net.original_model(x)["pre_logits"]
            return net.model(x, cls_features=cls)["prompt_idx"]

    elif name == "dualprompt":
        from models.dualprompt import DualPrompt
        from models.dualprompt_utils.model import Model
        from models.dualprompt_utils.vision_transformer import VisionTransformer

        args.__dict__.update(
            pull_constraint=True,
            pull_constraint_coeff=p["pull_constraint_coeff"],
            top_k=p["top_k"],
            size=p["size"],
            use_prefix_tune_for_e_prompt=True,
            use_permute_fix=True,
        )
        net = Model.__new__(Model)
        nn.Module.__init__(net)
        net.original_model = VisionTransformer(num_classes=n_classes, args=args, **vit_size)
        net.model = VisionTransformer(
            num_classes=n_classes,
            prompt_length=p["length"],
            embedding_key="cls",
            prompt_init="uniform",
            prompt_pool=True,
            prompt_key=True,
            pool_size=p["size"],
            top_k=p["top_k"],
            batchwise_prompt=False,
            prompt_key_init="uniform",
            head_type="token",
            use_prompt_mask=True,
            use_g_prompt=True,
            g_prompt_length=p["g_prompt_length"],
            g_prompt_layer_idx=p["g_prompt_layer_idx"],
            use_prefix_tune_for_g_prompt=True,
            use_e_prompt=True,
            e_prompt_layer_idx=p["e_prompt_layer_idx"],
            use_prefix_tune_for_e_prompt=True,
            same_key_value=False,
            args=args,
            **vit_size,
        )
        load(net.original_model, weights)
        load(net.model, weights)
        if initial is not None:
            with torch.no_grad():
                net.model.g_prompt.copy_(initial["g_prompt"])
                net.model.e_prompt.prompt.copy_(initial["e_prompt"])
                net.model.e_prompt.prompt_key.copy_(initial["e_key"])
        freeze = ("blocks", "patch_embed", "cls_token", "norm", "pos_embed")
        for n_, q in net.model.named_parameters():
            q.requires_grad = not n_.startswith(freeze)
        net.original_model.requires_grad_(False)
        method = DualPrompt.__new__(DualPrompt)
        head = net.model.head

        def chosen(x):
            cls = net.original_model(x)["pre_logits"]
            return net.model(x, task_id=-1, cls_features=cls, train=False)["prompt_idx"]

    else:
        import models.coda_prompt_utils.vit as coda_vit
        from models.coda_prompt import CodaPrompt as CodaMethod

        class CopiedZeros:  # see DEVIATIONS: on a CPU, .to(device) keeps the leaf
            def __getattr__(self, attribute):
                return getattr(torch, attribute)

            @staticmethod
            def zeros(*args, **kwargs):
                return torch.zeros(*args, **kwargs).clone()

        coda_vit.torch = CopiedZeros()
        from models.coda_prompt_utils.model import CodaPrompt, Model
        from models.coda_prompt_utils.vit import VisionTransformer

        args.__dict__.update(mu=1.0, virtual_bs_iterations=1)
        net = Model.__new__(Model)
        nn.Module.__init__(net)
        net.task_id = 0
        net.feat = VisionTransformer(drop_path_rate=0, **vit_size)
        load(net.feat, weights)
        net.feat.requires_grad_(False)
        width = vit_size["embed_dim"]
        net.last = nn.Linear(width, n_classes)
        coda = [p["pool_size"], p["prompt_len"], p["ortho_mu"]]
        net.prompt = CodaPrompt(width, p.get("tasks", TASKS), coda, width)
        for layer in net.prompt.e_layers if initial is not None else []:
            for which in ("p", "k", "a"):
                setattr(net.prompt, f"e_{which}_{layer}", nn.Parameter(initial[f"{which}_{layer}"]))
        method = CodaMethod.__new__(CodaMethod)
        head = net.last
        chosen = None

    if initial is not None:
        with torch.no_grad():
            head.weight.copy_(initial["head.weight"])
            head.bias.copy_(initial["head.bias"])
    nn.Module.__init__(method)
    method.net, method.args, method.loss = net, args, nn.CrossEntropyLoss()
    method.dataset = Offsets()
    method._current_task, method._epoch_iteration = 0, 0
    method.offset_1, method.offset_2 = 0, classes_per_task
    if name == "coda_prompt":
        method.opt = method.get_optimizer()

    return method, chosen


def reference_side(inputs_path: str, mammoth: str, out_path: str) -> None:
    """Run in Mammoth's Python: its modules, our weights and batches, its observe()."""
    import torch

    import_mammoth(mammoth)
    torch.set_num_threads(1)
    data = torch.load(inputs_path, weights_only=False)
    name, vit_size = data["method"], dict(VIT_SIZE)
    method, chosen = reference_method(
        name, data["params"], data["n_classes"], vit_size, data["weights"], data["initial"]
    )
    net = method.net

    def test_logits(x, t):
        method.net.eval()
        with torch.no_grad():
            method._n_seen_classes = method.offset_2 = 2 * (t + 1)
            out = method.forward(x)
        method.net.train()
        return out

    tests = data["tests"]
    result = {"initial_logits": [test_logits(x, 0) for x, _ in tests], "losses": [], "gram": []}
    if chosen is not None:
        with torch.no_grad():
            result["chosen_before"] = torch.cat([chosen(x) for x, _ in tests])
    for t, batches in enumerate(data["batches"]):
        method._current_task = t
        method._n_past_classes, method._n_seen_classes = 2 * t, 2 * (t + 1)
        if name == "coda_prompt" and t > 0:
            torch.set_rng_state(data["generator_states"][t])  # the lab's generator's state
        method.begin_task(None)
        if name == "coda_prompt" and t > 0:
            result["gram"].append(
                {
                    f"{w}_{layer}": getattr(net.prompt, f"e_{w}_{layer}").detach().clone()
                    for layer in net.prompt.e_layers
                    for w in ("p", "k", "a")
                }
            )
        method.net.train()
        losses = []
        for x, y in batches:
            losses.append(method.observe(x, y, x))
            method._epoch_iteration += 1
        method._epoch_iteration = 0
        result["losses"].append(losses)
    result["unit"] = []
    if name == "coda_prompt":
        from models.coda_prompt_utils import gram_schmidt

        for trained, state, start, end in data["unit"]:
            torch.set_rng_state(state)
            result["unit"].append(gram_schmidt(trained.clone(), start, end).detach())
    correct = [(test_logits(x, TASKS - 1).argmax(1) == y).float().mean().item() for x, y in tests]
    result["accuracy"] = sum(correct) / len(correct)
    if chosen is not None:
        with torch.no_grad():
            method.net.eval()
            result["chosen_after"] = torch.cat([chosen(x) for x, _ in tests])
    torch.save(result, out_path)


# ---------------------------------------------------------------- the lab's side


def pretrained_weights(path: Path) -> None:
    """test_vit at 32 px trained 300 steps on digits (Adam), saved without its head."""
    import timm
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    x = F.interpolate(x, size=32, mode="bilinear").expand(-1, 3, -1, -1)
    x = (x - 0.5) / 0.5
    y = torch.tensor(digits.target)
    model = timm.create_model("test_vit", img_size=32, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(300):
        idx = torch.randint(len(y), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.reset_classifier(0)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def lab_side(name: str, weights: Path, steps: int, work: Path):
    """The lab's run on the first TASKS tasks; the inputs file for Mammoth's side."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import compose_config

    from lab import finetune as ft
    from lab.config import validate
    from lab.engine import TrainSettings, train_task
    from lab.experiment import build, seed_everything
    from lab.optim import OptimizerSettings, make_optimizer

    params = METHODS[name]
    overrides = [
        "benchmark=split_fmnist",
        "benchmark.shuffle_classes=false",
        "model=timm",
        "model.arch=test_vit",
        "model.input_size=32",
        f"model.weights={weights}",
        f"strategy={name}",
        "logger.mode=disabled",
        *(f"strategy.{k}={v}" for k, v in params.items()),
    ]
    config = validate(compose_config(overrides))
    seed_everything(0)
    stream, model, strategy = build(config, torch.device("cpu"))
    stream.tasks = stream.tasks[:TASKS]
    strategy.attach(model, stream)
    finetune = ft.Finetune(**config["finetune"])
    ft.apply(model, finetune)
    vit_state = {k: v.clone() for k, v in model.backbone.model.state_dict().items()}
    prompts = {k: v.detach().clone() for k, v in model.backbone.prompts.named_parameters()}
    initial = {**prompts, "head.weight": model.heads[0].weight.detach().clone()}
    initial["head.bias"] = model.heads[0].bias.detach().clone()
    for task in stream.tasks:
        assert task.outputs == [2 * task.id, 2 * task.id + 1], task.outputs
    tests = [(t.test_x[:200], t.test_y[:200]) for t in stream.tasks]

    # the batches the engine will draw: a copy of its generator, drawn as it draws
    generator = torch.Generator().manual_seed(0)
    preview = torch.Generator().manual_seed(0)
    batches = []
    for task in stream.tasks:
        order = torch.randperm(len(task.train_y), generator=preview)
        picks = [order[i * BATCH : (i + 1) * BATCH] for i in range(steps)]
        batches.append([(task.train_x[i], task.train_y[i]) for i in picks])

    @torch.no_grad()
    def test_logits(t):
        model.eval()
        return [model(x) for x, _ in tests]

    def chosen():
        model.eval()
        with torch.no_grad():
            if name == "l2p":
                return torch.cat([strategy.chosen(model, x) for x, _ in tests])
            if name == "dualprompt":
                q = [strategy.match(model.backbone.prompts, strategy_query(x))[0] for x, _ in tests]
                return torch.cat(q)
        return None

    def strategy_query(x):
        from lab.strategies.prompting import query

        return query(strategy.vit, x)

    strategy.before_task(model, stream.tasks[0], stream.tasks[:1])  # task 0's classes seen
    result = {"initial_logits": test_logits(0), "chosen_before": chosen(), "losses": []}
    model.heads[0].seen.zero_()
    # the strategy generator's state as each task starts (Mammoth's Gram-Schmidt draws from
    # the global generator: set to the same state there), and CODA's components then
    states, gram = [], []
    original = strategy.before_task

    def recording(model_, task, seen):
        states.append(strategy.generator.get_state())
        original(model_, task, seen)
        if name == "coda_prompt" and task.id > 0:
            prompts_now = model.backbone.prompts.named_parameters()
            gram.append({k: v.detach().clone() for k, v in prompts_now})

    strategy.before_task = recording
    settings = TrainSettings(iterations=steps, batch_size=BATCH)
    for i, task in enumerate(stream.tasks):
        groups = ft.param_groups(model, finetune, LR)
        optimizer = make_optimizer(groups, OptimizerSettings(name="adam", lr=LR))
        losses = train_task(
            model, strategy, task, stream.tasks[: i + 1], optimizer, settings, generator, "class"
        )
        result["losses"].append(losses)
    correct = [
        (y_hat.argmax(1) == y).float().mean().item()
        for y_hat, (_, y) in zip(test_logits(TASKS - 1), tests, strict=True)
    ]
    result["accuracy"] = sum(correct) / len(correct)
    result["chosen_after"] = chosen()
    result["gram"] = gram
    unit = []
    if name == "coda_prompt":  # Gram-Schmidt alone, on the trained components, both sides
        from lab.strategies.coda_prompt import gram_schmidt

        state = torch.Generator().manual_seed(1).get_state()
        for which in ("p_0", "k_0"):
            trained = getattr(model.backbone.prompts, which).detach().clone()
            start, end = strategy.span(TASKS - 1)
            drawn = torch.Generator()
            drawn.set_state(state)
            unit.append((trained, state, start, end, gram_schmidt(trained, start, end, drawn)))
    result["unit"] = unit
    frozen = all(torch.equal(v, vit_state[k]) for k, v in model.backbone.model.state_dict().items())
    result["frozen"] = frozen
    mapped = dict(initial)
    if name == "l2p":
        mapped = {"prompt": initial["prompt"], "key": initial["key"], **_head(initial)}
    elif name == "coda_prompt":
        mapped = {k: v for k, v in initial.items()}
    inputs = {
        "method": name,
        "params": {**strategy.__dict__, **params, **_dualprompt_params(strategy)},
        "weights": torch.load(weights, weights_only=True),
        "n_classes": model.heads[0].out_features,
        "initial": mapped,
        "tests": tests,
        "batches": batches,
        "generator_states": states,
        "unit": [u[:4] for u in unit],
    }
    inputs["params"] = {k: v for k, v in inputs["params"].items() if _plain(v)}
    path = work / f"{name}_inputs.pt"
    torch.save(inputs, path)
    return result, path


def _head(initial):
    return {"head.weight": initial["head.weight"], "head.bias": initial["head.bias"]}


def _dualprompt_params(strategy) -> dict:
    if strategy.name != "dualprompt":
        return {}
    return {
        "g_prompt_length": strategy.g_length,
        "g_prompt_layer_idx": strategy.g_layers,
        "e_prompt_layer_idx": strategy.e_layers,
    }


def _plain(value) -> bool:
    return isinstance(value, int | float | bool | str | list | tuple)


# ---------------------------------------------------------------- the checks


def compare(name: str, ours: dict, theirs: dict) -> list[tuple]:
    import torch

    rows = []
    diff = max(
        (a[:, : b.shape[1]] - b).abs().max().item()
        for a, b in zip(ours["initial_logits"], theirs["initial_logits"], strict=True)
    )
    rows.append(
        (
            name,
            "test logits before training, max abs diff",
            f"{diff:.1e}",
            "0",
            "1e-5",
            diff <= 1e-5,
        )
    )
    if ours["chosen_before"] is not None:
        for when in ("before", "after"):
            a, b = ours[f"chosen_{when}"], theirs[f"chosen_{when}"]
            same = (a.sort(1).values == b.sort(1).values).all(1).float().mean().item()
            need = 1.0 if when == "before" else 0.99
            rows.append(
                (
                    name,
                    f"same prompts chosen on the test images, {when} training",
                    f"{same:.3f}",
                    "1.000",
                    f">= {need:.2f}",
                    same >= need,
                )
            )
    for t, (a, b) in enumerate(zip(ours["gram"], theirs["gram"], strict=True)):
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        # after training, the earlier tasks' components carry the two runs' float drift
        tolerance = 1e-5 if t == 0 else 1e-4
        rows.append(
            (
                name,
                f"components as task {t + 1} starts (Gram-Schmidt), max abs diff",
                f"{diff:.1e}",
                "0",
                f"{tolerance:.0e}" + (" (drift of training)" if t else ""),
                diff <= tolerance,
            )
        )
    for (*_, start, end, a), b in zip(ours["unit"], theirs["unit"], strict=True):
        diff = (a - b).abs().max().item()
        rows.append(
            (
                name,
                f"Gram-Schmidt of rows {start}-{end - 1} of {tuple(a.shape)}, same draws",
                f"{diff:.1e}",
                "0",
                "1e-5",
                diff <= 1e-5,
            )
        )
    step0 = ours["losses"][0][0], theirs["losses"][0][0]
    rows.append(
        (
            name,
            "loss at step 0",
            f"{step0[0]:.6f}",
            f"{step0[1]:.6f}",
            "1e-5",
            abs(step0[0] - step0[1]) <= 1e-5,
        )
    )
    last = ours["losses"][-1][-1], theirs["losses"][-1][-1]
    rows.append(
        (name, "loss at the last step", f"{last[0]:.4f}", f"{last[1]:.4f}", "(shown)", None)
    )
    acc = ours["accuracy"], theirs["accuracy"]
    rows.append(
        (
            name,
            f"mean test accuracy after {TASKS} tasks",
            f"{100 * acc[0]:.1f}",
            f"{100 * acc[1]:.1f}",
            "1 point",
            abs(acc[0] - acc[1]) <= 0.01,
        )
    )
    rows.append(
        (
            name,
            "the ViT's weights unchanged (frozen)",
            str(ours["frozen"]),
            "-",
            "True",
            ours["frozen"],
        )
    )
    del torch
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mammoth", default=os.environ.get("MAMMOTH_ROOT"))
    parser.add_argument("--pilot", default=os.environ.get("PILOT_ROOT"))
    parser.add_argument(
        "--mammoth-python",
        default=os.environ.get("MAMMOTH_PYTHON"),
    )
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per task")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--reference-side", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_side:
        reference_side(args.reference_side[0], args.mammoth, args.reference_side[1])
        return 0
    if not args.mammoth or not (Path(args.mammoth) / "models" / "l2p.py").is_file():
        print(
            f"no Mammoth checkout (--mammoth or MAMMOTH_ROOT): git clone {URL} && git -C "
            f"mammoth checkout {COMMIT}, then --mammoth mammoth"
        )
        return 2
    if not args.mammoth_python or not Path(args.mammoth_python).is_file():
        print(
            f"no Python for Mammoth (--mammoth-python or MAMMOTH_PYTHON: {args.mammoth_python}): "
            "python -m venv "
            "refenv && refenv/bin/pip install torch torchvision timm==0.9.8 numpy && "
            "refenv/bin/pip install --no-deps kornia kornia_rs"
        )
        return 2
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = work / "test_vit_digits.pth"
        pretrained_weights(weights)
        for name in args.methods:
            ours, inputs = lab_side(name, weights, args.steps, work)
            out = work / f"{name}_reference.pt"
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run(
                [
                    args.mammoth_python,
                    __file__,
                    "--mammoth",
                    args.mammoth,
                    "--reference-side",
                    str(inputs),
                    str(out),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(done.stderr[-4000:])
                return 1
            rows += compare(name, ours, torch.load(out, weights_only=False))
    table = [
        "| method | check | ours | reference | tolerance | within? |",
        "|---|---|---|---|---|---|",
    ]
    for method, check, a, b, tol, ok in rows:
        mark = "-" if ok is None else ("yes" if ok else "**no**")
        table.append(f"| {method} | {check} | {a} | {b} | {tol} | {mark} |")
    text = "\n".join(table)
    text += "\n\nKnown deviations of the reference (Mammoth " + COMMIT[:7] + "):\n\n"
    text += "\n".join(f"- {m}, `{where}`: {what}" for m, where, what in DEVIATIONS)
    text += f"\n\n({TASKS} tasks of Split Fashion-MNIST, {args.steps} steps of {BATCH} per task, "
    text += f"Adam lr {LR}; {time.perf_counter() - started:.0f} s on one CPU thread)\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if any(ok is False for *_, ok in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
