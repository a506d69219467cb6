"""L2P: learning to prompt, a pool of prompts chosen by key matching, on a frozen ViT.

Wang et al. (2022), "Learning to prompt for continual learning", CVPR (arXiv 2112.08654),
as Mammoth implements it (models/l2p.py, models/l2p_utils/prompt.py, vit_prompt.py):

    pool {(k_1, P_1), ..., (k_M, P_M)},  P_i in R^{L_p x d},  k_i in R^d
    q(x) = f(x)[0]                       the frozen ViT's class-token feature, no prompts
    K_x  = top-N_{i} cos(q(x), k_i)      (eq. 3)
    x_p  = [x_cls; P_{s_1}; ...; P_{s_N}; x_e]   the prompts after the class token, each
           with the class token's position embedding (the reference's resize_pos_embed
           copies it to the prompt positions)
    f    = mean of the N L_p prompt tokens' outputs after the final norm (head_type=prompt)
    loss = CE_task(g(f), y) - lambda * sum_{i in K_x} cos(q(x), k_i) / B      (eq. 5)

CE_task is the cross-entropy over the current task's classes (the reference's train mask);
the second term is the pull constraint (reduce_sim: summed over the batch and the N keys,
divided by the batch size). `batchwise_prompt` replaces each sample's top-N by the batch's N
most frequent (a majority vote that sees the test batch: Mammoth warns it is unfair, and it
is off by default). The prompts and keys start uniform in [-1, 1], as the reference's.
results.json `l2p`: how often each prompt is chosen on each task's test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lab.data import Stream, Task
from lab.models import Classifier
from lab.strategies.prompting import (
    PromptLearner,
    embed,
    head_input,
    key_matching,
    l2_normalize,
    positive_int,
    pull_constraint,
    query,
    top_n,
)


class PromptPool(nn.Module):
    """M prompts (M, L_p, d) and their keys (M, d), uniform in [-1, 1]."""

    def __init__(self, size: int, length: int, width: int, generator: torch.Generator):
        super().__init__()
        self.prompt = nn.Parameter(torch.rand(size, length, width, generator=generator) * 2 - 1)
        self.key = nn.Parameter(torch.rand(size, width, generator=generator) * 2 - 1)


class L2P(PromptLearner):
    name = "l2p"

    def __init__(
        self,
        pool_size: int = 10,
        length: int = 5,
        top_k: int = 5,
        pull_constraint_coeff: float = 0.1,
        batchwise_prompt: bool = False,
        clip_grad: float = 1.0,
    ):
        super().__init__(clip_grad)
        self.pool_size = positive_int("pool_size", pool_size)
        self.length = positive_int("length", length)
        self.top_k, self.coeff, self.batchwise = key_matching(
            top_k, self.pool_size, pull_constraint_coeff, batchwise_prompt, "pool_size"
        )

    def make_prompts(self, vit: nn.Module, stream: Stream) -> nn.Module:
        return PromptPool(self.pool_size, self.length, vit.embed_dim, self.generator)

    def select(self, pool: PromptPool, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(the chosen indices (B, N), the normalised query (B, d), the normalised keys)."""
        q, keys = l2_normalize(q, dim=1), l2_normalize(pool.key, dim=1)
        idx = top_n(q @ keys.t(), self.top_k, self.batchwise, self.pool_size)
        return idx, q, keys

    def prompted_features(self, backbone: nn.Module, x: Tensor, task_ids: Any) -> Tensor:
        vit, pool = self.vit, backbone.prompts
        idx, q, keys = self.select(pool, query(vit, x))
        tokens = embed(vit, x)
        chosen = pool.prompt[idx].flatten(1, 2)  # (B, N L_p, d)
        # the class token's position embedding on every prompt (the reference's pos_embed)
        chosen = vit.pos_drop(chosen + vit.pos_embed[:, :1].to(chosen.dtype))
        tokens = torch.cat([tokens[:, :1], chosen.to(tokens.dtype), tokens[:, 1:]], dim=1)
        out = vit.norm(vit.blocks(tokens))
        if backbone.training:
            self.step_terms = {"pull": pull_constraint(q, keys[idx])}
        return head_input(vit, out[:, 1 : 1 + chosen.shape[1]].mean(dim=1))

    def extra_loss(self, model: Classifier) -> Tensor | float:
        return -self.coeff * self.step_terms["pull"]

    @torch.no_grad()
    def chosen(self, model: Classifier, x: Any, batch_size: int = 256) -> Tensor:
        """The prompts chosen for every sample of x (n, N), in eval mode."""
        pool = model.backbone.prompts
        parts = [
            self.select(pool, query(self.vit, x[s : s + batch_size]))[0]
            for s in range(0, len(x), batch_size)
        ]
        return torch.cat(parts)

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        """Per task, the fraction of its test samples that chose each prompt (each sample
        chooses top_k of them: each row sums to top_k)."""
        frequencies = []
        for task in tasks:
            idx = self.chosen(model, task.test_x)
            counts = torch.bincount(idx.flatten().cpu(), minlength=self.pool_size)
            frequencies.append((counts / len(idx)).tolist())
        return {
            "l2p": {
                "pool_size": self.pool_size,
                "top_k": self.top_k,
                "batchwise_prompt": self.batchwise,
                "prompt_frequencies": frequencies,
            }
        }
