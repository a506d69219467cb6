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
The sums of squared per-sample gradients are exact and vectorised: a closed form for
linear layers, torch.func (vmap over grad) for any other parameter; chunk by chunk, in
eval mode (no dropout): the Fisher of the model as it is at the end of the task.

Heads: in task-IL only the shared backbone is penalised and the Fisher is taken under the
task's own head (see base.penalised_parameters); in domain- and class-IL the single head
is shared and penalised with the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from lab.data import Task
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier
from lab.strategies.base import Batch, Strategy, penalised_parameters

FISHER_ESTIMATORS = ("empirical", "sampled", "exact")
MODES = ("separate", "online")


def _label_sets(probs: Tensor, y: Tensor, estimator: str, generator: torch.Generator | None):
    """(labels, weight per sample) pairs whose weighted squared gradients sum to the Fisher."""
    if estimator == "empirical":
        return [(y, None)]
    if estimator == "sampled":
        drawn = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
        return [(drawn.to(y.device), None)]
    return [(torch.full_like(y, c), probs[:, c]) for c in range(probs.shape[1])]


CLOSED_FORM = (torch.nn.Linear, torch.nn.Embedding, torch.nn.LayerNorm)


def linear_layers(model: Classifier, names: list[str]) -> dict[str, torch.nn.Module]:
    """The modules with a closed form of their per-sample gradients (nn.Linear, and a
    transformer's nn.Embedding and nn.LayerNorm) holding any of the parameters `names`."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, CLOSED_FORM) and {f"{name}.weight", f"{name}.bias"} & set(names)
    }


def linear_forward(
    model: Classifier, x: Tensor, head: int | None, linears: dict[str, torch.nn.Module]
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """The model's output on x (with its graph), and the input a_n (detached) and output
    z_n of every layer in `linears`: what per-sample gradients delta_n a_n^T are made of.
    An embedding looked up once for the whole batch (BERT's positions, shaped (1, ...))
    is expanded to one lookup per sample, so that each sample's delta is its own."""
    inputs, outputs = {}, {}
    n = len(x)

    def keep(name):
        def hook(module, args, output):
            a = args[0]
            if isinstance(module, torch.nn.Embedding) and len(output) == 1 and n > 1:
                a, output = a.expand(n, *a.shape[1:]), output.expand(n, *output.shape[1:])
            inputs[name], outputs[name] = a.detach(), output
            return output

        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in linears.items()]
    try:
        with torch.enable_grad():
            output = model(x, head)
    finally:
        for handle in handles:
            handle.remove()
    return output, inputs, outputs


