"""Files ``torch.load`` reads (docs/export.md, "pytorch").

    OUT/windows-00000.pt, windows-00001.pt, …     rolled at 128 MB of tensors

Each file is ``{"format": "sendlearn-windows", "version": 1, "samples": [item, …]}``, every item the
dict ``sendlearn.dataset.torch.WindowDataset`` gives (tensors, str, int, float, bool, bytes, lists and
dicts only), so ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .samples import Sample, publish_parts

SHARD_BYTES = 128 * 2**20  # held in memory until saved
FORMAT, VERSION = "sendlearn-windows", 1


def _bytes(item: dict[str, Any]) -> int:
    return int(item["audio"].nbytes + sum(t.nbytes for t in item["features"].values()) + 64 * len(item["midi_data"]))


def write_pytorch(samples: Iterator[Sample], out: Path, *, shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
    import torch

    from sendlearn.dataset.torch import sample_item

    parts: list[Path] = []
    pending: list[dict[str, Any]] = []
    size = rows = 0

    def flush() -> None:
        nonlocal pending, size
        parts.append(out / f".windows-{len(parts):05d}.pt.part")
        torch.save({"format": FORMAT, "version": VERSION, "samples": pending}, parts[-1])
        pending, size = [], 0

    try:
        for sample in samples:
            item = sample_item(sample)
            pending.append(item)
            size += _bytes(item)
            rows += 1
            if size >= shard_bytes:
                flush()
        if pending:
            flush()
    except BaseException:
        for path in parts:
            path.unlink(missing_ok=True)
        raise
    return {"rows": rows, "files": publish_parts(out, parts)}
