"""What probing costs: the linear probes (and CKA) after every task against one training
epoch, on Split Fashion-MNIST with the MLP (issue 13's target: probing every task after
every task costs at most one training epoch per task).

    python scripts/bench_probe.py [--seeds 3] [--device cpu]

Runs the default experiment (naive, class-IL, 2 epochs per task) with analysis.probe=true
and with both probe and CKA, and prints per task: the training time of one epoch
(results.json timing.train_s / tasks / epochs) and the analysis time after the task
(timing.analysis_s less the start's, / tasks), median over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from lab.config import validate
from lab.experiment import run_experiment
from lab.run import config_dir


def timings(overrides: list[str], seed: int, out: Path) -> tuple[float, float]:
    """(seconds of one training epoch, seconds of analysis after one task) of one run."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        config = validate(
            compose(
                "config", overrides=["logger=none", "progress=false", f"seed={seed}", *overrides]
            )
        )
    results = run_experiment(config, out)
    timing, tasks = results["timing"], len(results["tasks"])
    epoch = timing["train_s"] / tasks / config["train"]["epochs"]
    after_tasks = timing["analysis_s"] - timing["analysis_start_s"]
    return epoch, after_tasks / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cases = {
        "probe": ["analysis.probe=true"],
        "probe + CKA": ["analysis.probe=true", "analysis.cka=true"],
    }
    print("Split Fashion-MNIST, MLP 2x400, 5 tasks, naive, class-IL; median over seeds")
    print(f"{'analysis':<14}{'1 epoch (s)':>13}{'after a task (s)':>18}{'ratio':>8}  target <= 1")
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in cases.items():
            runs = [
                timings(
                    [f"device={args.device}", *overrides], seed, Path(scratch) / f"{name}{seed}"
                )
                for seed in range(args.seeds)
            ]
            epoch = statistics.median(r[0] for r in runs)
            analysis = statistics.median(r[1] for r in runs)
            ratio = analysis / epoch
            verdict = "met" if ratio <= 1 else "MISSED"
            print(f"{name:<14}{epoch:>13.3f}{analysis:>18.3f}{ratio:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
