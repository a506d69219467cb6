"""Naive sequential fine-tuning: each task is trained with plain cross-entropy, nothing
protects what earlier tasks taught the model. The lower bound of every comparison."""

from lab.strategies.base import Strategy


class Naive(Strategy):
    name = "naive"
