"""SLCA: Slow Learner with Classifier Alignment.

Zhang, Wang, Kang, Chen & Wei (2023), "SLCA: Slow Learner with Classifier Alignment for
continual learning on a pre-trained model", ICCV (arXiv 2303.05118). Followed line by line:
LAMDA-PILOT models/slca.py (and exps/slca.json), which Mammoth's models/slca.py and
models/slca_utils/slca.py repeat.

Slow learner (sec. 3.2). Each task t trains the whole model with cross-entropy restricted
to the task's own classes C_t (the reference's masking: old heads frozen, logits of other
classes not in the softmax), the backbone at a learning rate far below the head's:

    L_t = CE( (W_c h(x) + b_c)_{c in C_t},  y ),    lr_backbone = lr_ratio * lr_head

with lr_ratio = 1/100 (the reference's bcb_lrscale). Only the rows of C_t move: the
configured coupled weight decay is applied here, to the backbone and those rows, not by
the optimizer, so rows of other classes get neither decay nor momentum (the reference
freezes the old heads and has no rows for later classes yet).

Class statistics (sec. 3.3). After the task, on its training set in eval mode and without
augmentation (lab.strategies.features), for each class c of C_t with n_c features h_i:

    mu_c = 1/n_c sum_i h_i,   Sigma_c = 1/(n_c - 1) sum_i (h_i - mu_c)(h_i - mu_c)^T + eps I

(torch.cov in float64, eps = covariance_ridge = 1e-4 as the reference adds), kept for
every class seen.

Classifier alignment (sec. 3.3), after every task but the first: the head is trained on
features sampled for each class c seen so far, of task k (0-based) of the T seen,

    x ~ N( s_k mu_c, Sigma_c ),   s_k = 1 - mean_shrink + mean_shrink (k + 1) / T

(the reference's decay of older means, mean_shrink = 0.1; the paper's plain N(mu, Sigma)
is mean_shrink = 0), samples_per_class of them per class and epoch, x = mu + L z with
Sigma = L L^T and z ~ N(0, I) from the strategy's generator, shuffled, in batches of
samples_per_class; ca_epochs epochs of SGD (momentum, weight decay, cosine schedule per
epoch) on the rows of the seen classes, with the logit normalisation of the reference:

    z_T = logits / (mean_k ||logits_{C_k}||_2 + 1e-7) / tau,   loss = CE(z_T, y)

(the mean over the seen tasks k of the norm of each task's block of logits; tau =
logit_norm = 0.1; 0 turns it off). The aligned head is what is evaluated; the next task
trains from the head as it was before the alignment (the reference's fc.backup/recall),
and the next alignment starts from there again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lab.data import Stream, Task
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier
from lab.strategies.base import Batch, Strategy
from lab.strategies.features import features_of

if TYPE_CHECKING:
    from lab.optim import OptimizerSettings


def _positive(name: str, value: Any, integer: bool = False, zero: bool = False) -> float:
    kind = int if integer else int | float
    low_ok = value >= 0 if zero else value > 0
    if not isinstance(value, kind) or isinstance(value, bool) or not low_ok:
        what = "an integer" if integer else "a number"
        raise ConfigError(
            f"strategy.{name}={value!r} is invalid; valid: {what} {'>=' if zero else '>'} 0"
        )
    return value


def class_statistics(features: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """(mu, Sigma) of one class's features (n, d): the mean and the unbiased covariance
    plus ridge * I, computed in float64, returned in float32."""
    h = features.double()
    covariance = torch.cov(h.T) + ridge * torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    return h.mean(0).float(), covariance.float()


def sample_features(
    mean: Tensor, covariance: Tensor, count: int, generator: torch.Generator
) -> Tensor:
    """`count` draws of N(mean, covariance): mean + L z, L the Cholesky factor, z standard
    normal from `generator` (on the CPU, so every device gets the same numbers), as
    torch.distributions.MultivariateNormal.sample computes them from its z."""
    z = torch.randn(count, mean.shape[0], generator=generator).to(mean.device)
    scale_tril = torch.linalg.cholesky(covariance)
    return mean + torch.matmul(scale_tril, z.unsqueeze(-1)).squeeze(-1)


def normalised_logits(logits: Tensor, blocks: list[int], tau: float) -> Tensor:
    """The reference's logit normalisation: logits divided by the mean over tasks of the
    L2 norm of each task's block of columns (`blocks`: their widths, in order), over tau."""
    norms = torch.cat(
        [part.norm(p=2, dim=-1, keepdim=True) + 1e-7 for part in logits.split(blocks, dim=1)],
        dim=-1,
    ).mean(dim=-1, keepdim=True)
    return logits / norms / tau


