"""The lab engine against Avalanche on the same experiment, in one process.

    python scripts/bench_vs_avalanche.py [--repeats 3] [--device cpu]
    python scripts/bench_vs_avalanche.py --profile   # where the lab's naive step goes

Split Fashion-MNIST (5 tasks of 2 classes), class-IL, MLP 2x400, SGD (lr 0.01, momentum
0.9), batch 128, 1 epoch per task; naive, EWC (its Fisher included), LwF, SI, MAS,
experience replay, DER++ and A-GEM at their defaults, each through engine=lab and
engine=avalanche from the same initial weights (`--strategies` picks some). Prints per strategy and
engine the median over repeats of the training time (all tasks, EWC's Fisher included),
the total time of the run (data on the device, training, evaluation after every task,
results files), the peak memory above the process's baseline (RSS sampled every 5 ms on
the CPU; torch's peak allocation on a GPU) and the final ACC, then our speed-up.

engine=avalanche's EWC computes its importances one sample at a time, which makes them
our empirical Fisher (lab.avalanche.strategies). The row "ewc, Avalanche's own Fisher"
times Avalanche's EWC as shipped (importances from minibatches of 128, a different
estimator: its ACC is not comparable), so the speed-up is also shown against that. The
same holds for MAS, whose importance engine=avalanche computes one sample at a time (the
paper's): "mas, Avalanche's own importance" times its minibatch estimate.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager

import psutil
import torch
from avalanche.training.plugins import EWCPlugin, MASPlugin
from hydra import compose, initialize_config_dir

from lab.avalanche.strategies import EmpiricalFisher, PerSampleMAS
from lab.config import validate
from lab.engine import train_task
from lab.experiment import build, run_experiment, seed_everything, train_settings
from lab.optim import OptimizerSettings, make_optimizer
from lab.run import config_dir
from lab.strategies import Strategy

SETTINGS = [
    "benchmark=split_fmnist",
    "scenario=class",
    "model=mlp",
    "optimizer=sgd",
    "train.epochs=1",
    "train.batch_size=128",
    "logger=none",
    "progress=false",
]
STRATEGIES = {
    "naive": [],
    "ewc": ["strategy.lambda=100"],
    "lwf": [],
    "si": [],
    "mas": [],
    "replay": [],
    "der": [],
    "agem": [],
}


@contextmanager
def peak_memory(device: torch.device):
    """Yields a dict whose "mb" is, on exit, the peak memory above the entry level."""
    found = {"mb": 0.0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield found
        found["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    process, done = psutil.Process(), threading.Event()
    base = peak = process.memory_info().rss

    def sample():
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    yield found
    done.set()
    sampler.join()
    found["mb"] = (max(peak, process.memory_info().rss) - base) / 2**20


@contextmanager
def avalanche_own_importance(plugin: type, method: str, shipped: type):
    """Avalanche's importances as shipped (from minibatches of train_mb_size) in place
    of the per-sample ones engine=avalanche maps ours onto."""
    ours = getattr(plugin, method)
    setattr(plugin, method, getattr(shipped, method))
    try:
        yield
    finally:
        setattr(plugin, method, ours)


OWN_IMPORTANCE = {  # strategy: (the row's name, what makes Avalanche's as shipped)
    "ewc": ("Fisher", (EmpiricalFisher, "compute_importances", EWCPlugin)),
    "mas": ("importance", (PerSampleMAS, "_get_importance", MASPlugin)),
}


def make_config(overrides: list[str], device: str) -> dict:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose("config", overrides=[*SETTINGS, f"device={device}", *overrides]))


def profile(device: str) -> None:
    """torch.profiler's top operators over one naive task of the lab engine, and the time
    per step of a bare PyTorch loop (batch by index, forward, backward, SGD step)."""
    from torch.profiler import ProfilerActivity, profile

    config = make_config([], device)
    seed_everything(0)
    stream, model, _ = build(config, torch.device(device))
    task, settings = stream.tasks[0], train_settings(config)

    def one_task():
        optimizer = make_optimizer(model.parameters(), OptimizerSettings(**config["optimizer"]))
        generator = torch.Generator().manual_seed(0)
        train_task(model, Strategy(), task, [task], optimizer, settings, generator, "class")

    one_task()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_task()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps, started = 200, time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, len(task.train_y), (128,))
        loss = torch.nn.functional.cross_entropy(model(task.train_x[index]), task.train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(f"bare PyTorch loop: {1000 * (time.perf_counter() - started) / steps:.2f} ms per step")


def measure(overrides: list[str], device: str) -> dict[str, float]:
    config = make_config(overrides, device)
    with tempfile.TemporaryDirectory() as run_dir, peak_memory(torch.device(device)) as memory:
        started = time.perf_counter()
        results = run_experiment(config, run_dir)
        total = time.perf_counter() - started
    return {
        "train_s": results["timing"]["train_s"],
        "total_s": total,
        "memory_mb": memory["mb"],
        "acc": results["metrics"]["acc"],
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--profile", action="store_true", help="profile the lab's naive step")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    if args.profile:
        profile(args.device)
        return
    measure(["strategy=naive", "benchmark.num_tasks=2"], args.device)  # warm-up: data, imports
    rows = []
    for name in args.strategies:
        overrides = STRATEGIES[name]
        variants = [("lab", ["engine=lab"]), ("avalanche", ["engine=avalanche"])]
        for engine, engine_overrides in variants:
            runs = [
                measure([f"strategy={name}", *overrides, *engine_overrides], args.device)
                for _ in range(args.repeats)
            ]
            rows.append((name, engine, median_of(runs)))
        if name in OWN_IMPORTANCE:
            what, swap = OWN_IMPORTANCE[name]
            with avalanche_own_importance(*swap):
                runs = [
                    measure([f"strategy={name}", *overrides, "engine=avalanche"], args.device)
                    for _ in range(args.repeats)
                ]
            rows.append((name, f"avalanche, own {what}", median_of(runs)))

    threads = torch.get_num_threads()
    print(
        f"Split Fashion-MNIST, class-IL, MLP 2x400, SGD, batch 128, 1 epoch/task; "
        f"{args.device} ({threads} threads); median of {args.repeats} runs"
    )
    print(
        "| strategy | engine | train s | total s | peak MB | final ACC % "
        "| speed-up (train) | speed-up (total) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    lab = {name: m for name, engine, m in rows if engine == "lab"}
    for name, engine, m in rows:
        ours = lab[name]
        speedup = (
            f"{m['train_s'] / ours['train_s']:.1f}x | {m['total_s'] / ours['total_s']:.1f}x"
            if engine != "lab"
            else "- | -"
        )
        print(
            f"| {name} | {engine} | {m['train_s']:.2f} | {m['total_s']:.2f} | "
            f"{m['memory_mb']:.0f} | {100 * m['acc']:.1f} | {speedup} |"
        )


if __name__ == "__main__":
    main()
