"""A Hugging Face encoder as a backbone (model=hf model.arch=NAME_OR_DIR), for text.

    model=hf model.arch=bert-base-uncased                 the hub's (online once, then cached)
    model=hf model.arch=~/models/my-bert model.pooling=mean   a save_pretrained directory

The backbone is transformers' AutoModel for `arch` with its AutoTokenizer (a fast one);
the lab's heads go on top of its features: the first token's final hidden state
([CLS], `pooling=cls`) or the mean over the text's tokens (`pooling=mean`, the pads left
out). What the rest of the lab needs comes from the model itself:

- inputs: a batch of packed token rows (lab.data.tokens) is cut to its longest sequence,
  with the attention mask from the lengths (`encode`): the engine never learns what a
  token is;
- layer groups: the embeddings (with whatever else lies outside the layers, e.g. a
  prompt), then each transformer layer: for freezing, layer-wise lr decay, progressive
  unfreezing, probes and CKA (each group's output is its hidden states, pooled as the
  features are, so that every text gives one vector);
- the masked-LM head, where the checkpoint has one (AutoModelForMaskedLM loads it with no
  missing weight), is kept aside as `masked_lm_head`: a frozen copy outside the module
  tree (not trained, not regularised, not in the state_dict; its decoder untied from the
  input embeddings, so it stays as pre-trained), for measuring what the model forgets of
  its pre-training (lab.models.hf_mlm).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from lab.data.tokens import unpack
from lab.errors import ConfigError, WeightsError, brief
from lab.models.groups import LayerGroup

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")


class Tap(nn.Identity):
    """Where a layer group's pooled output is seen (CKA's hooks): called only when hooked."""


class HFBackbone(nn.Module):
    """transformers' encoder `arch` without a task head; its output is the pooled features."""

    def __init__(self, input_shape: tuple[int, ...] | None, arch: str, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling={pooling!r} is invalid; valid: {', '.join(POOLINGS)}")
        self.arch, self.pooling = arch, pooling
        self.pretrained = True  # kept as loaded: no lab re-initialisation
        tokenizer, encoder, head = load(arch)
        self.encoder = encoder
        self.out_features = encoder.config.hidden_size
        self.virtual_tokens = 0  # prompt tuning's, prepended to every text (lab.models.hf_peft)
        self.taps = nn.ModuleList(Tap() for _ in range(len(self._layers()) + 1))
        # kept out of the module tree (see the module's docstring)
        object.__setattr__(self, "tokenizer", tokenizer)
        object.__setattr__(self, "masked_lm_head", head)

    def model(self) -> nn.Module:
        """The transformers model itself (inside a peft wrapper, if any)."""
        inner = self.encoder
        return inner.get_base_model() if hasattr(inner, "get_base_model") else inner

    def _layers(self) -> nn.ModuleList:
        """The transformer layers: the longest ModuleList of num_hidden_layers modules."""
        model, depth = self.model(), self.model().config.num_hidden_layers
        lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
        if not lists:
            raise ConfigError(
                f"model.arch={self.arch}: no list of its {depth} layers was found; valid: a "
                "transformer encoder (BERT, RoBERTa, DistilBERT, DeBERTa, ...)"
            )
        return lists[0]

    def encode(self, batch: Tensor) -> Tensor:
        """The last hidden states (n, length, hidden) of a packed batch, cut to its longest
        sequence (prompt tuning's virtual tokens dropped)."""
        ids, mask = unpack(batch)
        return self.hidden_states(ids, mask)[-1]

    def hidden_states(self, ids: Tensor, mask: Tensor, every: bool = False) -> tuple[Tensor, ...]:
        out = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=every)
        states = out.hidden_states if every else (out.last_hidden_state,)
        if self.virtual_tokens:
            states = tuple(h[:, self.virtual_tokens :] for h in states)
        return states

    def pool(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(self, x: Tensor) -> Tensor:
        ids, mask = unpack(x)
        tapped = any(tap._forward_hooks for tap in self.taps)
        states = self.hidden_states(ids, mask, every=tapped)
        if tapped:  # embeddings, then each layer
            for tap, hidden in zip(self.taps, states, strict=True):
                tap(self.pool(hidden, mask))
        return self.pool(states[-1], mask)

    def layer_groups(self) -> list[LayerGroup]:
        """The embeddings (and all else outside the layers), then each transformer layer."""
        names = {id(p): f"backbone.{n}" for n, p in self.named_parameters()}
        layers = self._layers()
        inside = set()
        groups = []
        for i, layer in enumerate(layers):
            params = [(names[id(p)], p) for p in layer.parameters() if id(p) in names]
            inside |= {id(p) for _, p in params}
            groups.append(LayerGroup(_label(names, params, f"layer.{i}"), params, self.taps[i + 1]))
        rest = [(n, p) for n, p in self.named_parameters() if id(p) not in inside]
        first = LayerGroup(
            "backbone.embeddings", [(f"backbone.{n}", p) for n, p in rest], self.taps[0]
        )
        return [first, *groups]

    def max_length(self, wanted: int) -> int:
        """`wanted` tokens, or fewer where the model takes fewer (its positions)."""
        limit = getattr(self.tokenizer, "model_max_length", None) or wanted
        positions = getattr(self.model().config, "max_position_embeddings", None) or wanted
        return int(min(wanted, limit, positions))

    def lora_targets(self) -> list[str]:
        """Every Linear of the encoder; names in the backbone."""
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear)]


