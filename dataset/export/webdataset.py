"""WebDataset shards (docs/export.md, "webdataset"), written by webdataset's own ``ShardWriter``.

    OUT/{split}/shard-000000.tar, shard-000001.tar, …   per split (train, validation, test), rolled at 1 GB
                                                       (or 10,000 samples)

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

from sendlearn.dataset.splits import SPLITS

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

    rows: dict[str, int] = {}
    sinks: dict[str, Any] = {}
    try:
        try:
            for sample in samples:
                if sample.split not in sinks:
                    (out / sample.split).mkdir(exist_ok=True)
                    sinks[sample.split] = webdataset.ShardWriter(  # verbose=0: no line per shard on stdout
                        str(out / sample.split / "shard-%06d.tar"), maxsize=shard_bytes, maxcount=shard_samples,
                        verbose=0)
                    rows[sample.split] = 0
                sinks[sample.split].write(record(sample))
                rows[sample.split] += 1
        finally:
            for sink in sinks.values():
                sink.close()
    except BaseException:
        for split in sinks:
            for path in (out / split).glob("shard-*.tar"):
                path.unlink()
            (out / split).rmdir()
        raise
    files = [path for split in SPLITS if split in sinks for path in sorted((out / split).glob("shard-*.tar"))]
    return {"rows": sum(rows.values()), "files": [str(f) for f in files], "splits": rows}
