"""CODA-Prompt: a prompt assembled from components weighted by decomposed attention.

Smith et al. (2023), "CODA-Prompt: COntinual Decomposed Attention-based Prompting for
rehearsal-free continual learning", CVPR (arXiv 2211.13218), as Mammoth implements it
(models/coda_prompt.py, models/coda_prompt_utils/{model,vit,__init__}.py). At each prompted
layer (the first five, the reference's e_layers):

    components P_m in R^{L_p x d}, keys K_m in R^d, attention vectors A_m in R^d, m < M
    alpha_m(x) = cos(q(x) * A_m, K_m)            (eq. 4; * elementwise)
    p(x)       = sum_m alpha_m(x) P_m            (eq. 3)
    prefix tuning with p_K = p(x)[:L_p/2], p_V = p(x)[L_p/2:]
    orthogonality: ||K K^T - I||^2, ||A A^T - I||^2, ||P P^T - I||^2 (P flattened), each
        the mean of the squared entries, the reference's ortho_penalty (eq. 6)
    loss = CE_task(g(f), y) + ortho_mu * sum over layers of the three terms

q(x) is the frozen ViT's class-token feature without prompts, f the class token's output
with the prompts. The M components are split among the stream's T tasks, M/T each; on
task t the components of tasks 0..t take part, those of earlier tasks frozen (detached),
the current task's trained; at test the components of tasks 0..t. A task's components
start Gram-Schmidt-orthogonal to all earlier ones (from random normal vectors, classical
Gram-Schmidt, then normalised; the components of later tasks are zero until their task),
drawn from the strategy's own generator; the reference's defaults have the penalty off
(mu = ortho_mu = 0). results.json `coda_prompt`: per test task, the share of the attention
weight mass |alpha| that falls on each task's components (mean over samples and layers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.data import Stream, Task
from lab.errors import ConfigError
from lab.models import Classifier
from lab.strategies.prompting import (
    PromptLearner,
    blocks,
    check_layers,
    embed,
    head_input,
    layer_indices,
    positive_int,
    query,
)


def gram_schmidt(
    vectors: Tensor, start: int, end: int, generator: torch.Generator | None = None
) -> Tensor:
    """Rows start..end-1 of `vectors` (M, ...) replaced by random normal vectors made
    orthogonal to every row before them (classical Gram-Schmidt: each projection taken of
    the random vector itself), then normalised; rows before `start` kept, rows from `end`
    zero (the reference's gram_schmidt)."""
    flat = vectors.detach().reshape(len(vectors), -1)
    out = torch.zeros_like(flat)
    out[:start] = flat[:start]
    for k in range(start, end):
        v = torch.randn(flat.shape[1], generator=generator).to(flat)
        earlier = out[:k]
        coefficients = (earlier @ v) / earlier.square().sum(dim=1)
        out[k] = v - coefficients @ earlier
    out[start:end] = out[start:end] / out[start:end].norm(dim=1, keepdim=True)
    return out.reshape(vectors.shape)


def ortho_penalty(t: Tensor) -> Tensor:
    """mean((t t^T - I)^2) over the rows of t (M, D)."""
    gram = t @ t.t()
    return (gram - torch.eye(len(t), device=t.device, dtype=t.dtype)).square().mean()


def attention_weights(q: Tensor, attention: Tensor, keys: Tensor) -> Tensor:
    """alpha (B, M) = cos(q * A_m, K_m) for queries q (B, d), A and K (M, d)."""
    attended = F.normalize(q.unsqueeze(1) * attention.unsqueeze(0), dim=2)  # (B, M, d)
    return torch.einsum("bkd,kd->bk", attended, F.normalize(keys, dim=1))


class Components(nn.Module):
    """Per prompted layer i: P (M, L_p, d) as p_i, K (M, d) as k_i, A (M, d) as a_i."""

    def __init__(self, layers: list[int], size: int, length: int, width: int):
        super().__init__()
        self.layers = layers
        for i in layers:
            self.register_parameter(f"p_{i}", nn.Parameter(torch.zeros(size, length, width)))
            self.register_parameter(f"k_{i}", nn.Parameter(torch.zeros(size, width)))
            self.register_parameter(f"a_{i}", nn.Parameter(torch.zeros(size, width)))

    def of(self, layer: int) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
        return getattr(self, f"p_{layer}"), getattr(self, f"k_{layer}"), getattr(self, f"a_{layer}")


class CODAPrompt(PromptLearner):
    name = "coda_prompt"

    def __init__(
        self,
        pool_size: int = 100,
        prompt_len: int = 8,
        ortho_mu: float = 0.0,
        layers: list[int] = (0, 1, 2, 3, 4),
        clip_grad: float = 0.0,
    ):
        super().__init__(clip_grad)
        self.pool_size = positive_int("pool_size", pool_size)
        self.length = positive_int("prompt_len", prompt_len)
        if self.length % 2:
            raise ConfigError(
                f"strategy.prompt_len={prompt_len} is invalid; valid: an even number (half "
                "keys, half values)"
            )
        if not isinstance(ortho_mu, int | float) or isinstance(ortho_mu, bool) or ortho_mu < 0:
            raise ConfigError(f"strategy.ortho_mu={ortho_mu!r} is invalid; valid: a number >= 0")
        self.ortho_mu = float(ortho_mu)
        self.layers = layer_indices("layers", layers)
        self.per_task = 0  # M / T, set by attach

    def make_prompts(self, vit: nn.Module, stream: Stream) -> nn.Module:
        tasks, width = len(stream.tasks), vit.embed_dim
        check_layers("layers", self.layers, vit)
        if not tasks <= self.pool_size <= width:
            raise ConfigError(
                f"strategy.pool_size={self.pool_size} is invalid for {tasks} tasks on a ViT of "
                f"width {width}: valid: {tasks}..{width} (M/T components per task, at most "
                "d of them orthogonal)"
            )
        self.per_task = self.pool_size // tasks
        components = Components(self.layers, self.pool_size, self.length, width)
        with torch.no_grad():
            for i in self.layers:  # uniform in [0, 1], then the first task's orthogonalised
                for t in components.of(i):
                    t.uniform_(0, 1, generator=self.generator)
                for t in components.of(i):
                    t.copy_(gram_schmidt(t, 0, self.per_task, self.generator))
        return components

    def span(self, task_id: int) -> tuple[int, int]:
        """The rows of task `task_id`'s components."""
        return task_id * self.per_task, (task_id + 1) * self.per_task

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        super().before_task(model, task, seen)
        if task.id > 0:  # the new task's components, orthogonal to the earlier ones
            start, end = self.span(task.id)
            components = model.backbone.prompts
            with torch.no_grad():
                for i in self.layers:
                    p, k, a = components.of(i)
                    for t in (k, a, p):  # the reference's order
                        t.copy_(gram_schmidt(t, start, end, self.generator))

    def used(self, t: Tensor, training: bool) -> Tensor:
        """The components of tasks 0..current: the earlier ones detached when training."""
        # before the first task (the accuracy before training): the first task's components
        start, end = self.span(self.task.id if self.task is not None else 0)
        return torch.cat([t[:start].detach(), t[start:end]]) if training else t[:end]

    def prompted_features(self, backbone: nn.Module, x: Tensor, task_ids: Any) -> Tensor:
        vit, components, training = self.vit, backbone.prompts, backbone.training
        q = query(vit, x)
        heads, half = vit.blocks[0].attn.num_heads, self.length // 2
        prefixes, penalty, alphas = {}, 0.0, []
        for i in self.layers:
            p, k, a = (self.used(t, training) for t in components.of(i))
            alpha = attention_weights(q, a, k)
            alphas.append(alpha)
            prompt = torch.einsum("bk,kld->bld", alpha, p)  # (B, L_p, d)
            kv = prompt.reshape(len(x), self.length, heads, -1).permute(0, 2, 1, 3)
            prefixes[i] = (kv[:, :, :half], kv[:, :, half:])
            if training and self.ortho_mu > 0:
                penalty = penalty + ortho_penalty(k) + ortho_penalty(a)
                penalty = penalty + ortho_penalty(p.reshape(len(p), -1))
        out = blocks(vit, embed(vit, x), prefixes)
        self.step_terms = {"ortho": penalty, "alpha": torch.stack(alphas)}
        return head_input(vit, out[:, 0])

    def extra_loss(self, model: Classifier) -> Tensor | float:
        return self.ortho_mu * self.step_terms["ortho"]

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        """Per test task, the share of |alpha| on each task's components."""
        was_training = model.training
        model.eval()
        shares = []
        try:
            for task in tasks:
                mass = torch.zeros(len(tasks))
                with torch.no_grad():
                    for s in range(0, len(task.test_y), 256):
                        model.features(task.test_x[s : s + 256])
                        alpha = self.step_terms["alpha"].abs()  # (layers, B, M)
                        alpha = alpha / alpha.sum(dim=2, keepdim=True)
                        per_task = alpha.unflatten(2, (-1, self.per_task)).sum(dim=3)
                        mass += per_task.sum(dim=(0, 1)).cpu()[: len(tasks)]
                shares.append((mass / (len(task.test_y) * len(self.layers))).tolist())
        finally:
            model.train(was_training)
        return {
            "coda_prompt": {
                "pool_size": self.pool_size,
                "components_per_task": self.per_task,
                "alpha_share_per_task": shares,
            }
        }
