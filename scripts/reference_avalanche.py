"""`lab-run train.epochs=1 logger=none`'s experiment as a user writes it with stock Avalanche.

    python scripts/reference_avalanche.py DATA_ROOT [--device cpu]

DATA_ROOT is torchvision's root: Fashion-MNIST's IDX files, uncompressed, in
DATA_ROOT/FashionMNIST/raw (scripts/bench_fixed_costs.py makes one; nothing is
downloaded). Avalanche's own SplitFMNIST benchmark (5 experiences of 2 classes in the
natural order, its default transforms: ToTensor and Normalize with Fashion-MNIST's mean
and std), its Naive strategy, the same MLP 784-400-400-10, SGD (lr 0.01, momentum 0.9),
batches of 128, one epoch per experience, evaluation of the whole test stream after
every experience (batches of 4096) with Avalanche's accuracy metric and no logger. Prints
the accuracy matrix and ACC.
"""

from __future__ import annotations

import argparse

import torch
from avalanche.benchmarks.classic import SplitFMNIST
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.supervised import Naive
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_root")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    benchmark = SplitFMNIST(
        n_experiences=5,
        return_task_id=False,
        fixed_class_order=list(range(10)),
        dataset_root=args.data_root,
    )
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, 10),
    )
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=128,
        train_epochs=1,
        eval_mb_size=4096,
        device=torch.device(args.device),
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
    )
    matrix = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        metrics = strategy.eval(benchmark.test_stream)
        row = [
            metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"]
            for j in range(len(benchmark.test_stream))
        ]
        matrix.append(row)
        print(" ".join(f"{100 * a:5.1f}" for a in row))
    print(f"ACC {100 * sum(matrix[-1]) / len(matrix[-1]):.2f}")


if __name__ == "__main__":
    main()
