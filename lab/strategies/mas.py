"""Memory Aware Synapses (MAS).

Aljundi et al. (2018), "Memory aware synapses: learning what (not) to forget", ECCV,
eqs. 2-3. The importance of parameter i is the sensitivity of the squared L2 norm of the
learned function's output to it, averaged over the task's N training inputs (no labels):

    Omega_i = 1/N sum_n | d ||f(x_n)||_2^2 / d theta_i |

and while training the next task the loss gets

    lambda * sum_i Omega_i (theta_i - theta*_i)^2

anchored at the weights theta* at the end of the previous task (lambda=0 is naive). The
paper adds each task's importance to the old; FACIL and Avalanche keep a running average,
Omega <- alpha * Omega + (1 - alpha) * Omega_new (the first task's as it is), and so do we
(`alpha`, 0.5 as theirs). The per-sample absolute gradients are exact and vectorised as
EWC's squared ones (lab.strategies.ewc): |delta_n a_n^T| = |delta_n| |a_n|^T for a linear
layer, torch.func for any other; in eval mode, under the task's own head in task-IL.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import penalised_parameters
from lab.strategies.ewc import linear_forward, linear_layers, per_sample_sums
from lab.strategies.quadratic import Anchored


@torch.no_grad()
def output_sensitivity(
    model: Classifier, x: Tensor, head: int | None, names: list[str], batch_size: int = 256
) -> dict[str, Tensor]:
    """1/N sum_n |d ||f(x_n)||^2 / d theta| for the parameters `names`."""
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    linears = linear_layers(model, names)
    others = [n for n in names if n.rsplit(".", 1)[0] not in linears]
    was_training = model.training
    model.eval()
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if linears:
            _linear_sensitivity(model, xb, head, linears, total)
        if others:
            _vmap_sensitivity(model, xb, head, others, total)
    model.train(was_training)
    return {n: t / len(x) for n, t in total.items()}


def _linear_sensitivity(model, x, head, linears, total) -> None:
    """Samples do not interact, so one backward pass of sum_n ||f(x_n)||^2 gives each
    sample's delta_n at every linear output z_n = W a_n + b."""
    output, inputs, outputs = linear_forward(model, x, head, linears)
    with torch.enable_grad():
        deltas = torch.autograd.grad(output.square().sum(), [outputs[n] for n in linears])
    for name, delta in zip(linears, deltas, strict=True):
        weight, bias = per_sample_sums(linears[name], delta, inputs[name], torch.abs)
        if f"{name}.weight" in total:
            total[f"{name}.weight"] += weight
        if f"{name}.bias" in total and bias is not None:
            total[f"{name}.bias"] += bias


def _vmap_sensitivity(model, x, head, names, total) -> None:
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def squared_norm(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (xi.unsqueeze(0), head)).square().sum()

    for n, g in vmap(grad(squared_norm), in_dims=(None, 0))(params, x).items():
        total[n] += g.abs().sum(0)


class MAS(Anchored):
    name = "mas"

    def __init__(self, lambda_: float = 0.1, alpha: float = 0.5):
        super().__init__(lambda_)
        if not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ConfigError(f"strategy.alpha={alpha!r} is invalid; valid: a number in [0, 1]")
        self.alpha = float(alpha)

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        anchored = penalised_parameters(model)
        head = task.id if model.multi_head else None
        new = output_sensitivity(model, task.train_x, head, list(anchored))
        self.importance = {
            n: new[n]
            if n not in self.importance
            else self.alpha * self.importance[n] + (1 - self.alpha) * new[n]
            for n in new
        }
        self.anchor = {n: p.detach().clone() for n, p in anchored.items()}
