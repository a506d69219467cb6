"""DualPrompt: a G-prompt shared by all tasks and an E-prompt per task, as prefixes.

Wang et al. (2022), "DualPrompt: complementary prompting for rehearsal-free continual
learning", ECCV (arXiv 2204.04799), as Mammoth implements it (models/dualprompt.py,
models/dualprompt_utils/{prompt,vision_transformer,attention}.py):

    g   in R^{|G| x 2 x L_g x d}         one G-prompt per layer of g_prompt_layer_idx
    e_t in R^{|E| x 2 x L_e x d}, k_t    one E-prompt and key per task (the pool's slot t)
    prefix tuning (eq. 2) at a layer with prompt p = (p_K, p_V):
        h = softmax(Q [p_K; K]^T / sqrt(d_h)) [p_V; V]      per head
    training on task t: e_t and k_t (the task's own slot)
    test:  t(x) = argmax_t cos(q(x), k_t)                  (eq. 5, key matching)
    loss = CE_task(g(f), y) - lambda * cos(q(x), k_t) summed over the batch / B   (eq. 6)

f is the class token's output after the final norm (head_type=token); q(x) the frozen
ViT's class-token feature without prompts. At the start of every task t > 0 the E-prompt of
slot t starts as a copy of slot t-1's (the reference's begin_task); the keys start uniform
in [-1, 1], as every prompt does. The key and value halves of an E-prompt are its
dimension 1, as the paper writes them (the reference's use_permute_fix=1; its default
reshape mixes them across the batch: docs/ptm-prompt.md). results.json `dualprompt`: per
task, the fraction of its test samples whose key matching chose its own E-prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
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
    key_matching,
    l2_normalize,
    layer_indices,
    positive_int,
    pull_constraint,
    query,
    top_n,
)


class DualPrompts(nn.Module):
    """The G-prompt (|G|, 2, L_g, heads, d_h), the E-prompt pool (|E|, 2, M, L_e, heads, d_h)
    and the E-keys (M, d), the shapes of the reference's, uniform in [-1, 1]."""

    def __init__(self, g: tuple[int, ...], e: tuple[int, ...], width: int, generator):
        super().__init__()

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.rand(*shape, generator=generator) * 2 - 1)

        self.g_prompt = uniform(*g)
        self.e_prompt = uniform(*e)
        self.e_key = uniform(e[2], width)


