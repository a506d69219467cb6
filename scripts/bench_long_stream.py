"""Peak memory and time of a stream against its number of tasks (issue 17's measure).

    python scripts/bench_long_stream.py [--tasks 2 10 50] [--strategy ewc] [--keep DIR]
                                        [-- OVERRIDES]

Runs `lab-run benchmark=permuted_fmnist scenario=domain strategy=ewc train.epochs=1
logger=none benchmark.num_tasks=N` for each N as a whole process, samples the resident
memory of the process every 20 ms, and prints per N the peak RSS, the wall time, the
training and evaluation time of tasks 1, 10, 50 and 100 (results.json's timing.tasks,
those the stream has), and the peak RSS over the smallest N's. Target: the 50-task peak
at most 1.3x the 2-task one. `--keep DIR` keeps each run's directory as DIR/tasks_N.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from measure import run_measured

MARKS = (1, 10, 50, 100)  # the tasks whose times are printed


def run(tasks: int, strategy: str, extra: list[str], keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = keep / f"tasks_{tasks}" if keep is not None else Path(scratch)
        command = [
            "lab-run",
            "benchmark=permuted_fmnist",
            "scenario=domain",
            f"strategy={strategy}",
            "train.epochs=1",
            "logger=none",
            "progress=false",
            f"benchmark.num_tasks={tasks}",
            f"hydra.run.dir={run_dir}",
            *extra,
        ]
        peak_gb, wall = run_measured(command)
        results = json.loads((Path(run_dir) / "results.json").read_text())
    per_task = results["timing"]["tasks"]
    return {
        "tasks": tasks,
        "peak_gb": peak_gb,
        "wall_s": wall,
        "marks": [per_task[m - 1] for m in MARKS if m <= len(per_task)],
        "acc": results["metrics"]["acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--strategy", default="ewc")
    parser.add_argument("--keep", type=Path, help="keep the run dirs here")
    parser.add_argument("overrides", nargs="*", help="more lab-run overrides")
    args = parser.parse_args()
    rows = [run(n, args.strategy, args.overrides, args.keep) for n in sorted(args.tasks)]
    base = rows[0]["peak_gb"]
    print(f"permuted Fashion-MNIST, domain-IL, {args.strategy}, 1 epoch per task, logger=none")
    print(
        "| tasks | peak RSS GB | x smallest | wall s | train s at task 1 / 10 / 50 / 100 "
        "| eval s at task 1 / 10 / 50 / 100 | final ACC % |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        train, evaluate = (
            " / ".join(f"{m[k]:.2f}" for m in r["marks"]) for k in ("train_s", "eval_s")
        )
        print(
            f"| {r['tasks']} | {r['peak_gb']:.2f} | {r['peak_gb'] / base:.2f} | {r['wall_s']:.1f} "
            f"| {train} | {evaluate} | {100 * r['acc']:.1f} |"
        )


if __name__ == "__main__":
    main()
