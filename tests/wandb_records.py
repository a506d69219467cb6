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


def offline_run(run_dir: Path) -> dict:
    """What the offline W&B run under run_dir recorded: its group, job type and name (as
    started), its tags (as last set) and its summary (values as JSON text)."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    run: dict = {"summary": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            if "group" not in run:
                run.update(
                    group=record.run.run_group,
                    job_type=record.run.job_type,
                    name=record.run.display_name,
                )
            run["tags"] = list(record.run.tags)
        elif kind == "summary":
            run["summary"].update({item.key: item.value_json for item in record.summary.update})
    return run


def logged_keys(run_dir: Path) -> set[str]:
    """Every key the offline W&B run under run_dir logged to its history or summary."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    found = set()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        items = (
            record.history.item
            if kind == "history"
            else record.summary.update
            if kind == "summary"
            else []
        )
        for item in items:
            found.add(item.key or "/".join(item.nested_key))
    return found


def offline_artifacts(run_dir: Path) -> list[dict]:
    """The artifacts the offline W&B run under run_dir logged: name, type and files."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    return [
        {
            "name": record.artifact.name,
            "type": record.artifact.type,
            "files": [entry.path for entry in record.artifact.manifest.contents],
        }
        for record in records(path)
        if record.WhichOneof("record_type") == "artifact"
    ]
