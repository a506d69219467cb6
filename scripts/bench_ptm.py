"""Seconds per training epoch of L2P and CODA-Prompt: the lab's against Mammoth's loop.

    python scripts/bench_ptm.py --device cuda --samples 5000            # a GPU session
    python scripts/bench_ptm.py --arch test_vit --input-size 32 --samples 64   # a CPU smoke run

One epoch of the first task of a CIFAR-100-shaped stream (100 classes in 10 tasks, so the
task's 10 classes), on synthetic images at the ViT's input size (vit_base_patch16_224:
224 px) with random weights (no hub), batch 128 as the references train: the lab's
engine (lab.engine.train_task, the method attached as lab-run attaches it) and Mammoth's
`observe` (its ContinualModel, built as scripts/parity_ptm_prompt.py builds it, in
Mammoth's own Python: --mammoth, --mammoth-python, as there), each in its own process,
each after one warm-up step; the device synchronised before the clock is read. Prints a
markdown table with the ratio (Mammoth's seconds / the lab's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSES, TASKS, TASK_CLASSES = 100, 10, 10
METHODS = ("l2p", "coda_prompt")


def data(samples: int, size: int, device):
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(samples, 3, size, size, generator=generator).to(device)
    y = torch.randint(TASK_CLASSES, (samples,), generator=generator).to(device)
    return x, y


def params_for(name: str, width: int) -> dict:
    """The reference's defaults; CODA's pool cut to the width where it is narrower."""
    if name == "l2p":
        return {"pool_size": 10, "length": 5, "top_k": 5, "pull_constraint_coeff": 0.1}
    pool = 100 if width >= 100 else (width // TASKS) * TASKS
    return {"pool_size": pool, "prompt_len": 8, "ortho_mu": 0.0, "tasks": TASKS}


def synchronise(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(name: str, arch: str, size: int, samples: int, batch: int, device) -> float:
    import torch

    sys.path.insert(0, str(HERE.parent))
    from lab.data import Stream, Task
    from lab.engine import TrainSettings, train_task
    from lab.models import attach_heads
    from lab.models.timm_backbone import TimmBackbone
    from lab.optim import OptimizerSettings, make_optimizer
    from lab.strategies import build_strategy

    torch.manual_seed(0)
    backbone = TimmBackbone((3, size, size), arch, input_size=size)
    model = attach_heads(backbone, [CLASSES]).to(device)
    params = params_for(name, backbone.out_features)
    params.pop("tasks", None)
    strategy = build_strategy(name, **params)
    x, y = data(samples, size, device)
    task = Task(0, list(range(10)), list(range(10)), list(range(10)), x, y, x[:1], y[:1], "")
    stream = Stream(tasks=[task] * TASKS, head_sizes=[CLASSES], scenario="class")
    strategy.attach(model, stream)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    settings = OptimizerSettings(name="adam", lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    warm = TrainSettings(iterations=1, batch_size=batch)
    train_task(
        model, strategy, task, [task], make_optimizer(trainable, settings), warm, generator, "class"
    )
    synchronise(device)
    started = time.perf_counter()
    epoch = TrainSettings(epochs=1, batch_size=batch)
    train_task(
        model,
        strategy,
        task,
        [task],
        make_optimizer(trainable, settings),
        epoch,
        generator,
        "class",
    )
    synchronise(device)
    return time.perf_counter() - started


def vit_size_of(arch: str, size: int) -> dict:
    """The sizes of timm's `arch` at `size` px, for Mammoth's VisionTransformer (its timm,
    0.9.8, may not know the name: test_vit)."""
    import timm

    vit = timm.create_model(arch, pretrained=False, img_size=size, num_classes=0)
    width = vit.embed_dim
    return {
        "img_size": size,
        "patch_size": vit.patch_embed.patch_size[0],
        "embed_dim": width,
        "depth": len(vit.blocks),
        "num_heads": vit.blocks[0].attn.num_heads,
        "mlp_ratio": vit.blocks[0].mlp.fc1.out_features / width,
    }


def reference(name: str, vit_size: dict, samples: int, batch: int, device, mammoth: str):
    import torch

    sys.path.insert(0, str(HERE))
    from parity_ptm_prompt import import_mammoth, reference_method

    import_mammoth(mammoth)
    torch.manual_seed(0)
    width = vit_size["embed_dim"]
    params = params_for(name, width)
    method, _ = reference_method(name, params, CLASSES, vit_size, classes_per_task=TASK_CLASSES)
    method.net.to(device)
    method.device = device
    method._n_past_classes, method._n_seen_classes = 0, TASK_CLASSES
    method.begin_task(None)
    x, y = data(samples, vit_size["img_size"], device)
    order = torch.randperm(samples, generator=torch.Generator().manual_seed(0)).to(device)
    method.net.train()
    method.observe(x[order[:batch]], y[order[:batch]], x[order[:batch]])  # warm-up
    synchronise(device)
    started = time.perf_counter()
    for start in range(0, samples, batch):
        rows = order[start : start + batch]
        method.observe(x[rows], y[rows], x[rows])
        method._epoch_iteration += 1
    synchronise(device)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--mammoth", default=os.environ.get("MAMMOTH_ROOT"))
    parser.add_argument(
        "--mammoth-python",
        default=os.environ.get("MAMMOTH_PYTHON"),
    )
    parser.add_argument("--side", nargs=2, help=argparse.SUPPRESS)  # (ours|reference, method)
    parser.add_argument("--vit-size", help=argparse.SUPPRESS)  # the reference side's, JSON
    args = parser.parse_args()
    import torch

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run = (args.arch, args.input_size, args.samples, args.batch_size, device)
    if args.side:
        side, name = args.side
        if side == "ours":
            seconds = ours(name, *run)
        else:
            vit_size = json.loads(args.vit_size)
            seconds = reference(name, vit_size, *run[2:], args.mammoth)
        print(json.dumps({"seconds": seconds}))
        return 0
    if not args.mammoth or not (Path(args.mammoth) / "models" / "l2p.py").is_file():
        print(
            "no Mammoth checkout (--mammoth or MAMMOTH_ROOT): git clone "
            "https://github.com/aimagelab/mammoth && git -C mammoth checkout "
            "e75a491c69fd729edeb01431afb753d9157d9a81"
        )
        return 2
    rows = [
        "| method | samples | lab s/epoch | Mammoth s/epoch | Mammoth / lab |",
        "|---|---|---|---|---|",
    ]
    if not args.mammoth_python or not Path(args.mammoth_python).is_file():
        print(
            "no Python for Mammoth (--mammoth-python or MAMMOTH_PYTHON): a venv with timm==0.9.8; "
            "scripts/parity_ptm_prompt.py's docstring gives the commands"
        )
        return 2
    sizes = vit_size_of(args.arch, args.input_size)
    common = [
        "--samples", str(args.samples), "--device", args.device, "--arch", args.arch,
        "--input-size", str(args.input_size), "--batch-size", str(args.batch_size),
        "--mammoth", args.mammoth, "--vit-size", json.dumps(sizes),
    ]  # fmt: skip
    for name in args.methods:
        seconds = {}
        for side, python in (("ours", sys.executable), ("reference", args.mammoth_python)):
            done = subprocess.run(
                [python, __file__, *common, "--side", side, name], capture_output=True, text=True
            )
            if done.returncode != 0:
                print(done.stderr[-3000:])
                return 1
            seconds[side] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        ratio = seconds["reference"] / seconds["ours"]
        rows.append(
            f"| {name} | {args.samples} | {seconds['ours']:.2f} | {seconds['reference']:.2f} "
            f"| {ratio:.2f} |"
        )
    print("\n".join(rows))
    print(f"\n({args.arch} at {args.input_size} px, batch {args.batch_size}, {args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
