"""WebDataset shards (docs/export.md, "webdataset"), written by webdataset's own ``ShardWriter``.

    OUT/shard-000000.tar, shard-000001.tar, …      rolled at 1 GB (or 10,000 samples)

Each sample is the members ``KEY.wav`` (or ``KEY.flac``), ``KEY.json`` and one ``KEY.NAME.npy`` per
feature (``numpy.save`` of the array: no pickles), ``KEY`` being ``session__stream__000012``
with dots written ``%2E`` (webdataset cuts keys at their first dot).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .samples import Sample

SHARD_BYTES = 10**9
SHARD_SAMPLES = 10_000


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def record(sample: Sample) -> dict[str, Any]:
    """The sample as webdataset's writer takes it: extension -> bytes."""
    out: dict[str, Any] = {"__key__": sample.key, sample.audio_format: sample.audio_bytes,
                           "json": json.dumps(sample.meta()).encode(), "mid": sample.midi_file}
    for name, array in sample.features.items():
        out[f"{name}.npy"] = npy_bytes(array)
    return out


def write_webdataset(samples: Iterator[Sample], out: Path, *, shard_bytes: int = SHARD_BYTES,
                     shard_samples: int = SHARD_SAMPLES) -> dict[str, Any]:
    import webdataset

    rows = 0
    try:
        with webdataset.ShardWriter(str(out / "shard-%06d.tar"), maxsize=shard_bytes, maxcount=shard_samples,
                                    verbose=0) as sink:  # verbose=0: no line per shard on stdout
            for sample in samples:
                sink.write(record(sample))
                rows += 1
    except BaseException:
        for path in out.glob("shard-*.tar"):
            path.unlink()
        raise
    files = sorted(out.glob("shard-*.tar"))
    if not rows:
        for path in files:
            path.unlink()
        files = []
    return {"rows": rows, "files": [str(f) for f in files]}
