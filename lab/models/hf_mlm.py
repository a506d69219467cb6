"""What a masked language model forgets of its pre-training: masked-token accuracy.

    lab-run model=hf model.arch=bert-base-uncased benchmark=text_cl5 \
        pretrain=mlm pretrain.path=~/data/wiki-slice.txt

With `pretrain=mlm` (pretrain.dataset=text_file) and a masked-LM checkpoint, the model's
own MLM head (lab.models.hf_backbone: a frozen copy, never trained) reads the encoder as
it is before the stream and after every task, on a held-out text the user provides (one
passage a line, truncated to data.max_length). `mask_prob` of its tokens (15%, special
tokens never), drawn once with the run's seed, are replaced by the mask token; the
accuracy is the fraction of them whose original token is the head's argmax:

    acc = #{masked positions p : argmax_v head(h_p)[v] = token_p} / #masked positions

It is the "pretrain" column of the accuracy matrix, its metrics kept apart from the
stream's as a classification source's are (lab.pretrain, lab.metrics.source_metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lab.data.text import read_text_file, tokenize
from lab.data.tokens import pack
from lab.errors import ConfigError
from lab.precision import autocast

MASK_PROB = 0.15


@dataclass
class MaskedText:
    """The held-out text, tokenised, with its masked positions and their tokens."""

    masked: Tensor  # packed rows (lab.data.tokens), the chosen positions masked
    rows: Tensor  # (M,) the row of each masked position
    columns: Tensor  # (M,) its position in the row (0: the first token)
    targets: Tensor  # (M,) its original token


def mask_text(
    lines: list[str], tokenizer, max_length: int, mask_prob: float, seed: int
) -> MaskedText:
    """round(mask_prob * N) of the text's N non-special tokens (at least one), drawn
    uniformly with `seed`, replaced by the tokenizer's mask token."""
    if tokenizer.mask_token_id is None:
        raise ConfigError("pretrain=mlm: the tokenizer has no mask token; valid: a masked-LM model")
    ids = tokenize(lines, tokenizer, max_length)
    packed = pack(ids, max(len(i) for i in ids), tokenizer.pad_token_id or 0)
    candidates = [
        (n, p)
        for n, row in enumerate(ids)
        for p, special in enumerate(
            tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
        )
        if not special
    ]
    if not candidates:
        raise ConfigError("pretrain.path: the text has no token to mask; valid: some words")
    count = max(1, round(mask_prob * len(candidates)))
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(candidates), generator=generator)[:count].sort().values
    rows = torch.tensor([candidates[i][0] for i in chosen.tolist()], dtype=torch.int64)
    columns = torch.tensor([candidates[i][1] for i in chosen.tolist()], dtype=torch.int64)
    targets = packed[rows, 1 + columns].long()
    masked = packed.clone()
    masked[rows, 1 + columns] = tokenizer.mask_token_id
    return MaskedText(masked, rows, columns, targets)


class MaskedTokenAccuracy:
    """The MLM column: call it with the model to score it (module docstring)."""

    def __init__(self, text: MaskedText, device: torch.device, batch_size: int, precision: str):
        self.text = MaskedText(*(t.to(device) for t in vars(text).values()))
        self.batch_size, self.precision = batch_size, precision

    @torch.inference_mode()
    def __call__(self, model) -> float:
        backbone, text = model.backbone, self.text
        head = backbone.masked_lm_head.to(text.masked.device)
        was_training = model.training
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=text.masked.device)
        for start in range(0, len(text.masked), self.batch_size):
            stop = start + self.batch_size
            picked = (text.rows >= start) & (text.rows < stop)
            if not picked.any():
                continue
            with autocast(self.precision, text.masked.device):
                hidden = backbone.encode(text.masked[start:stop])
                rows, columns = text.rows[picked] - start, text.columns[picked]
                logits = head(hidden[rows, columns])
            correct += (logits.float().argmax(-1) == text.targets[picked]).sum()
        model.train(was_training)
        return correct.item() / len(text.targets)


def mlm_source(config: dict, model, device: torch.device, precision: str):
    """(description, scorer) of pretrain=mlm's column, or None for another pretrain."""
    settings = config["pretrain"]
    if settings["name"] != "mlm":
        return None
    backbone = model.backbone
    if getattr(backbone, "masked_lm_head", None) is None:
        raise ConfigError(
            f"pretrain=mlm: model.arch={config['model'].get('arch')} has no masked-LM head "
            "(AutoModelForMaskedLM loads it with weights missing, or the model has none); "
            "valid: a masked-LM checkpoint (BERT, RoBERTa, ...), or pretrain=none"
        )
    lines = read_text_file(settings["path"])
    max_length = backbone.max_length(config["data"]["max_length"])
    text = mask_text(lines, backbone.tokenizer, max_length, settings["mask_prob"], config["seed"])
    scorer = MaskedTokenAccuracy(text, device, config["train"]["eval_batch_size"], precision)
    description = (
        f"masked-LM on {settings['path']}: {len(text.targets)} tokens masked in {len(lines)} lines"
    )
    return description, scorer
