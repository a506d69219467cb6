"""Peak memory of a Split CIFAR-100-shaped run at the model's resolution (issue 26's measure).

    python scripts/bench_resolution.py [--sizes 32 224] [--arch test_vit] [-- OVERRIDES]

Writes a CIFAR-100 of random pixels in torchvision's layout (cifar-100-python/, 50,000
training and 10,000 test images of 32x32, 100 classes) into a scratch data.root, then
runs, as a whole process for each size S,

    lab-run model=timm model.arch=ARCH model.input_size=S benchmark=split_cifar100 ...

and prints the peak resident memory and the wall time. The images stay stored at 32 px
(uint8, 154 MB) and every batch is resized on the device: the target is a 224 px peak at
most 1.3x the 32 px one (a float32 copy of CIFAR-100 at 224 px would take 30 GB).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
from measure import run_measured

SETTINGS = [
    "benchmark=split_cifar100",
    "train.iterations=20",
    "eval.samples_per_task=200",
    "logger=none",
    "progress=false",
]


def write_cifar100(root: Path) -> None:
    """CIFAR-100's pickles, as torchvision downloads them, with random pixels."""
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 50_000), ("test", 10_000)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": (np.arange(n) % 100).tolist(),
            b"coarse_labels": (np.arange(n) % 20).tolist(),
        }
        with open(directory / split, "wb") as f:
            pickle.dump(batch, f)
    with open(directory / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--arch", default="test_vit")
    parser.add_argument("--batch", type=int, default=16, help="train.batch_size (eval: 4x)")
    parser.add_argument("overrides", nargs="*", help="more lab-run overrides")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        write_cifar100(root)
        for size in args.sizes:
            command = [
                "lab-run",
                "model=timm",
                f"model.arch={args.arch}",
                f"model.input_size={size}",
                f"data.root={root}",
                f"hydra.run.dir={scratch}/run_{size}",
                *SETTINGS,
                f"train.batch_size={args.batch}",
                f"train.eval_batch_size={4 * args.batch}",
                *args.overrides,
            ]
            rows.append((size, *run_measured(command, env=dict(os.environ))))
    base = rows[0][1]
    print(
        f"Split CIFAR-100 (10 tasks), model=timm model.arch={args.arch}, batch {args.batch}: "
        + " ".join(SETTINGS)
    )
    print("| input px | peak RSS GB | x the smallest | wall s |")
    print("|---:|---:|---:|---:|")
    for size, peak, wall in rows:
        print(f"| {size} | {peak:.2f} | {peak / base:.2f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
