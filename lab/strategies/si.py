"""Synaptic Intelligence (SI).

Zenke, Poole & Ganguli (2017), "Continual learning through synaptic intelligence", ICML,
eqs. 3-5. While training task mu, each parameter k accumulates its contribution to the
drop of the loss along the training trajectory (the path integral, one term per step):

    omega^mu_k = - sum_steps g_k (theta_k(after) - theta_k(before))

with g the gradient of the step's loss. At the end of task mu, with Delta^mu_k the
parameter's total displacement over the task and xi a damping term,

    Omega_k = sum_{nu <= mu} omega^nu_k / ((Delta^nu_k)^2 + xi),

and while training the next task the loss gets the surrogate

    c * sum_k Omega_k (theta_k - theta*_k)^2

anchored at the weights theta* at the end of the previous task (`lambda` is the paper's c;
c=0 is naive fine-tuning). A pre-training source, whose path SI did not watch, moves the
anchor to its weights and adds no importance. g is the gradient of the whole loss,
surrogate included, as in Avalanche and van de Ven's code. Heads as in EWC
(base.penalised_parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import penalised_parameters
from lab.strategies.quadratic import Anchored


class SI(Anchored):
    name = "si"

    def __init__(self, lambda_: float = 0.1, eps: float = 1e-3):
        super().__init__(lambda_)
        if not isinstance(eps, int | float) or eps <= 0:
            raise ConfigError(f"strategy.eps={eps!r} is invalid; valid: a number > 0")
        self.eps = float(eps)
        self._start: dict[str, Tensor] = {}  # the weights at the start of the task
        self._omega: dict[str, Tensor] = {}  # this task's path integral
        self._step: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        # every parameter: progressive unfreezing may train one frozen at the task's start
        self._start = {n: p.detach().clone() for n, p in model.named_parameters()}
        self._omega = {}

    def after_backward(self, model: Classifier) -> None:
        """Keep this step's gradient and weights: its update is known at the next step."""
        self._integrate(model)
        trained = {n: p for n, p in penalised_parameters(model).items() if p.grad is not None}
        self._step = (
            {n: p.detach().clone() for n, p in trained.items()},
            {n: p.grad.detach().clone() for n, p in trained.items()},
        )

    def _integrate(self, model: Classifier) -> None:
        """omega -= g * (theta after the step - theta before it), for the last step."""
        if self._step is None:
            return
        params = dict(model.named_parameters())
        before, gradient = self._step
        for n, g in gradient.items():
            omega = self._omega.setdefault(n, torch.zeros_like(g))
            omega -= g * (params[n].detach() - before[n])
        self._step = None

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        self._integrate(model)
        weights = {n: p.detach().clone() for n, p in penalised_parameters(model).items()}
        for n, theta in weights.items():
            importance = self.importance.setdefault(n, torch.zeros_like(theta))
            if n in self._omega:  # trained in a task SI watched (not a pre-training source)
                importance += self._omega[n] / ((theta - self._start[n]).square() + self.eps)
        self.anchor = weights
        self._start, self._omega = {}, {}
