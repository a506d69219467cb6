"""The floor: `lab-run train.epochs=1 logger=none`'s experiment as a plain PyTorch script.

    python scripts/reference_pytorch.py DATA_DIR [--device cpu]

DATA_DIR holds Fashion-MNIST's four IDX files, uncompressed (torchvision's
FashionMNIST/raw layout; scripts/bench_fixed_costs.py makes one). What lab-run does by
default, with nothing else: Split Fashion-MNIST in 5 tasks of 2 classes (0-1, 2-3, ...),
class-incremental (one 10-way head), images standardised with the training set's mean
and std; an MLP 784-400-400-10 with ReLU; per task, a fresh SGD (lr 0.01, momentum 0.9)
and one epoch of batches of 128 in a seeded random order; after every task, the test
accuracy on every task (batches of 4096, no grad). Prints the accuracy matrix and ACC.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    def images(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(args.data_dir / name).copy()).float().div_(255)[:, None]

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(args.data_dir / name).astype(np.int64))

    train_x, train_y = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    test_x, test_y = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")
    mean, std = train_x.mean(), train_x.std()
    tasks = []
    for classes in ([0, 1], [2, 3], [4, 5], [6, 7], [8, 9]):
        train, test = (
            torch.isin(train_y, torch.tensor(classes)),
            torch.isin(test_y, torch.tensor(classes)),
        )
        tasks.append(
            [
                t.to(device)
                for t in (
                    (train_x[train] - mean) / std,
                    train_y[train],
                    (test_x[test] - mean) / std,
                    test_y[test],
                )
            ]
        )

    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, 10),
    ).to(device)
    generator = torch.Generator().manual_seed(0)
    matrix = []
    for x, y, _, _ in tasks:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()
        order = torch.randperm(len(y), generator=generator).to(device)
        for step in range(math.ceil(len(y) / 128)):
            batch = order[128 * step : 128 * (step + 1)]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        row = []
        with torch.inference_mode():
            for _, _, tx, ty in tasks:
                correct = sum(
                    (model(tx[i : i + 4096]).argmax(1) == ty[i : i + 4096]).sum().item()
                    for i in range(0, len(ty), 4096)
                )
                row.append(correct / len(ty))
        matrix.append(row)
        print(" ".join(f"{100 * a:5.1f}" for a in row))
    print(f"ACC {100 * sum(matrix[-1]) / len(matrix[-1]):.2f}")


if __name__ == "__main__":
    main()