class SLCA(Strategy):
    name = "slca"
    scenarios = ("class",)

    def __init__(
        self,
        lr_ratio: float = 0.01,
        ca_epochs: int = 5,
        samples_per_class: int = 256,
        logit_norm: float = 0.1,
        mean_shrink: float = 0.1,
        covariance_ridge: float = 1e-4,
        ca_lr: float | None = None,
        ca_momentum: float = 0.9,
        ca_weight_decay: float | None = None,
    ):
        self.lr_ratio = float(_positive("lr_ratio", lr_ratio, zero=True))
        self.ca_epochs = int(_positive("ca_epochs", ca_epochs, integer=True, zero=True))
        self.samples_per_class = int(_positive("samples_per_class", samples_per_class, True))
        self.logit_norm = float(_positive("logit_norm", logit_norm, zero=True))
        self.mean_shrink = float(_positive("mean_shrink", mean_shrink, zero=True))
        if self.mean_shrink > 1:
            raise ConfigError(f"strategy.mean_shrink={mean_shrink!r} is invalid; valid: [0, 1]")
        self.covariance_ridge = float(_positive("covariance_ridge", covariance_ridge, zero=True))
        self.ca_lr = None if ca_lr is None else float(_positive("ca_lr", ca_lr))
        self.ca_momentum = float(_positive("ca_momentum", ca_momentum, zero=True))
        self.ca_weight_decay = (
            None
            if ca_weight_decay is None
            else float(_positive("ca_weight_decay", ca_weight_decay, zero=True))
        )
        self.means: dict[int, Tensor] = {}  # per head output (class): mu_c
        self.covariances: dict[int, Tensor] = {}  # Sigma_c
        self.unaligned: dict[str, Tensor] | None = None  # the head before the last alignment
        self.alignments: list[dict[str, Any]] = []  # per task: what results.json reports
        self.lr = 0.0  # the configured optimizer's lr and coupled weight decay, per task
        self.weight_decay = 0.0
        self.current: list[int] = []  # the outputs of the task being trained

    # -- the slow learner ---------------------------------------------------------------

    def attach(self, model: Classifier, stream: Stream) -> None:
        """The reference's head initialisation (SimpleContinualLinear: truncated normal of
        std 0.02, zero bias), drawn from the strategy's generator."""
        if model.multi_head:
            raise ConfigError("strategy=slca trains one class-IL head; valid: scenario=class")
        head = model.heads[0]
        with torch.no_grad():
            weight = torch.empty(head.weight.shape)
            torch.nn.init.trunc_normal_(weight, std=0.02, generator=self.generator)
            head.weight.copy_(weight)
            head.bias.zero_()

    def optimizer_settings(self, settings: OptimizerSettings) -> OptimizerSettings:
        """The configured optimizer without its coupled weight decay, which after_backward
        applies to what the reference decays (the backbone and the task's own rows)."""
        self.lr = settings.lr
        decoupled = settings.decoupled_weight_decay
        if decoupled is None:
            decoupled = settings.name == "adamw"
        # decoupled decay (adamw) stays the optimizer's: it shrinks every trainable row
        self.weight_decay = 0.0 if decoupled else settings.weight_decay
        if decoupled:
            return settings
        return dataclasses.replace(settings, weight_decay=0.0)

    def param_groups(self, model: Classifier, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The backbone's parameters at lr_ratio times their learning rate (the slow
        learner); the heads' as the fine-tuning regime sets them."""
        backbone = {id(p) for p in model.backbone.parameters()}
        slowed = []
        for group in groups:
            slow = [p for p in group["params"] if id(p) in backbone]
            rest = [p for p in group["params"] if id(p) not in backbone]
            if rest:
                slowed.append({**group, "params": rest})
            if slow:
                slowed.append({**group, "params": slow, "lr": group["lr"] * self.lr_ratio})
        return slowed

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if task.id == SOURCE:
            return
        if self.unaligned is not None:  # the reference's fc.recall(): train from before CA
            with torch.no_grad():
                for name, value in model.heads[0].named_parameters():
                    value.copy_(self.unaligned[name])
        self.current = list(task.outputs)

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        """Cross-entropy over the current task's outputs alone."""
        outputs = torch.tensor(self.current, device=logits.device)
        position = torch.full((logits.shape[1],), -100, dtype=torch.long, device=logits.device)
        position[outputs] = torch.arange(len(outputs), device=logits.device)
        return F.cross_entropy(logits[:, outputs].float(), position[batch.y])

    @torch.no_grad()
    def after_backward(self, model: Classifier) -> None:
        """The coupled weight decay (grad += wd * p, as torch's SGD adds it) of the
        backbone and the current task's rows of the head."""
        if not self.weight_decay:
            return
        for p in model.backbone.parameters():
            if p.grad is not None:
                p.grad.add_(p, alpha=self.weight_decay)
        rows = torch.tensor(self.current, device=model.heads[0].weight.device)
        for p in model.heads[0].parameters():
            if p.grad is not None:
                p.grad[rows] = p.grad[rows].add(p[rows], alpha=self.weight_decay)

    # -- statistics and alignment -------------------------------------------------------

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        if task.id == SOURCE:  # the pre-training source is no class of the stream
            return
        head = model.heads[0]
        self.unaligned = {n: p.detach().clone() for n, p in head.named_parameters()}
        features = features_of(model, task.train_x)
        for c in task.outputs:
            self.means[c], self.covariances[c] = class_statistics(
                features[task.train_y == c], self.covariance_ridge
            )
        tasks = [t for t in seen if t.id != SOURCE]
        if len(tasks) > 1 and self.ca_epochs > 0:
            losses = self.align(head, [list(t.outputs) for t in tasks])
            self.alignments.append(
                {
                    "task": task.id,
                    "classes": sum(len(t.outputs) for t in tasks),
                    "samples_per_class": self.samples_per_class,
                    "epoch_losses": losses,
                    "final_loss": losses[-1],
                }
            )

    def align(self, head: torch.nn.Linear, blocks: list[list[int]]) -> list[float]:
        """Classifier alignment of the rows of the classes in `blocks` (one list of outputs
        per seen task, in order) on sampled features; the mean loss of each epoch."""
        columns = [c for block in blocks for c in block]
        device = head.weight.device
        index = torch.tensor(columns, device=device)
        weight = head.weight.detach()[index].clone().requires_grad_(True)
        bias = head.bias.detach()[index].clone().requires_grad_(True)
        decay = self.weight_decay if self.ca_weight_decay is None else self.ca_weight_decay
        optimizer = torch.optim.SGD(
            [weight, bias],
            lr=self.ca_lr if self.ca_lr is not None else self.lr,
            momentum=self.ca_momentum,
            weight_decay=decay,
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.ca_epochs)
        n, widths = self.samples_per_class, [len(block) for block in blocks]
        labels = torch.arange(len(columns), device=device).repeat_interleave(n)
        epoch_losses = []
        for _ in range(self.ca_epochs):
            inputs, targets = self.sample(blocks), labels
            order = torch.randperm(len(targets), generator=self.generator).to(device)
            inputs, targets = inputs[order], targets[order]
            total = torch.zeros((), device=device)
            for step in range(len(columns)):
                logits = F.linear(inputs[step * n : (step + 1) * n], weight, bias)
                if self.logit_norm:
                    logits = normalised_logits(logits, widths, self.logit_norm)
                loss = F.cross_entropy(logits, targets[step * n : (step + 1) * n])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.detach()
            schedule.step()
            epoch_losses.append(total.item() / len(columns))
        with torch.no_grad():
            head.weight[index] = weight
            head.bias[index] = bias
        return epoch_losses

    def sample(self, blocks: list[list[int]]) -> Tensor:
        """samples_per_class features of every class of `blocks`, class after class, from
        N(s_k mu_c, Sigma_c) with task k's mean scale s_k (the module's docstring)."""
        seen = len(blocks)
        parts = []
        for k, block in enumerate(blocks):
            scale = 1 - self.mean_shrink + self.mean_shrink * (k + 1) / seen
            for c in block:
                parts.append(
                    sample_features(
                        self.means[c] * scale,
                        self.covariances[c],
                        self.samples_per_class,
                        self.generator,
                    )
                )
        return torch.cat(parts)

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        return {
            "slca": {
                "lr_ratio": self.lr_ratio,
                "logit_norm": self.logit_norm,
                "covariance_ridge": self.covariance_ridge,
                "classes_with_statistics": len(self.means),
                "feature_dim": next(iter(self.means.values())).numel() if self.means else 0,
                "alignment": self.alignments,
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "means": self.means,
            "covariances": self.covariances,
            "unaligned": self.unaligned,
            "alignments": self.alignments,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.means = state["means"]
        self.covariances = state["covariances"]
        self.unaligned = state["unaligned"]
        self.alignments = state["alignments"]
