"""Files ``torch.load`` reads (docs/export.md, "pytorch").

    OUT/{split}-00000.pt, {split}-00001.pt, …     per split (train, validation, test), rolled at 128 MB of tensors

Each file is ``{"format": "sendlearn-windows", "version": 1, "split": SPLIT, "samples": [item, …]}``, every item the
dict ``sendlearn.dataset.torch.WindowDataset`` gives (tensors, str, int, float, bool, bytes, lists and
dicts only), so ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sendlearn.dataset.splits import SPLITS

from .samples import Sample, discard_split_parts, publish_split_parts

SHARD_BYTES = 128 * 2**20  # held in memory until saved
FORMAT, VERSION = "sendlearn-windows", 1


def _bytes(item: dict[str, Any]) -> int:
    return int(item["audio"].nbytes + sum(t.nbytes for t in item["features"].values()) + 64 * len(item["midi_data"]))


def write_pytorch(samples: Iterator[Sample], out: Path, *, shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
    import torch

    from sendlearn.dataset.torch import sample_item

    parts: dict[str, list[Path]] = {}
    pending: dict[str, list[dict[str, Any]]] = {}
    size: dict[str, int] = {}
    rows: dict[str, int] = {}

    def flush(split: str) -> None:
        paths = parts.setdefault(split, [])
        paths.append(out / f".{split}-{len(paths):05d}.pt.part")
        torch.save({"format": FORMAT, "version": VERSION, "split": split, "samples": pending[split]}, paths[-1])
        pending[split], size[split] = [], 0

    try:
        for sample in samples:
            item = sample_item(sample)
            split = sample.split
            pending.setdefault(split, []).append(item)
            size[split] = size.get(split, 0) + _bytes(item)
            rows[split] = rows.get(split, 0) + 1
            if size[split] >= shard_bytes:
                flush(split)
        for split in list(pending):
            if pending[split]:
                flush(split)
    except BaseException:
        discard_split_parts(parts)
        raise
    return publish_split_parts(out, parts, rows, SPLITS)
