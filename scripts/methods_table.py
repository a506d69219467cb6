"""The methods table: ACC and forgetting of every strategy in every scenario, over seeds.

    python scripts/methods_table.py search     # strength grid on a held-out seed
    python scripts/methods_table.py table      # the table with the configured defaults
    python scripts/methods_table.py stability  # the defaults on every benchmark here

Split Fashion-MNIST (5 tasks of 2 classes), MLP 2x400, the default training regime
(SGD, lr 0.01, momentum 0.9, batch 128, 2 epochs per task). `search` runs each method's
strength grid on seed 100, a seed the table does not use, and prints the best value per
scenario; `table` runs the configs in conf/strategy/ on seeds 0, 1, 2. `stability` runs
every strategy at its default strength (the benchmark's own where it sets one, in
benchmark.strengths) on each benchmark whose data this machine has, in every scenario,
and prints the largest mean training loss of a task: a default must never make training
explode (non-finite, or above 10, where cross-entropy starts near log 10 = 2.3). Every run
leaves its run directory under --out.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from lab.config import validate
from lab.experiment import run_experiment
from lab.report.stats import describe
from lab.run import config_dir

SCENARIOS = ("task", "domain", "class")
METHODS = (
    *("naive", "joint", "ewc", "online_ewc", "lwf", "l2", "weight_decay"),
    *("si", "mas", "replay", "der", "agem"),
)
SEARCH_SEED = 100
GRIDS = {
    "ewc": ("lambda", [1, 10, 100, 1e3, 1e4, 1e5, 1e6]),
    "online_ewc": ("lambda", [1, 10, 100, 1e3, 1e4, 1e5, 1e6]),
    "lwf": ("alpha", [0.5, 1, 2, 4, 8]),
    "l2": ("lambda", [0.01, 0.1, 1, 10, 100]),
    "weight_decay": ("strength", [1e-4, 1e-3, 1e-2, 3e-2, 1e-1]),
    "si": ("lambda", [0.01, 0.1, 1, 10, 100]),
    "mas": ("lambda", [0.1, 1, 10, 100, 1000]),
    "der": ("alpha", [0.05, 0.1, 0.2, 0.5, 1]),
}
# what the stability table names for the methods without a strength: their memory
MEMORY = {"replay": "mem_size", "agem": "patterns_per_exp"}


def run_one(job: tuple[list[str], str]) -> dict:
    overrides, run_dir = job
    torch.set_num_threads(1)  # one thread per worker: parallel runs must not oversubscribe
    logging.disable(logging.INFO)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        overrides = ["progress=false", "logger=none", *overrides]
        config = validate(compose("config", overrides=overrides))
    return run_experiment(config, run_dir)


def run_all(jobs: list[tuple[list[str], str]], workers: int) -> list[dict]:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(run_one, jobs))
    print(f"{len(jobs)} runs in {time.perf_counter() - started:.0f} s")
    return results


def mean_std(values: list[float]) -> str:
    """Mean ± sample std in %, the mean alone for one seed (as lab-report shows them)."""
    cell = describe(values)
    spread = f" ± {100 * cell.std:4.1f}" if cell.std is not None else ""
    return f"{100 * cell.mean:5.1f}{spread}"


def search(out: Path, workers: int, methods: list[str]) -> None:
    grids = {m: GRIDS[m] for m in methods if m in GRIDS}
    jobs, keys = [], []
    for scenario in SCENARIOS:
        for method, (name, values) in grids.items():
            for value in values:
                overrides = [f"strategy={method}", f"strategy.{name}={value}"]
                overrides += [f"scenario={scenario}", f"seed={SEARCH_SEED}"]
                jobs.append((overrides, str(out / "search" / scenario / f"{method}_{value:g}")))
                keys.append((scenario, method, value))
    results = run_all(jobs, workers)
    print(f"\nstrength search on seed {SEARCH_SEED}: final ACC (%) for each value")
    for scenario in SCENARIOS:
        print(f"\n{scenario}-IL")
        for method, (name, _) in grids.items():
            accs = {
                v: r["metrics"]["acc"]
                for k, r in zip(keys, results, strict=True)
                for v in [k[2]]
                if k[:2] == (scenario, method)
            }
            best = max(accs, key=accs.get)
            cells = "  ".join(f"{v:g}:{100 * a:.1f}" for v, a in accs.items())
            print(f"  {method:13s} {name:9s} {cells}   best {best:g}")


def table(out: Path, workers: int, seeds: list[int], methods: list[str]) -> None:
    jobs, keys = [], []
    for scenario in SCENARIOS:
        for method in methods:
            for seed in seeds:
                overrides = [f"strategy={method}", f"scenario={scenario}", f"seed={seed}"]
                jobs.append((overrides, str(out / "table" / scenario / method / str(seed))))
                keys.append((scenario, method))
    results = run_all(jobs, workers)
    print(f"\nSplit Fashion-MNIST, 5 tasks, MLP 2x400; mean ± std over seeds {seeds} (%)\n")
    print(f"| method | {' | '.join(f'{s}-IL ACC | {s}-IL forgetting' for s in SCENARIOS)} |")
    print("|---|" + "---|" * (2 * len(SCENARIOS)))
    for method in methods:
        cells = []
        for scenario in SCENARIOS:
            runs = [r for k, r in zip(keys, results, strict=True) if k == (scenario, method)]
            cells.append(mean_std([r["metrics"]["acc"] for r in runs]))
            cells.append(mean_std([r["metrics"]["forgetting"] for r in runs]))
        print(f"| {method} | " + " | ".join(cells) + " |")


STABILITY_BENCHMARKS = ("split_digits", "split_fmnist", "permuted_fmnist", "rotated_fmnist")
EXPLODED = 10.0  # a task's mean training loss above this is not training


def stability(
    out: Path, workers: int, seeds: list[int], benchmarks: list[str], methods: list[str]
) -> None:
    jobs, keys = [], []
    for benchmark in benchmarks:
        for method in methods:
            for scenario in SCENARIOS:
                for seed in seeds:
                    overrides = [f"benchmark={benchmark}", f"strategy={method}"]
                    overrides += [f"scenario={scenario}", f"seed={seed}"]
                    path = out / "stability" / benchmark / method / scenario / str(seed)
                    jobs.append((overrides, str(path)))
                    keys.append((benchmark, method, scenario))
    results = run_all(jobs, workers)
    print(f"\nlargest mean training loss of a task, over seeds {seeds} (! = exploded)\n")
    print(f"| benchmark | method | strength | {' | '.join(f'{s}-IL' for s in SCENARIOS)} |")
    print("|---|---|---:|" + "---:|" * len(SCENARIOS))
    unstable = 0
    for benchmark in benchmarks:
        for method in methods:
            name = MEMORY.get(method) or GRIDS[method][0]
            cells, strength = [], None
            for scenario in SCENARIOS:
                runs = [
                    r
                    for k, r in zip(keys, results, strict=True)
                    if k == (benchmark, method, scenario)
                ]
                strength = runs[0]["config"]["strategy"][name]
                losses = [loss for r in runs for loss in r["train_loss"]]
                worst = max(float("inf") if loss is None else loss for loss in losses)
                bad = worst > EXPLODED or any(r["diverged"] for r in runs)
                unstable += bad
                cells.append(f"{worst:.2g}{' !' if bad else ''}")
            print(f"| {benchmark} | {method} | {name}={strength:g} | " + " | ".join(cells) + " |")
    print(f"\n{unstable} unstable (benchmark, method, scenario) cells")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["search", "table", "stability"])
    parser.add_argument("--out", type=Path, default=Path("outputs/methods_table"))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--benchmarks", nargs="+", default=list(STABILITY_BENCHMARKS), help="stability only"
    )
    parser.add_argument(
        "--methods", nargs="+", help="default: every method (table), every grid (search, stability)"
    )
    args = parser.parse_args()
    if args.methods is None:
        args.methods = list(METHODS) if args.mode == "table" else list(GRIDS)
    if args.mode == "search":
        search(args.out, args.jobs, args.methods)
    elif args.mode == "stability":
        stability(args.out, args.jobs, args.seeds, args.benchmarks, args.methods)
    else:
        table(args.out, args.jobs, args.seeds, args.methods)


if __name__ == "__main__":
    main()