def per_sample_sums(
    module: torch.nn.Module, delta: Tensor, a: Tensor, f, weights: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """sum_n w_n f(g_n) over the per-sample gradients g_n of a closed-form layer's weight
    and bias (linear_layers), from the gradient delta at its output and its input a.

    Linear: per_sample_linear_sums. LayerNorm, z = w * xhat + b: g_n(w) = sum_p delta_np
    xhat_np, g_n(b) = sum_p delta_np. Embedding, z_np = W[i_np]: g_n(W)[v] = sum of
    delta_np over the positions p where i_np = v: summed per (sample, token), then f, then
    added into the token's row; the padding index's row gets none (as autograd gives it).
    """
    if isinstance(module, torch.nn.Linear):
        return per_sample_linear_sums(delta, a, f, weights)
    w = torch.ones(len(delta), device=delta.device) if weights is None else weights
    if isinstance(module, torch.nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        xhat = F.layer_norm(a.float(), shape, eps=module.eps)
        d = delta.float().reshape(len(delta), -1, *shape)
        per_weight = (d * xhat.reshape(d.shape)).sum(1)
        scale = w.view(-1, *([1] * len(shape)))
        bias = (f(d.sum(1)) * scale).sum(0) if module.bias is not None else None
        return (f(per_weight) * scale).sum(0), bias
    vocab = module.num_embeddings
    index = a.reshape(len(a), -1).long()  # (n, positions)
    rows = delta.reshape(len(delta), index.shape[1], -1)
    keys = torch.arange(len(a), device=a.device)[:, None] * vocab + index
    unique, inverse = torch.unique(keys.flatten(), return_inverse=True)
    sums = rows.new_zeros(len(unique), rows.shape[-1]).index_add_(0, inverse, rows.flatten(0, 1))
    weight = rows.new_zeros(vocab, rows.shape[-1])
    weight.index_add_(0, unique % vocab, f(sums) * w[unique // vocab][:, None])
    if module.padding_idx is not None:
        weight[module.padding_idx] = 0
    return weight, None


def per_sample_linear_sums(
    delta: Tensor, a: Tensor, f, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """sum_n w_n f(g_n) over the per-sample gradients g_n of a linear layer's weight and
    bias, from the gradient delta at its output z = W a + b and its input a, for an
    elementwise f with f(xy) = f(x) f(y) (square, abs).

    With one position per sample (a: (n, in)), g_n = delta_n a_n^T, so the sum is
    f(delta)^T f(a): no per-sample matrix is built. Where the layer reads a sequence
    (a ViT's tokens: a (n, positions, in)), g_n = sum_p delta_np a_np^T is a sum, which
    f does not split: the g_n are formed, a few samples at a time, and summed.
    """
    w = torch.ones(len(delta), device=delta.device) if weights is None else weights
    if delta.dim() == 2:
        fd = f(delta) * w[:, None]
        return fd.T @ f(a), fd.sum(0)
    delta, a = delta.flatten(1, -2), a.flatten(1, -2)  # (n, positions, features)
    weight = delta.new_zeros(delta.shape[-1], a.shape[-1])
    bias = delta.new_zeros(delta.shape[-1])
    step = max(1, 2**25 // weight.numel())  # per-sample gradients of at most 128 MB
    for i in range(0, len(delta), step):
        g = torch.einsum("npo,npi->noi", delta[i : i + step], a[i : i + step])
        weight += (f(g) * w[i : i + step, None, None]).sum(0)
        bias += (f(delta[i : i + step].sum(1)) * w[i : i + step, None]).sum(0)
    return weight, bias


def _linear_squared_grads(model, x, head, linears, estimator, generator, y, fisher) -> None:
    """Sum over the chunk of squared per-sample gradients of every nn.Linear in `linears`.

    For a linear layer z = W a + b the per-sample gradient is delta_n a_n^T, so
    sum_n (delta_n a_n^T)^2 = (delta^2)^T (a^2) elementwise: one ordinary backward pass
    gives every delta_n (samples do not interact), and no per-sample matrix is built
    (per_sample_linear_sums; for layers over token sequences, the exact sum of squares).
    """
    logits, inputs, outputs = linear_forward(model, x, head, linears)
    # a layer this head's forward does not reach (class-IL's stream head, on the pre-training
    # source with its own head) has no gradient: its Fisher on these samples is 0
    linears = {name: module for name, module in linears.items() if name in outputs}
    with torch.enable_grad():
        log_probs = torch.log_softmax(logits, dim=-1)
    for labels, weights in _label_sets(log_probs.detach().exp(), y, estimator, generator):
        with torch.enable_grad():
            log_likelihood = log_probs.gather(1, labels[:, None]).sum()
            deltas = torch.autograd.grad(
                log_likelihood, [outputs[n] for n in linears], retain_graph=True
            )
        for name, delta in zip(linears, deltas, strict=True):
            module = linears[name]
            weight, bias = per_sample_sums(module, delta, inputs[name], torch.square, weights)
            if f"{name}.weight" in fisher:
                fisher[f"{name}.weight"] += weight
            if f"{name}.bias" in fisher and bias is not None:
                fisher[f"{name}.bias"] += bias


@contextlib.contextmanager
def _unfused_attention(model: torch.nn.Module) -> Iterator[None]:
    """timm's attention layers computed as softmax(q k^T) v, not by the fused kernel, for
    as long as it lasts: vmap has no batching rule for the fused one on the CPU and would
    loop over the samples (the same numbers, up to rounding, many times faster)."""
    fused = [m for m in model.modules() if getattr(m, "fused_attn", False) is True]
    for m in fused:
        m.fused_attn = False
    try:
        yield
    finally:
        for m in fused:
            m.fused_attn = True


def _vmap_squared_grads(model, x, head, names, estimator, generator, y, fisher) -> None:
    """The same sum for any other parameters, from per-sample gradients (vmap over grad)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def log_likelihood(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0), head))
        return -F.cross_entropy(logits, yi.unsqueeze(0))  # log p(yi | xi)

    per_sample_grads = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    probs = torch.softmax(model(x, head), dim=-1)
    for labels, weights in _label_sets(probs, y, estimator, generator):
        for n, g in per_sample_grads(params, x, labels).items():
            squared = g.square()
            if weights is not None:
                squared = squared * weights.view(-1, *([1] * (g.dim() - 1)))
            fisher[n] += squared.sum(0)


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

    Linear layers (the bulk of the weights) use the exact closed form of
    _linear_squared_grads; other parameters (convolutions) use torch.func per-sample
    gradients. Outside those, no autograd graph is kept: the Fisher is a constant.
    """
    if estimator not in FISHER_ESTIMATORS:
        raise ValueError(f"unknown Fisher {estimator!r}; valid: {', '.join(FISHER_ESTIMATORS)}")
    head = task_id if model.multi_head or task_id == SOURCE else None
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(params[n]) for n in names}
    linears = linear_layers(model, names)
    covered = {f"{name}.{p}" for name in linears for p in ("weight", "bias")}
    others = [n for n in names if n not in covered]
    was_training = model.training
    model.eval()
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        # one generator draw per chunk, shared by both paths so they see the same labels
        state = generator.get_state() if generator is not None else None
        if linears:
            _linear_squared_grads(model, xb, head, linears, estimator, generator, yb, fisher)
        if others:
            if state is not None:
                generator.set_state(state)
            with _unfused_attention(model):
                _vmap_squared_grads(model, xb, head, others, estimator, generator, yb, fisher)
    model.train(was_training)
    return {n: f / len(x) for n, f in fisher.items()}


class EWC(Strategy):
    name = "ewc"

    def __init__(
        self,
        lambda_: float = 1000.0,
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
        # (theta*_k, F_k) of the last task (online: F is the running Fisher); separate
        # mode also sums sum_k F_k, sum_k F_k theta*_k and sum_k F_k theta*_k^2 in float64,
        # so memory and a step's cost stay the same after 1 task or 100 (consolidated)
        self.latest: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None
        self.sums: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        self.tasks = 0
        self._consolidated: tuple[dict[str, Tensor], dict[str, Tensor], float] | None = None

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
        if self.mode == "online" and self.latest is not None:
            _, running = self.latest
            fisher = {n: self.gamma * running[n] + fisher[n] for n in fisher}
        self.add(weights, fisher)

    def add(self, anchor: dict[str, Tensor], fisher: dict[str, Tensor]) -> None:
        """Anchor the weights at theta* = `anchor` with the Fisher diagonal `fisher`: one
        more task's penalty (separate), or the running pair's new value (online)."""
        self.latest, self.tasks = (anchor, fisher), self.tasks + 1
        if self.mode == "separate":
            for n in fisher:
                f, t = fisher[n].double(), anchor[n].double()
                a, b, c = self.sums.get(n, (0.0, 0.0, 0.0))
                self.sums[n] = (a + f, b + f * t, c + f * t.square())
        self._consolidated = None

    def consolidated(self) -> tuple[dict[str, Tensor], dict[str, Tensor], float]:
        """The penalties as one quadratic per parameter, A (theta - m)^2 + c:

            sum_k F_k (theta - theta*_k)^2 = A (theta - m)^2 + c,   A = sum_k F_k,
            m = sum_k F_k theta*_k / A,   c = sum_k F_k theta*_k^2 - A m^2,

        so a step costs the same after 1 task or 50. Made once per task."""
        if self._consolidated is not None:
            return self._consolidated
        anchor, fisher = self.latest
        if self.mode == "online" or self.tasks == 1:
            self._consolidated = (fisher, anchor, 0.0)  # exactly F (theta - theta*)^2
            return self._consolidated
        curvature, centre, constant = {}, {}, 0.0
        for n, (a, b, c) in self.sums.items():  # float64: c - a m^2 cancels
            m = torch.where(a > 0, b / a, 0.0)  # a = 0: the weight is not penalised
            constant += (c - a * m.square()).sum().item()
            curvature[n], centre[n] = a.float(), m.float()
        self._consolidated = (curvature, centre, constant)
        return self._consolidated

    def penalty(self, model: Classifier) -> Tensor:
        """sum_k sum_i F_{k,i} (theta_i - theta*_{k,i})^2, without the lambda/2."""
        params = dict(model.named_parameters())  # all: progressive unfreezing hides some
        curvature, centre, constant = self.consolidated()
        return constant + sum(
            (a * (params[n] - centre[n]).square()).sum() for n, a in curvature.items()
        )

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        if self.latest is None:
            return ce
        return ce + self.lambda_ / 2 * self.penalty(model)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "latest": self.latest,
            "sums": self.sums,
            "tasks": self.tasks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "anchors" in state:  # a checkpoint from before the sums: every (theta*_k, F_k)
            for anchor, fisher in state["anchors"]:
                self.add(anchor, fisher)
            return
        self.latest, self.sums, self.tasks = state["latest"], state["sums"], state["tasks"]
        self._consolidated = None


class OnlineEWC(EWC):
    """Online EWC (Schwarz et al. 2018): EWC with mode="online", named for the tables."""

    name = "online_ewc"

    def __init__(
        self,
        lambda_: float = 1000.0,
        fisher: str = "empirical",
        fisher_samples: int | None = None,
        gamma: float = 1.0,
        fisher_batch_size: int = 256,
    ):
        super().__init__(lambda_, fisher, fisher_samples, "online", gamma, fisher_batch_size)
