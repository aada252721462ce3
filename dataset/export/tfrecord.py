"""TFRecord files of ``tf.train.Example`` records (docs/export.md, "tfrecord"), written with the
``tfrecord`` package (no TensorFlow needed to write or to read them).

    OUT/{split}-00000.tfrecord, {split}-00001.tfrecord, …     per split (train, validation, test), rolled at 256 MB

One Example per sample. Features: ``session``, ``stream``, ``split``, ``audio_format``, ``audio_subtype``
(bytes); ``window``, ``start_sample``, ``frames``, ``sample_rate``, ``channels`` (int64); ``audio``
(the window's audio file: float32 WAV or FLAC at the source's depth); ``midi_sample`` (int64 list,
relative to the window) and ``midi_data`` (bytes list, one message each); ``flags`` (bytes list);
``meta`` (JSON bytes: playhead, timeline, params, midi_timing_error, as webdataset's ``.json``);
per feature ``features/NAME`` (the array's raw little-endian bytes, C order),
``features/NAME/shape`` (int64 list) and ``features/NAME/dtype`` (numpy's ``<f4``/``<f8``): exact, where
a float_list would round float64 features to float32. In TensorFlow:
``tf.reshape(tf.io.decode_raw(x["features/mfcc"], tf.float32), x["features/mfcc/shape"])``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sendlearn.dataset.splits import SPLITS

from .samples import Sample, discard_split_parts, publish_split_parts

SHARD_BYTES = 256 * 2**20


def example(sample: Sample) -> dict[str, tuple[Any, str]]:
    """The sample as the ``tfrecord`` writer takes it: name -> (value, byte|int|float)."""
    meta = sample.meta()
    datum: dict[str, tuple[Any, str]] = {
        "session": (sample.session.encode(), "byte"), "stream": (sample.stream.encode(), "byte"),
        "split": (sample.split.encode(), "byte"),
        "audio_format": (sample.audio_format.encode(), "byte"), "audio_subtype": (sample.subtype.encode(), "byte"),
        "window": (sample.window, "int"), "start_sample": (sample.start_sample, "int"), "frames": (sample.frames, "int"),
        "frames_valid": (sample.frames_valid, "int"),
        "sample_rate": (sample.sample_rate, "int"), "channels": (sample.channels, "int"),
        "audio": (sample.audio_bytes, "byte"),
        "midi_sample": (sample.midi_sample.tolist(), "int"), "midi_data": (list(sample.midi_data), "byte"),
        "flags": ([f.encode() for f in sample.flags], "byte"),
        "midi_file": (sample.midi_file, "byte"),
        "midi_notes": (sample.midi_notes.ravel().tolist(), "int"),  # (N, 4) row by row
        "meta": (json.dumps({k: meta[k] for k in ("playhead", "timeline", "params", "midi_timing_error")}).encode(),
                 "byte"),
    }
    for name, array in sample.features.items():
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        datum[f"features/{name}"] = (np.ascontiguousarray(little).tobytes(), "byte")
        datum[f"features/{name}/shape"] = (list(array.shape), "int")
        datum[f"features/{name}/dtype"] = (little.dtype.str.encode(), "byte")
    return datum


def write_tfrecord(samples: Iterator[Sample], out: Path, *, shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
    from tfrecord import TFRecordWriter

    parts: dict[str, list[Path]] = {}
    writers: dict[str, TFRecordWriter] = {}
    rows: dict[str, int] = {}
    try:
        for sample in samples:
            split = sample.split
            writer = writers.get(split)
            if writer is not None and writer.file.tell() >= shard_bytes:
                writer.close()
                writer = None
            if writer is None:
                paths = parts.setdefault(split, [])
                paths.append(out / f".{split}-{len(paths):05d}.tfrecord.part")
                writer = writers[split] = TFRecordWriter(str(paths[-1]))
            writer.write(example(sample))
            rows[split] = rows.get(split, 0) + 1
        for writer in writers.values():
            writer.file.flush()
            os.fsync(writer.file.fileno())
            writer.close()
    except BaseException:
        for writer in writers.values():
            if not writer.file.closed:
                writer.close()
        discard_split_parts(parts)
        raise
    return publish_split_parts(out, parts, rows, SPLITS)
