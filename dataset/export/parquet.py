"""Parquet in the Hugging Face layout (docs/export.md, "parquet").

    OUT/README.md                               dataset card: YAML names the config, the splits and features
    OUT/data/{split}-00000-of-0000N.parquet     per split (train, validation, test: the sessions' own,
                                                ``sendlearn sequences --split``), shards of at most 500 MB,
                                                row groups of at most 100 MB

Written with pyarrow alone: the schema carries ``huggingface`` metadata (``{"info": {"features":
...}}``, what ``datasets`` writes itself), so ``datasets.load_dataset("parquet", data_files=...)``
(or ``datasets.load_dataset(OUT)``, a ``DatasetDict`` of the splits present) gives an ``Audio`` column (a struct of the file's ``bytes`` and a ``path``) without ``datasets``
having to encode audio (it needs torchcodec for that).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sendlearn.dataset.splits import SPLITS

from .samples import PLAYHEAD, TIMELINE, Plan, Sample

SHARD_BYTES = 500 * 10**6
ROW_GROUP_BYTES = 32 * 2**20  # the Hub's viewer wants row groups under 100 MB

_ARROW = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32(),
          "int16": pa.int16(), "bool": pa.bool_(), "string": pa.string(), "binary": pa.binary()}
_PLAYHEAD_TYPES = {"seconds": "float64", "ppq": "float64", "bpm": "float64", "ts_num": "int16", "ts_den": "int16",
                   "bar": "int32", "beat": "float64", "playing": "bool", "recording": "bool", "looping": "bool"}
_TIMELINE_TYPES = {**_PLAYHEAD_TYPES, "sample": "int64", "frames": "int32", "quality": "string"}


def _value(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "_type": "Value"}


def _list(feature: dict[str, Any]) -> dict[str, Any]:
    return {"feature": feature, "_type": "List"}


def hf_features(first: Sample) -> dict[str, Any]:
    """The ``datasets`` features (``Features.to_dict()`` form) of every row; feature arrays as nested
    lists of their own dtype (their frame count follows the window length)."""
    features = {}
    for name, array in first.features.items():
        feature = _value(np.dtype(array.dtype).name)
        for _ in range(array.ndim):
            feature = _list(feature)
        features[name] = feature
    out = {
        "session": _value("string"), "stream": _value("string"), "window": _value("int64"),
        "split": _value("string"), "start_sample": _value("int64"), "frames": _value("int64"), "frames_valid": _value("int64"),
        "sample_rate": _value("int64"),
        "channels": _value("int64"), "audio": {"_type": "Audio"}, "audio_subtype": _value("string"),
        "midi_sample": _list(_value("int64")), "midi_data": _list(_value("binary")),
        "midi_timing_error": _list(_value("int32")),
        "playhead": {name: _value(_PLAYHEAD_TYPES[name]) for name in PLAYHEAD},
        "timeline": {name: _list(_value(_TIMELINE_TYPES[name])) for name in TIMELINE},
        "params": {"sample": _list(_value("int64")), "param": _list(_value("string")), "value": _list(_value("float64"))},
        "flags": _list(_value("string")),
        "midi_file": _value("binary"), "midi_notes": _list(_list(_value("int64"))),
    }
    if features:  # an export without features has no such column (parquet has no empty struct)
        out["features"] = features
        if "mfcc" in features:  # the seed's snippet reads it at the top level: the same array
            out["mfcc"] = features["mfcc"]
    return out


def _arrow_type(feature: dict[str, Any]) -> pa.DataType:
    kind = feature.get("_type")
    if kind == "Value":
        return _ARROW[feature["dtype"]]
    if kind == "List":
        return pa.list_(_arrow_type(feature["feature"]))
    if kind == "Audio":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.struct([(name, _arrow_type(sub)) for name, sub in feature.items()])


def arrow_schema(features: dict[str, Any]) -> pa.Schema:
    schema = pa.schema([(name, _arrow_type(feature)) for name, feature in features.items()])
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _nested(arrays: list[np.ndarray], dtype: pa.DataType) -> pa.Array:
    """list<...> (1-D arrays) or list<list<...>> (2-D) of ``arrays``, one per row, without Python lists."""
    values = pa.array(np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0), type=dtype)
    if arrays[0].ndim == 2:
        rows = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])])
        inner = np.concatenate([[0], np.cumsum(np.repeat([a.shape[1] for a in arrays], [a.shape[0] for a in arrays]))])
        values = pa.ListArray.from_arrays(pa.array(inner, pa.int32()), values)
    else:
        rows = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])])
    return pa.ListArray.from_arrays(pa.array(rows, pa.int32()), values)


def _binary(values: list[bytes]) -> pa.Array:
    """A binary array built in buffers of its exact size (pa.array would grow one by doubling)."""
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                            pa.py_buffer(b"".join(values))])


def _leaf(kind: pa.DataType) -> pa.DataType:
    while pa.types.is_list(kind):
        kind = kind.value_type
    return kind


def _batch(rows: list[Sample], schema: pa.Schema) -> pa.RecordBatch:
    def column(name: str, values: list[Any]) -> pa.Array:
        return pa.array(values, type=schema.field(name).type)

    def struct(name: str, children: dict[str, list[Any]]) -> pa.Array:
        kind = schema.field(name).type
        return pa.StructArray.from_arrays([pa.array(children[f.name], type=f.type) for f in kind],
                                          fields=list(kind))

    arrays = [
        column("session", [r.session for r in rows]), column("stream", [r.stream for r in rows]),
        column("window", [r.window for r in rows]), column("split", [r.split for r in rows]),
        column("start_sample", [r.start_sample for r in rows]),
        column("frames", [r.frames for r in rows]), column("frames_valid", [r.frames_valid for r in rows]),
        column("sample_rate", [r.sample_rate for r in rows]),
        column("channels", [r.channels for r in rows]),
        pa.StructArray.from_arrays([_binary([r.audio_bytes for r in rows]), pa.array([r.audio_path for r in rows])],
                                   fields=list(schema.field("audio").type)),
        column("audio_subtype", [r.subtype for r in rows]),
        _nested([r.midi_sample for r in rows], pa.int64()),
        column("midi_data", [r.midi_data for r in rows]), column("midi_timing_error", [r.midi_timing_error for r in rows]),
        struct("playhead", {n: [r.playhead[n] for r in rows] for n in PLAYHEAD}),
        struct("timeline", {n: [r.timeline[n] for r in rows] for n in TIMELINE}),
        struct("params", {n: [r.params[n] for r in rows] for n in ("sample", "param", "value")}),
        column("flags", [r.flags for r in rows]),
        _binary([r.midi_file for r in rows]),
        _nested([r.midi_notes.reshape(-1, 4) for r in rows], pa.int64()),
    ]
    if "features" in schema.names:
        kind = schema.field("features").type
        arrays.append(pa.StructArray.from_arrays(
            [_nested([r.features[f.name] for r in rows], _leaf(f.type)) for f in kind], fields=list(kind)))
    if "mfcc" in schema.names:
        arrays.append(_nested([r.features["mfcc"] for r in rows], _leaf(schema.field("mfcc").type)))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _size(sample: Sample) -> int:
    return (len(sample.audio_bytes) + sum(a.nbytes for a in sample.features.values()) + 64 * len(sample.midi_data)
            + len(sample.midi_file) + sample.midi_notes.nbytes + 4096)


class _Shards:
    """Parquet files rolled before they pass ``shard_bytes``, named ``.part-NNNNN`` until the end."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, shard_bytes: int) -> None:
        self.folder, self.split, self.schema, self.shard_bytes = folder, split, schema, shard_bytes
        self.paths: list[Path] = []
        self._file: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch, size: int) -> None:
        if self._file is not None and self._file.tell() + size > self.shard_bytes:
            self.close()
        if self._writer is None:
            self.paths.append(self.folder / f".{self.split}.part-{len(self.paths):05d}.parquet")
            self._file = open(self.paths[-1], "wb")  # noqa: SIM115 (closed in close())
            self._writer = pq.ParquetWriter(self._file, self.schema, compression="zstd")
        self._writer.write_batch(batch, row_group_size=batch.num_rows)

    def close(self) -> None:
        if self._writer is not None and self._file is not None:
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        self._writer = self._file = None


