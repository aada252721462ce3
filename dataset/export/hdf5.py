"""One HDF5 file of windows, written and read with h5py (docs/export.md, "hdf5").

    OUT/windows.h5
      attrs   format = "sendlearn-windows", version = 1, samples = N
      index   (N,) compound: key, session, stream, split (str), window, start_sample, frames, sample_rate,
              channels (int64); split is the session's: train, validation or test
      samples/<key>/                       one group per sample, in index order
        attrs        session, stream, split, window, start_sample, frames, frames_valid, sample_rate, channels, audio_subtype, flags
        audio        float32 (channels, frames): the window's samples (exact for PCM sources too)
        midi/sample  int64 (n,): relative to the window's first sample
        midi/data    vlen uint8 (n,): each event's raw bytes
        midi/timing_error  int64 (n,): -1 where the sample is exact (null in events.parquet)
        playhead     group whose attrs are the playhead at the window's first sample
        timeline/<column>  one array per block starting in the window (sample, frames, playing, seconds,
                           bpm, ts_num, ts_den, ppq, bar, beat, quality)
        params/sample, params/param, params/value   automation, the value in force first
        features/<name>    each feature array, its own dtype

Written to ``.windows.h5.part`` and renamed when whole. ``read_sample`` reads one group back;
``sendlearn.dataset.torch.HDF5WindowDataset`` opens the file lazily in each worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .samples import PLAYHEAD, TIMELINE, Sample, publish_parts

FILE = "windows.h5"
FORMAT, VERSION = "sendlearn-windows", 1
STR = h5py.string_dtype()
INDEX_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("key", object), ("session", object), ("stream", object), ("split", object), ("window", np.int64), ("start_sample", np.int64),
    ("frames", np.int64), ("sample_rate", np.int64), ("channels", np.int64))
INDEX_DTYPE = np.dtype(list(INDEX_COLUMNS))
_H5_INDEX = np.dtype([(name, STR if kind is object else kind) for name, kind in INDEX_COLUMNS])
_TEXT_COLUMNS = frozenset(name for name, kind in INDEX_COLUMNS if kind is object)  # strings in the file


def _column(values: list[Any]) -> np.ndarray:
    if values and isinstance(values[0], str):
        return np.array(values, dtype=STR)
    return np.asarray(values)


def _write_sample(group: h5py.Group, sample: Sample) -> None:
    for name in ("session", "stream", "window", "start_sample", "frames", "frames_valid", "sample_rate", "channels"):
        group.attrs[name] = getattr(sample, name)
    group.attrs["audio_subtype"] = sample.subtype
    group.attrs["split"] = sample.split
    group.attrs["flags"] = np.array(sample.flags, dtype=STR)
    group.create_dataset("audio", data=sample.audio)
    midi = group.create_group("midi")
    midi.create_dataset("sample", data=sample.midi_sample.astype(np.int64))
    data = midi.create_dataset("data", (len(sample.midi_data),), dtype=h5py.vlen_dtype(np.uint8))
    for i, message in enumerate(sample.midi_data):
        data[i] = np.frombuffer(message, dtype=np.uint8)
    midi.create_dataset("file", data=np.void(sample.midi_file))
    midi.create_dataset("notes", data=sample.midi_notes.reshape(-1, 4).astype(np.int64))
    midi.create_dataset("timing_error", data=np.array([-1 if e is None else e for e in sample.midi_timing_error],
                                                      dtype=np.int64))
    playhead = group.create_group("playhead")
    for name in PLAYHEAD:
        playhead.attrs[name] = sample.playhead[name]
    timeline = group.create_group("timeline")
    for name in TIMELINE:
        values = sample.timeline[name]
        timeline.create_dataset(name, data=np.array(values, dtype=STR) if name == "quality" else np.asarray(values),
                                dtype=STR if name == "quality" else None)
    params = group.create_group("params")
    params.create_dataset("sample", data=np.asarray(sample.params["sample"], dtype=np.int64))
    params.create_dataset("param", data=np.array(sample.params["param"], dtype=STR), dtype=STR)
    params.create_dataset("value", data=np.asarray(sample.params["value"], dtype=np.float64))
    features = group.create_group("features")
    for name, array in sample.features.items():
        features.create_dataset(name, data=array)


def write_hdf5(samples: Iterator[Sample], out: Path) -> dict[str, Any]:
    part = out / f".{FILE}.part"  # renamed to FILE when whole (publish_parts)
    index: list[tuple[Any, ...]] = []
    try:
        with h5py.File(part, "w") as f:
            f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
            groups = f.create_group("samples")
            for sample in samples:
                _write_sample(groups.create_group(sample.key), sample)
                index.append((sample.key, sample.session, sample.stream, sample.split, sample.window, sample.start_sample,
                              sample.frames, sample.sample_rate, sample.channels))
            f.create_dataset("index", data=np.array(index, dtype=_H5_INDEX))
            f.attrs["samples"] = len(index)
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        files = publish_parts(out, [part])
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return {"rows": len(index), "files": files}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_index(f: h5py.File) -> list[dict[str, Any]]:
    """The ``index`` rows: key, session, stream, split, window, start_sample, frames, sample_rate, channels."""
    rows = f["index"][()]
    present = [name for name, _ in INDEX_COLUMNS if name in rows.dtype.names]
    before_splits = {} if "split" in present else {"split": "train"}  # an export from before splits: all train
    return [{name: (_text(row[name]) if name in _TEXT_COLUMNS else int(row[name])) for name in present}
            | before_splits for row in rows]


def read_sample(group: h5py.Group) -> dict[str, Any]:
    """One ``samples/<key>`` group as plain Python and numpy values (the keys of an export sample)."""
    attrs = group.attrs
    out: dict[str, Any] = {name: _text(attrs[name]) for name in ("session", "stream", "audio_subtype")}
    out["split"] = _text(attrs.get("split", "train"))  # an export from before splits: all train
    out.update({name: int(attrs[name]) for name in ("window", "start_sample", "frames", "frames_valid", "sample_rate",
                                                    "channels")})
    out["flags"] = [_text(flag) for flag in attrs["flags"]]
    out["audio"] = group["audio"][()]
    out["midi_sample"] = group["midi/sample"][()]
    out["midi_data"] = [bytes(m) for m in group["midi/data"][()]]
    out["midi_timing_error"] = [None if e < 0 else int(e) for e in group["midi/timing_error"][()]]
    out["midi_file"] = group["midi/file"][()].tobytes()
    out["midi_notes"] = group["midi/notes"][()]
    out["playhead"] = {name: group["playhead"].attrs[name].item() for name in PLAYHEAD}
    out["timeline"] = {name: (group["timeline"][name].asstr()[()].tolist() if name == "quality"
                              else group["timeline"][name][()].tolist()) for name in TIMELINE}
    out["params"] = {"sample": group["params/sample"][()].tolist(), "param": group["params/param"].asstr()[()].tolist(),
                     "value": group["params/value"][()].tolist()}
    out["features"] = {name: group["features"][name][()] for name in group["features"]}
    return out
