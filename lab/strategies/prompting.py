"""What the prompt learners on a frozen pre-trained ViT share (L2P, DualPrompt, CODA-Prompt).

All three follow the same recipe (Wang et al. 2022a, 2022b; Smith et al. 2023, as Mammoth
implements them in models/l2p.py, models/dualprompt.py, models/coda_prompt.py):

- the query q(x) is the frozen pre-trained ViT's class-token feature, a forward without any
  prompt, in eval mode and without gradients (the references keep an `original_model`: here
  the same ViT with the prompts off, exact since its weights are frozen and cheaper in
  memory);
- prompts chosen from q(x) enter a second, prompted forward: as tokens after the class token
  (L2P) or as prefixes of the attention's keys and values at some layers (DualPrompt,
  CODA-Prompt); the backbone stays frozen, the prompts and the head train;
- the loss is the cross-entropy over the current task's classes alone (the references'
  `logits[:, :offset_1] = -inf` and `logits[:, :offset_2]`), plus each method's own term;
- at test time the head scores the classes seen so far alone (the references'
  `forward(x)[:, :offset_2]`): the outputs of classes not seen yet never trained and are
  masked, by `SeenClassesHead`.

The prompted forward is `Classifier.select_features`, so training, evaluation and every
analysis read the same features; the prompts live in the backbone (`backbone.prompts`), so
the optimizer, the checkpoint and the device see them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.data import Stream, Task
from lab.errors import ConfigError
from lab.finetune.prefix import prefixed_attention
from lab.finetune.registry import describe, vit_of
from lab.models import Classifier
from lab.strategies.base import Batch, Strategy

PROMPT_LEARNERS = ("l2p", "dualprompt", "coda_prompt")  # the strategies built on this module
VALID_BACKBONE = "model=timm model.arch=test_vit (any timm ViT with a class token)"
BLOCK = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


def prompted_vit(model: Classifier, method: str) -> nn.Module:
    """The timm ViT the method prompts, or a one-line ConfigError naming the valid choice."""
    vit = vit_of(model.backbone)
    ok = (
        vit is not None
        and getattr(vit, "cls_token", None) is not None
        and not getattr(vit, "no_embed_class", True)  # the class token has a position
        and getattr(vit, "global_pool", None) == "token"
        and getattr(vit, "attn_pool", None) is None
        and all(all(hasattr(b, a) for a in BLOCK) for b in vit.blocks)
        and all(hasattr(b.attn, "qkv") and hasattr(b.attn, "head_dim") for b in vit.blocks)
    )
    if not ok:
        raise ConfigError(
            f"strategy={method} prompts a ViT's class-token model, not "
            f"{describe(model.backbone)}; valid: {VALID_BACKBONE}"
        )
    return vit


def positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"strategy.{name}={value!r} is invalid; valid: an integer >= 1")
    return value


def layer_indices(name: str, value: Any) -> list[int]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    ):
        raise ConfigError(f"strategy.{name}={value!r} is invalid; valid: a list of layer indices")
    return list(value)


def check_layers(name: str, layers: list[int], vit: nn.Module) -> None:
    depth = len(vit.blocks)
    if any(i >= depth for i in layers):
        raise ConfigError(
            f"strategy.{name}={layers} is invalid for a ViT of {depth} blocks; valid: indices "
            f"in 0..{depth - 1}"
        )


def key_matching(
    top_k: int, pool: int, coeff: Any, batchwise: Any, pool_key: str
) -> tuple[int, float, bool]:
    """The validated (top_k, pull_constraint_coeff, batchwise_prompt) of a key-matched pool
    of `pool` prompts (strategy.`pool_key`)."""
    top_k = positive_int("top_k", top_k)
    if top_k > pool:
        raise ConfigError(
            f"strategy.top_k={top_k} is invalid; valid: 1..{pool} (strategy.{pool_key})"
        )
    if not isinstance(coeff, int | float) or isinstance(coeff, bool) or coeff < 0:
        raise ConfigError(
            f"strategy.pull_constraint_coeff={coeff!r} is invalid; valid: a number >= 0"
        )
    if not isinstance(batchwise, bool):
        raise ConfigError(f"strategy.batchwise_prompt={batchwise!r} is invalid; valid: true, false")
    return top_k, float(coeff), batchwise


def l2_normalize(x: Tensor, dim: int = -1, epsilon: float = 1e-12) -> Tensor:
    """x / max(||x||, sqrt(epsilon)) along `dim`, as the references normalise (rsqrt of the
    clamped square sum, l2p_utils/prompt.py l2_normalize)."""
    square = x.square().sum(dim=dim, keepdim=True)
    return x * torch.rsqrt(torch.clamp(square, min=epsilon))


def pull_constraint(query: Tensor, chosen_keys: Tensor) -> Tensor:
    """sum over the batch and the chosen keys of cos(q(x), k_i), divided by the batch size
    (the references' reduce_sim, subtracted from the loss): q (B, d), keys (B, N, d), both
    already l2-normalised."""
    return (chosen_keys * query.unsqueeze(1)).sum() / len(query)


def top_n(similarity: Tensor, n: int, batchwise: bool, pool: int) -> Tensor:
    """The indices (B, n) of the n keys most similar to each query (B, pool); `batchwise`:
    the n prompts most often chosen in the batch, for every sample (the references' majority
    vote: ties to the lower index, as torch.unique's sorted counts give them)."""
    idx = similarity.topk(n, dim=1).indices
    if not batchwise:
        return idx
    ids, counts = torch.unique(idx, return_counts=True, sorted=True)
    if len(ids) < pool:  # jnp.unique's padding, as the references copy it
        fill = idx.min()
        ids = torch.cat([ids, fill.expand(pool - len(ids))])
        counts = torch.cat([counts, counts.new_zeros(pool - len(counts))])
    return ids[counts.topk(n).indices].expand(len(idx), -1)


@torch.no_grad()
def query(vit: nn.Module, x: Tensor) -> Tensor:
    """q(x): the frozen ViT's class-token feature without prompts (after the final norm), in
    eval mode (no dropout, as the references' original_model.eval()), without gradients."""
    was_training = vit.training
    vit.eval()
    try:
        return vit.forward_head(vit.forward_features(x), pre_logits=True)
    finally:
        vit.train(was_training)


def embed(vit: nn.Module, x: Tensor) -> Tensor:
    """The token sequence the first block reads: [class; patches], position embedded."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


def blocks(vit: nn.Module, x: Tensor, prefixes: dict[int, tuple[Tensor, Tensor]]) -> Tensor:
    """The ViT's blocks on x, block i's attention with the prefix keys and values
    prefixes[i] (B, heads, P, d_h) each; then the final norm."""
    for i, block in enumerate(vit.blocks):
        if i in prefixes:
            keys, values = prefixes[i]
            attended = prefixed_attention(block.attn, block.norm1(x), keys, values)
            x = x + block.drop_path1(block.ls1(attended))
            x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
        else:
            x = block(x)
    return vit.norm(x)


def head_input(vit: nn.Module, pooled: Tensor) -> Tensor:
    """What the ViT's own head path does to its pooled feature (fc_norm, head dropout)."""
    return vit.head_drop(vit.fc_norm(pooled))


class SeenClassesHead(nn.Linear):
    """The class-IL head, its outputs of classes not seen yet at -inf (`seen`, a buffer in
    the checkpoint): the references score the seen classes alone (forward()[:, :offset_2])."""

    def __init__(self, head: nn.Linear):
        super().__init__(head.in_features, head.out_features, device=head.weight.device)
        with torch.no_grad():
            self.weight.copy_(head.weight)
            self.bias.copy_(head.bias)
        self.register_buffer("seen", torch.zeros(head.out_features, dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        logits = super().forward(x)
        return logits.masked_fill(~self.seen, float("-inf"))


def task_masked_ce(logits: Tensor, y: Tensor, task: Task) -> Tensor:
    """The cross-entropy over `task`'s classes alone (the references' train mask)."""
    current = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    current[task.outputs] = True
    return F.cross_entropy(logits.float().masked_fill(~current, float("-inf")), y)


class PromptLearner(Strategy):
    """The shared hooks: attach freezes the ViT and installs the head and the prompted
    forward; before_task marks the task's classes seen; the loss is the task-masked
    cross-entropy plus `extra_loss`; gradients are clipped to `clip_grad` (0: not)."""

    scenarios = ("class",)  # lab.config refuses the others in one line
    finetune_modes = ("full",)  # the method freezes the backbone itself

    def __init__(self, clip_grad: float):
        if not isinstance(clip_grad, int | float) or isinstance(clip_grad, bool) or clip_grad < 0:
            raise ConfigError(f"strategy.clip_grad={clip_grad!r} is invalid; valid: a number >= 0")
        self.clip_grad = float(clip_grad)
        self.task: Task | None = None
        self.vit: nn.Module | None = None
        self.step_terms: dict[str, Tensor] = {}  # what the last training forward measured

    def attach(self, model: Classifier, stream: Stream) -> None:
        self.vit = prompted_vit(model, self.name)
        model.backbone.requires_grad_(False)
        model.heads[0] = SeenClassesHead(model.heads[0])
        model.backbone.prompts = self.make_prompts(self.vit, stream)
        model.select_features = self.prompted_features

    def make_prompts(self, vit: nn.Module, stream: Stream) -> nn.Module:
        raise NotImplementedError

    def prompted_features(self, backbone: nn.Module, x: Tensor, task_ids: Any) -> Tensor:
        raise NotImplementedError

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        self.task = task
        with torch.no_grad():
            model.heads[0].seen[task.outputs] = True

    def extra_loss(self, model: Classifier) -> Tensor | float:
        return 0.0

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        return task_masked_ce(logits, batch.y, self.task) + self.extra_loss(model)

    def after_backward(self, model: Classifier) -> None:
        if self.clip_grad > 0:  # the references' clip_grad_norm_ over what trains
            trained = [p for p in model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(trained, self.clip_grad)
