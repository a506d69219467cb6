"""The evidence of docs/hpo.md: the methods table with validation-tuned hyperparameters
against the defaults, on Split digits (class-IL), on one core.

    OMP_NUM_THREADS=1 python scripts/hpo_evidence.py [--out evidence] [--trials 20]

For each method a search on the validation slices (`lab-run -m +hpo=NAME`; replay
through +hpo=lr_epochs), then `lab-report --best`'s command for it (seeds 0, 1, 2 on the
test sets), then the defaults over the same seeds and data (the same held-out slice), then
one report of all of them. Every step is resumable: run it again and it goes on. Prints
the wall time of each step and writes OUT/budget.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

# (search preset, strategy, the preset's extra overrides)
SEARCHES = [
    ("ewc", "ewc", []),
    ("lwf", "lwf", []),
    ("si", "si", []),
    ("mas", "mas", []),
    ("der", "der", []),
    ("lr_epochs", "replay", ["strategy=replay"]),
]
COMMON = ["benchmark=split_digits", "scenario=class", "logger=none"]


def run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + shlex.join(command) + "\n")
        f.flush()
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(command)}; see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("evidence"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--fraction", type=float, default=0.2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    data = [f"data.validation_fraction={args.fraction}"]
    budget = {"trials": args.trials, "validation_fraction": args.fraction, "steps": {}}
    tested = []
    for preset, strategy, extra in SEARCHES:
        sweep = args.out / "hpo" / strategy
        seconds = run(
            [
                "lab-run",
                "-m",
                f"+hpo={preset}",
                *extra,
                *COMMON,
                *data,
                f"hpo.trials={args.trials}",
                f"hydra.sweep.dir={sweep}",
            ],
            log,
        )
        budget["steps"][f"search {strategy}"] = seconds
        print(f"search {strategy}: {seconds:.0f} s", flush=True)
        best = subprocess.run(
            ["lab-report", str(sweep), "--best"], capture_output=True, text=True, check=True
        ).stdout
        (args.out / f"best_{strategy}.txt").write_text(best)
        command = next(line for line in best.splitlines() if line.strip().startswith("test:"))
        words = shlex.split(command.split("test:", 1)[1])
        seconds = run(words, log)
        budget["steps"][f"test {strategy}"] = seconds
        print(f"test {strategy}: {seconds:.0f} s", flush=True)
        tested.append(str(sweep) + "-test")
    strategies = ",".join(["naive", *(s for _, s, _ in SEARCHES)])
    defaults = args.out / "defaults"
    seconds = run(
        [
            "lab-run",
            "-m",
            f"strategy={strategies}",
            "seed=0,1,2",
            *COMMON,
            *data,
            "eval.split=test",
            f"hydra.sweep.dir={defaults}",
        ],
        log,
    )
    budget["steps"]["defaults"] = seconds
    print(f"defaults: {seconds:.0f} s", flush=True)
    subprocess.run(
        ["lab-report", str(defaults), *tested, "--out", str(args.out / "report")], check=True
    )
    budget["total_s"] = sum(budget["steps"].values())
    (args.out / "budget.json").write_text(json.dumps(budget, indent=1))
    print(f"total: {budget['total_s']:.0f} s")


if __name__ == "__main__":
    main()
