"""A task's token sequences, held once on the device, indexed into batches as Images are.

Text is tokenised once (lab.data.text) into one int32 tensor per dataset, a row per
text: its length (column 0), then its token ids, padded with the tokenizer's pad id to
the longest text of the stream (at most data.max_length):

    packed[n] = [length_n, id_n1, ..., id_nL, pad, ..., pad]

`Tokens` is to that tensor what `Images` is to the stored images: the rows of a task,
indexed into batches (`tokens[key]`, a slice or an index tensor) on the training device.
A batch is a plain tensor of one width, so everything the lab does with batches (the
rehearsal memories' select and concat, joint training's whole sets, the Fisher's chunks)
works on text as on images. The backbone's family turns a batch into its inputs
(lab.models.hf_backbone.HFBackbone.encode): cut to the batch's longest sequence, with
the attention mask from the lengths; the engine never learns what a token is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lab.data.images import gather


def pack(ids: list[list[int]], width: int, pad_id: int) -> Tensor:
    """Token id lists as a packed int32 tensor (N, 1 + width): lengths, then the ids."""
    packed = torch.full((len(ids), 1 + width), pad_id, dtype=torch.int32)
    for n, row in enumerate(ids):
        packed[n, 0] = len(row)
        packed[n, 1 : 1 + len(row)] = torch.tensor(row, dtype=torch.int32)
    return packed


def unpack(batch: Tensor) -> tuple[Tensor, Tensor]:
    """A packed batch as (input_ids, attention_mask), int64, cut to its longest sequence."""
    lengths = batch[:, 0].long()
    longest = max(int(lengths.max()), 1) if len(batch) else 1
    ids = batch[:, 1 : 1 + longest].long()
    mask = (torch.arange(longest, device=batch.device)[None, :] < lengths[:, None]).long()
    return ids, mask


def widen(packed: Tensor, width: int, pad_id: int) -> Tensor:
    """A packed tensor padded (with pad_id) to `width` token columns."""
    if packed.shape[1] - 1 >= width:
        return packed
    extra = torch.full((len(packed), width + 1 - packed.shape[1]), pad_id, dtype=packed.dtype)
    return torch.cat([packed, extra], 1)


class Tokens:
    """base[rows[key]]: a task's packed token rows, indexed on demand.

    `tokens[key]`, with a slice or an index tensor, is an int32 tensor (n, 1 + width) on
    `device`; `tokens[:]` is all of them; `select` keeps a subset (a test subsample)."""

    def __init__(
        self, base: Tensor, rows: Tensor | None = None, device: torch.device | None = None
    ):
        self.base, self.rows, self._device = base, rows, device

    def __len__(self) -> int:
        return len(self.base) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.base.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self._device or self.base.device

    def __getitem__(self, key: slice | Tensor) -> Tensor:
        return gather(self.base, self.rows, key, self.device)

    def select(self, index: Tensor) -> Tokens:
        rows = index if self.rows is None else self.rows[index]
        return Tokens(self.base, rows, self._device)

    def token_count(self) -> int:
        """The tokens of all its sequences (the pads not counted)."""
        lengths = (
            self.base[:, 0] if self.rows is None else self.base[self.rows.to(self.base.device), 0]
        )
        return int(lengths.long().sum())
