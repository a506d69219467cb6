"""The share of a sweep's wall time that its runs spend training and evaluating.

    python scripts/bench_sweep.py [--n-jobs 2] [-- OVERRIDES...]

Runs the headline sweep as `make run` does (`lab-run +ablation=methods
hydra/launcher=joblib hydra.launcher.n_jobs=2`, W&B offline) into a temporary directory,
as one whole process, then reads every run's results.json: the share is the runs'
training and evaluation seconds (timing.train_s + eval_s, with the evaluation before the
first task) over n_jobs x the sweep's wall time. The rest is what the sweep pays per run
besides the experiment: start-up and imports (once per joblib worker), data, files, W&B.
Target (issue 14): at least 75% with 2 jobs on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="more lab-run overrides, after --")
    args = parser.parse_args()
    lab_run = shutil.which("lab-run") or str(Path(sys.executable).parent / "lab-run")
    with tempfile.TemporaryDirectory() as scratch:
        sweep = Path(scratch) / "sweep"
        command = [
            lab_run,
            "+ablation=methods",
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={args.n_jobs}",
            f"hydra.sweep.dir={sweep}",
            *args.overrides,
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - started
        runs = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    busy = sum(r["timing"]["train_s"] + r["timing"]["eval_s"] for r in runs)
    print(f"{' '.join(command[1:4] + args.overrides)}: {len(runs)} runs in {wall:.1f} s")
    print(f"  training and evaluation: {busy:.1f} s of {args.n_jobs} x {wall:.1f} s")
    print(f"  share: {100 * busy / (args.n_jobs * wall):.1f}%   (target: at least 75%)")
    print(f"  the rest, per run: {(args.n_jobs * wall - busy) / len(runs):.2f} s")


if __name__ == "__main__":
    main()