class DualPrompt(PromptLearner):
    name = "dualprompt"

    def __init__(
        self,
        g_prompt_length: int = 5,
        g_prompt_layer_idx: list[int] = (0, 1),
        e_prompt_layer_idx: list[int] = (2, 3, 4),
        size: int = 10,
        length: int = 5,
        top_k: int = 1,
        pull_constraint_coeff: float = 1.0,
        batchwise_prompt: bool = False,
        clip_grad: float = 1.0,
    ):
        super().__init__(clip_grad)
        self.g_length = positive_int("g_prompt_length", g_prompt_length)
        self.g_layers = layer_indices("g_prompt_layer_idx", g_prompt_layer_idx)
        self.e_layers = layer_indices("e_prompt_layer_idx", e_prompt_layer_idx)
        if set(self.g_layers) & set(self.e_layers):
            raise ConfigError(
                f"strategy.e_prompt_layer_idx={self.e_layers} shares layers with "
                f"g_prompt_layer_idx={self.g_layers}; valid: disjoint lists"
            )
        self.size = positive_int("size", size)
        self.length = positive_int("length", length)
        self.top_k, self.coeff, self.batchwise = key_matching(
            top_k, self.size, pull_constraint_coeff, batchwise_prompt, "size"
        )

    def make_prompts(self, vit: nn.Module, stream: Stream) -> nn.Module:
        check_layers("g_prompt_layer_idx", self.g_layers, vit)
        check_layers("e_prompt_layer_idx", self.e_layers, vit)
        heads, dim = vit.blocks[0].attn.num_heads, vit.blocks[0].attn.head_dim
        g = (len(self.g_layers), 2, self.g_length, heads, dim)
        e = (len(self.e_layers), 2, self.size, self.length, heads, dim)
        return DualPrompts(g, e, vit.embed_dim, self.generator)

    def own_slots(self, task_id: int) -> range | None:
        """The pool slots of task `task_id` (its top_k of them), None past the pool's end
        (the reference then falls back to key matching)."""
        end = (task_id + 1) * self.top_k
        return range(task_id * self.top_k, end) if end <= self.size else None

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        super().before_task(model, task, seen)
        current, previous = self.own_slots(task.id), self.own_slots(task.id - 1)
        if task.id > 0 and current is not None and previous is not None:
            e = model.backbone.prompts.e_prompt
            with torch.no_grad():  # the new task's E-prompt starts from the last one's
                e[:, :, current.start : current.stop] = e[:, :, previous.start : previous.stop]

    def match(
        self, prompts: DualPrompts, q: Tensor, batchwise: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(the E-prompts chosen by key matching (B, top_k), q and the keys, normalised);
        `batchwise` overrides the configured vote (None: the configured)."""
        q, keys = l2_normalize(q, dim=-1), l2_normalize(prompts.e_key, dim=-1)
        vote = self.batchwise if batchwise is None else batchwise
        return top_n(q @ keys.t(), self.top_k, vote, self.size), q, keys

    def prompted_features(self, backbone: nn.Module, x: Tensor, task_ids: Any) -> Tensor:
        vit, prompts = self.vit, backbone.prompts
        idx, q, keys = self.match(prompts, query(vit, x))
        own = self.own_slots(self.task.id) if backbone.training else None
        if own is not None:  # training: the task's own E-prompt, whatever the keys say
            idx = torch.arange(own.start, own.stop, device=x.device).expand(len(x), -1)
        B = len(x)
        prefixes = {}
        for c, layer in enumerate(self.g_layers):
            kv = prompts.g_prompt[c].permute(0, 2, 1, 3)  # (2, heads, L_g, d_h)
            prefixes[layer] = (kv[0].expand(B, -1, -1, -1), kv[1].expand(B, -1, -1, -1))
        for c, layer in enumerate(self.e_layers):
            chosen = prompts.e_prompt[c][:, idx]  # (2, B, top_k, L_e, heads, d_h)
            kv = chosen.flatten(2, 3).permute(0, 1, 3, 2, 4)  # (2, B, heads, N L_e, d_h)
            prefixes[layer] = (kv[0], kv[1])
        out = blocks(vit, embed(vit, x), prefixes)
        if backbone.training:
            self.step_terms = {"pull": pull_constraint(q, keys[idx])}
        return head_input(vit, out[:, 0])

    def extra_loss(self, model: Classifier) -> Tensor | float:
        return -self.coeff * self.step_terms["pull"]

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        """Per task, how often key matching chose its own E-prompt on its test samples
        (sample by sample), and how often each slot was chosen."""
        prompts, own, frequencies = model.backbone.prompts, [], []
        for task in tasks:
            with torch.no_grad():
                idx = torch.cat(
                    [
                        self.match(prompts, query(self.vit, task.test_x[s : s + 256]), False)[0]
                        for s in range(0, len(task.test_y), 256)
                    ]
                ).cpu()
            slots = self.own_slots(task.id)
            right = torch.isin(idx[:, 0], torch.tensor(list(slots))) if slots else None
            own.append(right.float().mean().item() if right is not None else None)
            counts = torch.bincount(idx.flatten(), minlength=self.size)
            frequencies.append((counts / len(idx)).tolist())
        return {
            "dualprompt": {
                "own_e_prompt_chosen": own,
                "e_prompt_frequencies": frequencies,
                "batchwise_prompt": self.batchwise,
            }
        }
