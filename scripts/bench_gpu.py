"""Training and evaluation throughput on a GPU: the lab's input path against the peers' feed.

    python scripts/bench_gpu.py                       # the three workloads, on cuda
    python scripts/bench_gpu.py --quick --device cpu  # a smoke run with timm's test models

For each workload it prints training and evaluation images/s, peak GPU memory and model
FLOP utilisation (FLOPs of a training step counted by torch.utils.flop_counter, against
the GPU's dense bf16 peak), for four loops over the same synthetic images:

  lab bf16 / lab fp32   the lab's own loop (lab.engine.train_task and evaluate): the
                        uint8 images held once on the device, each batch indexed, resized
                        to the model's size and normalised there (lab.data.inputs);
  ref fp32 / ref bf16   the loop as Mammoth and LAMDA-PILOT feed it: a torch DataLoader
                        with worker processes and pin_memory, per-sample transforms
                        (PIL image, Resize to the model's size, ToTensor, Normalize).

Workloads (synthetic images of each benchmark's shape, for timing only):
  a  Split CIFAR-100 (32 px), torchvision's ResNet-18 for small inputs, full fine-tuning;
  b  ViT-B/16 at 224 px (timm vit_base_patch16_224, random weights), full fine-tuning;
  c  the same ViT-B/16 with LoRA (rank 8 on qkv, proj, fc1, fc2).

Targets (issue 26): ViT-B/16 training at >= 40% MFU in bf16; lab >= 2x the reference's
images/s at its default precision (fp32); lab bf16 >= 1.2x the reference in bf16.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lab import finetune as ft
from lab.data import build_stream
from lab.data.datasets import Dataset
from lab.engine import TrainSettings, evaluate, train_task
from lab.experiment import place_backbone
from lab.models import attach_heads, build_backbone
from lab.precision import autocast
from lab.strategies import Strategy

# dense bf16 tensor-core peaks (FLOP/s), by a word of the device's name
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


@dataclass
class Workload:
    name: str
    family: str
    options: dict
    train_images: int
    lora: bool = False


def workloads(quick: bool) -> list[Workload]:
    if quick:  # timm's test models: a smoke run on any machine
        return [
            Workload("a", "timm", {"arch": "test_resnet", "input_size": 32}, 2048),
            Workload("b", "timm", {"arch": "test_vit", "input_size": 64}, 2048),
            Workload("c", "timm", {"arch": "test_vit", "input_size": 64}, 2048, lora=True),
        ]
    return [
        Workload("a ResNet-18 32px", "resnet18", {"small_input": True}, 50_000),
        Workload("b ViT-B/16 224px full", "timm", {"arch": "vit_base_patch16_224"}, 20_000),
        Workload("c ViT-B/16 224px LoRA", "timm", {"arch": "vit_base_patch16_224"}, 20_000, True),
    ]


def synthetic(n: int, device: torch.device) -> Dataset:
    """n CIFAR-shaped training images (uint8 32x32 RGB, 100 classes) and n // 5 test ones."""
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    test = torch.randint(0, 256, (n // 5, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 100
    return Dataset("synthetic", train, labels, test, torch.arange(n // 5) % 100).to(device)


def make_model(work: Workload, device: torch.device):
    backbone = build_backbone(work.family, (3, 32, 32), **work.options)
    inputs = place_backbone(backbone, device)
    model = attach_heads(backbone, [100]).to(device)
    if work.lora:
        targets = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]
        ft.apply(model, ft.Finetune(mode="lora", lora={**ft.Finetune().lora, "targets": targets}))
    return model, inputs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_image(model, x: torch.Tensor, precision: str) -> float:
    """FLOPs of one training step (forward and backward) per image."""
    counter = FlopCounterMode(display=False)
    with counter, autocast(precision, x.device):
        model(x).float().logsumexp(1).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def lab_loop(work, data, device, precision, steps, batch) -> dict:
    model, inputs = make_model(work, device)
    (task,) = build_stream(data, "split", "class", 1, 0, inputs=inputs, device=device).tasks
    optimizer = torch.optim.SGD(ft.trainable(model), lr=0.01, momentum=0.9)
    settings = TrainSettings(iterations=5, batch_size=batch, precision=precision)
    generator = torch.Generator().manual_seed(0)
    train_task(model, Strategy(), task, [task], optimizer, settings, generator, "class")  # warm
    flops = flops_per_image(model, task.train_x[:batch], precision)
    settings.iterations = steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    started = time.perf_counter()
    train_task(model, Strategy(), task, [task], optimizer, settings, generator, "class")
    sync(device)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluate(model, [task], batch_size=2 * batch, precision=precision)
    sync(device)
    eval_s = time.perf_counter() - started
    return {
        "train": steps * batch / train_s,
        "eval": len(task.test_y) / eval_s,
        "flops": flops,
    }


class PerSample(torch.utils.data.Dataset):
    """The peers' feed: one PIL image at a time through torchvision's transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, inputs):
        from torchvision import transforms

        self.images, self.labels = images, labels
        interpolation = transforms.InterpolationMode(inputs.interpolation)
        steps = [transforms.Resize(inputs.size, interpolation=interpolation)] if inputs.size else []
        mean, std = inputs.mean or (0.5071, 0.4865, 0.4409), inputs.std or (0.2673, 0.2564, 0.2762)
        self.transform = transforms.Compose(
            [*steps, transforms.ToTensor(), transforms.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i].transpose(1, 2, 0))), self.labels[i]


def reference_loop(work, data, device, precision, steps, batch, workers) -> dict:
    model, inputs = make_model(work, device)
    optimizer = torch.optim.SGD(ft.trainable(model), lr=0.01, momentum=0.9)

    def loader(x, y, shuffle):
        dataset = PerSample(x.cpu().numpy(), y.cpu().numpy(), inputs)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            drop_last=shuffle,
        )

    train = loader(data.train_x, data.train_y, True)
    memory = torch.channels_last if inputs.channels_last else torch.contiguous_format

    def step(x, y):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory)
        with autocast(precision, device):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = iter(train)
    for _ in range(5):  # warm-up: workers started, kernels chosen
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    started, done = time.perf_counter(), 0
    while done < steps:
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(train)
            continue
        step(x, y)
        done += 1
    sync(device)
    train_s = time.perf_counter() - started
    model.eval()
    started, seen = time.perf_counter(), 0
    with torch.inference_mode():
        for x, _ in loader(data.test_x, data.test_y, False):
            with autocast(precision, device):
                model(x.to(device, non_blocking=True).contiguous(memory_format=memory))
            seen += len(x)
    sync(device)
    return {"train": steps * batch / train_s, "eval": seen / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="timm's test models, few steps")
    parser.add_argument("--only", nargs="*", help="workload letters, e.g. b c")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as the peers run it
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    else:
        name, peak = "CPU", None
    steps = 4 if args.quick else args.steps
    print(f"{name}; batch {args.batch}, {steps} timed steps, {args.workers} loader workers")
    print(
        "| workload | loop | train img/s | eval img/s | peak GPU GB | MFU | x ref fp32 "
        "| x ref bf16 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for work in workloads(args.quick):
        if args.only and work.name[0] not in args.only:
            continue
        data = synthetic(work.train_images, device)
        rows = {}
        for loop, precision in (("lab", "bf16"), ("lab", "fp32"), ("ref", "fp32"), ("ref", "bf16")):
            if loop == "lab":
                result = lab_loop(work, data, device, precision, steps, args.batch)
            else:
                result = reference_loop(
                    work, data, device, precision, steps, args.batch, args.workers
                )
            memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0
            rows[(loop, precision)] = result | {"memory": memory}
        flops = rows[("lab", "bf16")]["flops"]
        for (loop, precision), r in rows.items():
            mfu = f"{100 * flops * r['train'] / peak:.0f}%" if peak and precision == "bf16" else "-"
            fp32, bf16 = (r["train"] / rows[("ref", p)]["train"] for p in ("fp32", "bf16"))
            print(
                f"| {work.name} | {loop} {precision} | {r['train']:.0f} | {r['eval']:.0f} "
                f"| {r['memory']:.1f} | {mfu} | {fp32:.2f} | {bf16:.2f} |"
            )
        del data
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