def write_parquet(samples: Iterator[Sample], out: Path, *, shard_bytes: int = SHARD_BYTES,
                  row_group_bytes: int = ROW_GROUP_BYTES, plan: Plan | None = None) -> dict[str, Any]:
    """Write ``samples`` under ``out`` (data/ shards per split and README.md); what was written."""
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shards: dict[str, _Shards] = {}
    pending: dict[str, list[Sample]] = {}
    pending_bytes: dict[str, int] = {}
    rows: dict[str, int] = {}
    schema: pa.Schema | None = None
    features = None
    try:
        for sample in samples:
            if schema is None:
                features = hf_features(sample)
                schema = arrow_schema(features)
            split = sample.split
            if split not in shards:
                shards[split] = _Shards(folder, split, schema, shard_bytes)
                pending[split], pending_bytes[split], rows[split] = [], 0, 0
            pending_bytes[split] += _size(sample)  # encodes the audio file...
            sample.audio = sample.audio[:, :0]  # ...which is what the row keeps: let the samples go
            pending[split].append(sample)
            rows[split] += 1
            if pending_bytes[split] >= row_group_bytes:
                shards[split].write(_batch(pending[split], schema), pending_bytes[split])
                pending[split], pending_bytes[split] = [], 0
        if schema is None:
            return {"rows": 0, "files": []}
        for split, writer in shards.items():
            if pending[split]:
                writer.write(_batch(pending[split], schema), pending_bytes[split])
            writer.close()
    except BaseException:
        for writer in shards.values():
            writer.close()
            for path in writer.paths:
                path.unlink(missing_ok=True)
        raise
    files: list[Path] = []
    sizes: dict[str, int] = {}
    for split in sorted(shards, key=_split_order):
        paths = shards[split].paths
        for number, path in enumerate(paths):
            final = folder / f"{split}-{number:05d}-of-{len(paths):05d}.parquet"
            os.replace(path, final)
            files.append(final)
            sizes[split] = sizes.get(split, 0) + final.stat().st_size
    assert features is not None
    note = plan.split_note() if plan is not None else ""
    (out / "README.md").write_text(dataset_card(features, {s: rows[s] for s in sorted(rows, key=_split_order)},
                                                sizes, note))
    return {"rows": sum(rows.values()), "files": [str(f) for f in files], "splits": rows}


