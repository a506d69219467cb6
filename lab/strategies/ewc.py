"""Elastic weight consolidation (EWC), separate and online.

Kirkpatrick et al. (2017), "Overcoming catastrophic forgetting in neural networks",
PNAS 114(13), eq. 3. After task k the weights theta*_k and the diagonal F_k of the
Fisher information at theta*_k are kept; while training task t the loss gets

    Omega(theta) = lambda/2 * sum_{k<t} sum_i F_{k,i} (theta_i - theta*_{k,i})^2     (separate)

Online EWC (Schwarz et al. 2018, "Progress & Compress", ICML; Huszar 2018) keeps one
running Fisher and one anchor, the latest weights:

    F <- gamma * F + F_k,   theta* <- theta*_k,
    Omega(theta) = lambda/2 * sum_i F_i (theta_i - theta*_i)^2                        (online)

The Fisher diagonal is F_i = E_x E_{y~q} [ (d log p_theta(y|x) / d theta_i)^2 ] over the
task's training inputs, where q is
    empirical  the true label (the "empirical Fisher");
    sampled    one label drawn from the model's predictive distribution p_theta(.|x);
    exact      the expectation over every label:
               sum_y p_theta(y|x) (d log p_theta(y|x) / d theta_i)^2.
Per-sample gradients are computed with torch.func (vmap over grad), chunk by chunk, in
eval mode (no dropout): the Fisher of the model as it is at the end of the task.

Heads: in task-IL only the shared backbone is penalised and the Fisher is taken under the
task's own head (see base.penalised_parameters); in domain- and class-IL the single head
is shared and penalised with the rest.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from lab.data import Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy, penalised_parameters

FISHER_ESTIMATORS = ("empirical", "sampled", "exact")
MODES = ("separate", "online")


@torch.no_grad()
def fisher_diagonal(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    task_id: int,
    names: list[str],
    estimator: str = "empirical",
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """Diagonal Fisher of the parameters `names` over the samples (x, y), as a mean.

    Runs under torch.no_grad: torch.func.grad still differentiates (it is a transform),
    but no outer graph links the Fisher to parameters left out of `names` (task-IL heads).
    """
    if estimator not in FISHER_ESTIMATORS:
        raise ValueError(f"unknown Fisher {estimator!r}; valid: {', '.join(FISHER_ESTIMATORS)}")
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    head = task_id if model.multi_head else None

    def log_likelihood(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0), head))
        return -F.cross_entropy(logits, yi.unsqueeze(0))  # log p(yi | xi)

    per_sample_grads = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}

    def accumulate(xb: Tensor, labels: Tensor, weights: Tensor | None = None) -> None:
        grads = per_sample_grads(params, xb, labels)
        for n, g in grads.items():
            squared = g.square()
            if weights is not None:
                squared = squared * weights.view(-1, *([1] * (g.dim() - 1)))
            fisher[n] += squared.sum(0)

    was_training = model.training
    model.eval()
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if estimator == "empirical":
            accumulate(xb, yb)
            continue
        probs = torch.softmax(model(xb, head), dim=-1)
        if estimator == "sampled":
            drawn = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
            accumulate(xb, drawn.to(x.device))
        else:
            for c in range(probs.shape[1]):
                accumulate(xb, torch.full_like(yb, c), probs[:, c])
    model.train(was_training)
    return {n: f / len(x) for n, f in fisher.items()}


class EWC(Strategy):
    name = "ewc"

    def __init__(
        self,
        lambda_: float = 100.0,
        fisher: str = "empirical",
        fisher_samples: int | None = None,
        mode: str = "separate",
        gamma: float = 1.0,
        fisher_batch_size: int = 256,
    ):
        if not isinstance(lambda_, int | float) or lambda_ < 0:
            raise ConfigError(f"strategy.lambda={lambda_!r} is invalid; valid: a number >= 0")
        if fisher not in FISHER_ESTIMATORS:
            raise ConfigError(
                f"strategy.fisher={fisher!r} is invalid; valid: {', '.join(FISHER_ESTIMATORS)}"
            )
        if fisher_samples is not None and (
            not isinstance(fisher_samples, int) or fisher_samples < 1
        ):
            raise ConfigError(
                f"strategy.fisher_samples={fisher_samples!r} is invalid; "
                "valid: a positive integer, or null for the whole training set"
            )
        if mode not in MODES:
            raise ConfigError(f"strategy.mode={mode!r} is invalid; valid: {', '.join(MODES)}")
        if not isinstance(gamma, int | float) or not 0 <= gamma <= 1:
            raise ConfigError(f"strategy.gamma={gamma!r} is invalid; valid: a number in [0, 1]")
        self.lambda_ = float(lambda_)
        self.fisher = fisher
        self.fisher_samples = fisher_samples
        self.mode = mode
        self.gamma = float(gamma)
        self.fisher_batch_size = fisher_batch_size
        # (theta*, F) per past task (separate), or the one running pair (online)
        self.anchors: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        data = Batch.of(task)
        if self.fisher_samples is not None and self.fisher_samples < len(data):
            data = data.select(
                torch.randperm(len(data), generator=self.generator)[: self.fisher_samples]
            )
        names = list(penalised_parameters(model))
        fisher = fisher_diagonal(
            model,
            data.x,
            data.y,
            task.id,
            names,
            self.fisher,
            self.generator,
            self.fisher_batch_size,
        )
        weights = {n: p.detach().clone() for n, p in penalised_parameters(model).items()}
        if self.mode == "online" and self.anchors:
            _, running = self.anchors[0]
            fisher = {n: self.gamma * running[n] + fisher[n] for n in fisher}
            self.anchors = []
        self.anchors.append((weights, fisher))

    def penalty(self, model: Classifier) -> Tensor:
        """sum_k sum_i F_{k,i} (theta_i - theta*_{k,i})^2, without the lambda/2."""
        params = penalised_parameters(model)
        return sum(
            (fisher[n] * (params[n] - anchor[n]).square()).sum()
            for anchor, fisher in self.anchors
            for n in fisher
        )

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        if not self.anchors:
            return ce
        return ce + self.lambda_ / 2 * self.penalty(model)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "anchors": self.anchors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.anchors = state["anchors"]


class OnlineEWC(EWC):
    """Online EWC (Schwarz et al. 2018): EWC with mode="online", named for the tables."""

    name = "online_ewc"

    def __init__(
        self,
        lambda_: float = 100.0,
        fisher: str = "empirical",
        fisher_samples: int | None = None,
        gamma: float = 1.0,
        fisher_batch_size: int = 256,
    ):
        super().__init__(lambda_, fisher, fisher_samples, "online", gamma, fisher_batch_size)