def _label(names: dict[int, str], params: list[tuple[str, nn.Parameter]], default: str) -> str:
    """A layer's group name: its module path (e.g. backbone.encoder.encoder.layer.3)."""
    if not params:
        return f"backbone.{default}"
    first = params[0][0].split(".")
    for end in range(len(first), 0, -1):
        prefix = ".".join(first[:end])
        if all(n.startswith(prefix + ".") for n, _ in params):
            return prefix
    return f"backbone.{default}"


def _source(arch: str) -> str:
    """A local directory as a path; anything else as a hub name."""
    path = Path(arch).expanduser()
    if path.is_dir():
        return str(path)
    if arch.startswith((".", "/", "~")) or arch.count("/") > 1:
        raise ConfigError(
            f"model.arch={arch}: no such directory; valid: a save_pretrained directory "
            "(config.json, the weights, the tokenizer's files) or a hub name, e.g. "
            "bert-base-uncased"
        )
    return arch


@contextlib.contextmanager
def _quiet():
    """transformers' load reports and progress bars off while the model loads."""
    import huggingface_hub.utils
    import transformers

    level = transformers.logging.get_verbosity()
    hub = huggingface_hub.utils.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()  # its retries, one line each
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        huggingface_hub.utils.logging.set_verbosity(hub)
        transformers.logging.enable_progress_bar()


def load(arch: str) -> tuple[object, nn.Module, nn.Module | None]:
    """(tokenizer, encoder, masked-LM head or None) of `arch`; one line for each failure."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    source = _source(arch)
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(source)
            try:
                masked_lm, info = AutoModelForMaskedLM.from_pretrained(
                    source, output_loading_info=True, dtype=torch.float32
                )
            except ValueError:  # a model type without a masked-LM class
                masked_lm, info = None, {}
            if masked_lm is None or info.get("missing_keys"):
                encoder, head = AutoModel.from_pretrained(source, dtype=torch.float32), None
            else:
                encoder, head = masked_lm.base_model, _head(masked_lm)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a download or a directory: one line each
        where = (
            f"the directory {source} cannot be loaded"
            if Path(source).is_dir()
            else "not downloadable from the hub here"
        )
        raise WeightsError(
            f"model.arch={arch}: {where} ({brief(error)}); valid: a hub name (run once online: "
            "huggingface_hub caches it in ~/.cache/huggingface) or a directory written by "
            "save_pretrained (the model's and its tokenizer's)"
        ) from None
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # BERT's pooler: the lab pools itself
    return tokenizer, encoder, head


def _head(masked_lm: nn.Module) -> nn.Module | None:
    """The masked-LM head of `masked_lm`, copied and frozen: its one child beside the base
    model (BERT's cls, RoBERTa's lm_head); None where it has no single one."""
    children = [m for n, m in masked_lm.named_children() if n != masked_lm.base_model_prefix]
    if len(children) != 1:
        log.info("%s: no single masked-LM head module; no MLM column", type(masked_lm).__name__)
        return None
    return copy.deepcopy(children[0]).requires_grad_(False).eval()
