"""The dataset's tables as Arrow schemas (docs/dataset.md): the format a reader can rely on.

They live beside the reader because they are the public contract; the receiver's writer must
produce exactly these (tests/test_dataset_reader.py holds the two together).
"""

from __future__ import annotations

import pyarrow as pa

EVENTS_SCHEMA = pa.schema([
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("block_seq", pa.int64(), nullable=False),
    pa.field("offset", pa.int32(), nullable=False),
    pa.field("data", pa.binary(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("channel", pa.int8()),
    pa.field("timing_error_samples", pa.int32()),
])
BLOCKS_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("playing", pa.bool_(), nullable=False),
    pa.field("recording", pa.bool_(), nullable=False),
    pa.field("looping", pa.bool_(), nullable=False),
    pa.field("seconds", pa.float64(), nullable=False),
    pa.field("bpm", pa.float64(), nullable=False),
    pa.field("ts_num", pa.int16(), nullable=False),
    pa.field("ts_den", pa.int16(), nullable=False),
    pa.field("ppq", pa.float64(), nullable=False),
    pa.field("bar", pa.int32(), nullable=False),
    pa.field("beat", pa.float64(), nullable=False),
    pa.field("quality", pa.string(), nullable=False),
    pa.field("backfilled", pa.bool_(), nullable=False),
    pa.field("digest", pa.uint64(), nullable=False),
])
PARAMS_SCHEMA = pa.schema([
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("block_seq", pa.int64(), nullable=False),
    pa.field("param", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])
# A stream's notes as the reader derives them from events.parquet (mirdata's NoteData, in samples).
NOTES_SCHEMA = pa.schema([
    pa.field("start", pa.int64(), nullable=False),
    pa.field("end", pa.int64(), nullable=False),
    pa.field("pitch", pa.int8(), nullable=False),
    pa.field("velocity", pa.int8(), nullable=False),
    pa.field("channel", pa.int8(), nullable=False),
])
# sequences/<session>/windows.parquet: one row per window.
WINDOWS_SCHEMA = pa.schema([
    pa.field("index", pa.int64(), nullable=False),
    pa.field("start_sample", pa.int64(), nullable=False),
    pa.field("frames", pa.int64(), nullable=False),
    pa.field("events", pa.int64(), nullable=False),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
])
# Audio levels whose samples are the host's own (lossless); anything else is degraded or missing.
FULL_QUALITY = frozenset({"FLOAT32", "PCM24", "PCM16"})
# sequences/quality.parquet: one row per stream (window null) and per window and stream.
QUALITY_SCHEMA = pa.schema([
    pa.field("session", pa.string(), nullable=False),
    pa.field("stream", pa.string(), nullable=False),
    pa.field("window", pa.int64()),
    pa.field("start_sample", pa.int64(), nullable=False),
    pa.field("frames", pa.int64(), nullable=False),
    pa.field("seconds", pa.float64(), nullable=False),
    pa.field("peak", pa.float64(), nullable=False),
    pa.field("rms", pa.float64(), nullable=False),
    pa.field("silence_ratio", pa.float64(), nullable=False),
    pa.field("clip_ratio", pa.float64(), nullable=False),
    pa.field("degraded_fraction", pa.float64(), nullable=False),
    pa.field("gaps", pa.int64()),
    pa.field("events", pa.int64(), nullable=False),
    pa.field("notes", pa.int64(), nullable=False),
    pa.field("note_density", pa.float64(), nullable=False),
    pa.field("polyphony_max", pa.int64(), nullable=False),
    pa.field("polyphony_mean", pa.float64(), nullable=False),
    pa.field("velocity_min", pa.int64()),
    pa.field("velocity_max", pa.int64()),
    pa.field("pitch_min", pa.int64()),
    pa.field("pitch_max", pa.int64()),
    pa.field("tempo_min", pa.float64()),
    pa.field("tempo_max", pa.float64()),
    pa.field("complexity", pa.float64(), nullable=False),
    pa.field("alignment_notes", pa.int64(), nullable=False),
    pa.field("alignment_median", pa.float64()),
    pa.field("alignment_max_abs", pa.int64()),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
    pa.field("window_flags", pa.list_(pa.string())),
])
