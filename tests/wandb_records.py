"""Read what an offline W&B run recorded: the records of its run-*.wandb file.

The file is a LevelDB-style log (32 KiB blocks; each chunk a 7-byte header: CRC, length,
kind) of wandb's `Record` protobufs, after a 7-byte file header. wandb 0.2x+ keeps no
reader of its own in Python, so the tests read it here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pieces = 7, b""
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (kind == 0 and length == 0):  # the block's zero padding
            position += left
            continue
        piece = data[position + 7 : position + 7 + length]
        position += 7 + length
        pieces = piece if kind in (FULL, FIRST) else pieces + piece
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def tags_and_summary(run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The run's last tags and its summary (values as JSON text) in the offline run file."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    tags, summary = [], {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            tags = list(record.run.tags)
        elif kind == "summary":
            summary.update({item.key: item.value_json for item in record.summary.update})
    return tags, summary