def _split_order(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _yaml_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """One feature in the card's YAML form (``datasets``' ``Features._to_yaml_list``)."""
    kind = feature.get("_type")
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "Audio":
        return {"dtype": "audio"}
    if kind == "List":
        inner = _yaml_feature(feature["feature"])
        if list(inner) == ["dtype"] and isinstance(inner["dtype"], str):
            return {"list": inner["dtype"]}
        return {"list": inner["struct"] if list(inner) == ["struct"] else inner}
    return {"struct": [{"name": name, **_yaml_feature(sub)} for name, sub in feature.items()]}


def dataset_card(features: dict[str, Any], rows: dict[str, int], sizes: dict[str, int], split_note: str = "") -> str:
    """The card: YAML naming the config, every split present (its files, bytes and rows) and the
    features, so ``datasets.load_dataset(OUT)`` gives a ``DatasetDict`` of those splits."""
    import yaml

    header = {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in rows]}],
        "dataset_info": {
            "config_name": "default",
            "features": [{"name": name, **_yaml_feature(sub)} for name, sub in features.items()],
            "splits": [{"name": s, "num_bytes": sizes.get(s, 0), "num_examples": n} for s, n in rows.items()],
        },
        "tags": ["audio", "midi", "sendlearn"],
    }
    counts = ", ".join(f"{s} {n}" for s, n in rows.items())
    return ("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n# Send Learn windows\n\n"
            "One row per (session, stream, window), exported by `sendlearn export parquet` from a Send Learn "
            "data directory. `audio` is the window's audio as a whole file (float32 WAV, or FLAC at the source's "
            "depth); `midi_sample` is each MIDI event's sample relative to the window's first sample, `midi_data` "
            "its raw bytes; `playhead` is the host's timeline at the first sample, `timeline` at each block "
            "starting in the window; `features` are frames of 512 samples. Columns are described in Send Learn's "
            "docs/export.md.\n\n## Splits\n\n"
            f"Rows per split: {counts}. Every window and stream of a session is in one split, so no music is "
            f"shared between them (windows overlap; a split made by row would leak). {split_note}\n\n"
            "```python\nimport datasets\nds = datasets.load_dataset(\"path/to/this/folder\")  # a DatasetDict\n"
            "train = ds[\"train\"].cast_column(\"audio\", datasets.Audio(decode=False))  # file bytes; decoding "
            "needs torchcodec\n```\n")
