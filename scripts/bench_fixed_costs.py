"""A whole `lab-run` against a plain PyTorch script and a stock Avalanche script.

    python scripts/bench_fixed_costs.py [--repeats 5] [--device cpu]

The same experiment four ways, each as a whole process (start-up, imports, data, training,
evaluation after every task, files, exit), in turn, `--repeats` times; prints the median
wall time of each and the ratios:

    lab-run           lab-run train.epochs=1 logger=none (Split Fashion-MNIST, naive, MLP)
    lab-run + W&B     the same with logger=wandb logger.mode=offline: W&B's own cost
    plain PyTorch     scripts/reference_pytorch.py (the floor: the experiment, nothing else)
    Avalanche         scripts/reference_avalanche.py (its SplitFMNIST and Naive strategy)

Targets (issue 14): lab-run at most 1.1x the plain script, at least 4x faster than the
Avalanche script. All four read the same uncompressed IDX files, made once in a temporary
torchvision-style root from Debian's /usr/share/datasets/fashion-mnist (or --data-root's).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
IDX = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def prepare_data(source: Path, root: Path) -> Path:
    """root/FashionMNIST/raw with the four IDX files uncompressed; returns that folder."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX:
        if (source / name).is_file():
            shutil.copyfile(source / name, raw / name)
        else:
            with gzip.open(source / f"{name}.gz", "rb") as f:
                (raw / name).write_bytes(f.read())
    return raw


def commands(root: Path, device: str) -> dict[str, list[str]]:
    lab_run = shutil.which("lab-run") or str(Path(sys.executable).parent / "lab-run")
    lab = [lab_run, "train.epochs=1", "progress=false", f"device={device}", f"data.root={root}"]
    return {
        "lab-run": [*lab, "logger=none"],
        "lab-run + W&B offline": [*lab, "logger=wandb", "logger.mode=offline"],
        "plain PyTorch": [
            sys.executable,
            str(SCRIPTS / "reference_pytorch.py"),
            str(root / "FashionMNIST" / "raw"),
            f"--device={device}",
        ],
        "Avalanche": [
            sys.executable,
            str(SCRIPTS / "reference_avalanche.py"),
            str(root),
            f"--device={device}",
        ],
    }


def timed(command: list[str], run_dir: Path) -> float:
    """Seconds the whole process takes; a lab-run gets a fresh run dir (a finished one
    would be skipped)."""
    if Path(command[0]).name == "lab-run":
        command = [*command, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "WANDB_SILENT": "true"}
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        prepare_data(args.data_root, scratch / "data")
        runs = commands(scratch / "data", args.device)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):  # in turn, so that a slow minute hits all alike
            for name, command in runs.items():
                times[name].append(timed(command, scratch / f"run-{len(times[name])}-{hash(name)}"))
            print(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
                flush=True,
            )
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\nwhole process, median of {args.repeats} ({args.device}):")
    for name, seconds in median.items():
        print(f"  {name:<24}{seconds:7.2f} s")
    lab, plain, avalanche = median["lab-run"], median["plain PyTorch"], median["Avalanche"]
    wandb = median["lab-run + W&B offline"] - lab
    print(f"lab-run / plain PyTorch:  {lab / plain:.2f}x   (target: at most 1.1x)")
    print(f"Avalanche / lab-run:      {avalanche / lab:.2f}x   (target: at least 4x)")
    print(f"W&B offline's own cost:   {wandb:+.2f} s a run ({100 * wandb / lab:+.0f}%)")


if __name__ == "__main__":
    main()
