"""The dataset's contract (docs/dataset.md): its format version, ``stream.json`` as a typed
``StreamSummary``, and the tables as Arrow schemas.

``FORMAT_VERSION`` is "MAJOR.MINOR": a new minor only adds (a key, a column, a flag) and older
readers read it, ignoring what they do not know; a new major changes or removes something, and
older readers refuse it (``FormatTooNew``, naming both versions). It is in stream.json
(``format_version``) and in every Parquet file's schema metadata (``sendlearn.format_version``,
put there by ``stamp``). Files without it were written before versions were: they are 1.0.

These live beside the reader because they are the public contract; the store writes exactly
these (tests/test_dataset_reader.py and tests/test_dataset_doc.py hold the two together).
"""

from __future__ import annotations

import json
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import FormatError, FormatTooNew

FORMAT_VERSION = "1.2"
FORMAT_KEY = b"sendlearn.format_version"  # in a Parquet file's schema metadata
UNVERSIONED = "1.0"  # what a file written before format versions is read as

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def check_format(found: str | None, where: str | Path) -> str:
    """The version a file of ``where`` says it is in (None: unversioned, so 1.0); FormatTooNew
    when its major is newer than ours, FormatError when it is not "MAJOR.MINOR"."""
    version = UNVERSIONED if found is None else found
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise FormatError(where, f"format version {version!r} is not MAJOR.MINOR")
    if int(parts[0]) > int(FORMAT_VERSION.split(".")[0]):
        raise FormatTooNew(where, version, FORMAT_VERSION)
    return version


def stamp(table: pa.Table) -> pa.Table:
    """``table`` with ``FORMAT_VERSION`` in its schema metadata: every Parquet file of a data
    directory is written through this."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), FORMAT_KEY: FORMAT_VERSION.encode()})


def read_parquet(path: Path, schema: pa.Schema) -> pa.Table:
    """A Parquet file of a data directory as ``schema``; refused when a newer major wrote it."""
    found = (pq.read_schema(path).metadata or {}).get(FORMAT_KEY)
    check_format(None if found is None else found.decode("utf-8", "replace"), path)
    return pq.read_table(path, schema=schema)


class _Record:
    """A flat JSON object of stream.json as a frozen dataclass: keys are the field names (a
    trailing ``_`` dropped: ``from_`` is ``from``), lists are tuples."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # what makes each subclass a dataclass, for fields()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**{f.name: _tuples(data[f.name.rstrip("_")]) for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return {f.name.rstrip("_"): _lists(getattr(self, f.name)) for f in fields(self)}


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _lists(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, slots=True)
class AudioFile(_Record):
    """``audio``: the stream's audio file, its soundfile subtype (FLOAT, PCM_24, PCM_16) and length."""

    file: str
    subtype: str
    frames: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Gap(_Record):
    """Seqs that are not in the stream; ``end_sample`` None for a gap at the very end."""

    first_seq: int
    last_seq: int
    start_sample: int
    end_sample: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Damage(_Record):
    """A stretch of the work journal damaged on disk, and the seqs it held (None: no block)."""

    journal_bytes: tuple[int, int]
    first_seq: int | None
    last_seq: int | None
    blocks_lost: int


@dataclass(frozen=True, slots=True)
class QualityRun(_Record):
    """Consecutive seqs stored at one audio level."""

    first_seq: int
    last_seq: int
    quality: str


@dataclass(frozen=True, slots=True)
class Backfill(_Record):
    """Consecutive seqs whose audio was replaced at full quality, from ``at`` until ``until`` (unix times)."""

    first_seq: int
    last_seq: int
    from_: str
    to: str
    at: float
    until: float


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """stream.json: what a finished stream is, how it ended, its quality history, gaps and checksums.

    ``read`` and ``from_json`` take any 1.x file; ``extra`` keeps keys a newer minor added, so
    ``to_json`` gives back what was read."""

    session: str
    stream: str
    track: str
    host: str
    sample_rate: int
    channels: int
    block_size: int
    audio: AudioFile
    blocks: int
    events: int
    params: int
    first_seq: int | None
    last_seq: int | None
    complete: bool
    ended: str
    take: str | None
    gaps: tuple[Gap, ...]
    damage: tuple[Damage, ...]
    duplicates_ignored: int
    history: tuple[QualityRun, ...]  # stream.json's quality.history
    backfills: tuple[Backfill, ...]  # and quality.backfills
    meta: dict[str, JsonValue]
    sender: dict[str, JsonValue]
    checksums: dict[str, str]
    finalised_at: float
    receiver: str
    format_version: str = FORMAT_VERSION
    extra: dict[str, JsonValue] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> StreamSummary:
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as exc:
            raise FormatError(path, f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise FormatError(path, "not a JSON object")
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str | Path = "stream.json") -> StreamSummary:
        version = check_format(data.get("format_version"), where)
        try:
            audio, quality = data["audio"], data["quality"]
            summary = cls(
                session=data["session"], stream=data["stream"], track=data.get("track", ""), host=data.get("host", ""),
                sample_rate=int(data["sample_rate"]), channels=int(data["channels"]),
                block_size=int(data["block_size"]),
                audio=AudioFile.from_json({"subtype": "FLOAT", **audio}),  # subtype: a float WAV before it was said
                blocks=data["blocks"], events=data["events"], params=data["params"],
                first_seq=data["first_seq"], last_seq=data["last_seq"], complete=data["complete"],
                ended=data["ended"], take=data.get("take"), gaps=tuple(Gap.from_json(g) for g in data["gaps"]),
                damage=tuple(Damage.from_json(d) for d in data["damage"]),
                duplicates_ignored=data["duplicates_ignored"],
                history=tuple(QualityRun.from_json(r) for r in quality["history"]),
                backfills=tuple(Backfill.from_json(b) for b in quality["backfills"]),
                meta=data.get("meta", {}), sender=data["sender"], checksums=data["checksums"],
                finalised_at=data["finalised_at"], receiver=data["receiver"], format_version=version)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(where, f"not a stream.json of format {version}: {type(exc).__name__} {exc}") from None
        known = summary.to_json()
        return replace(summary, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The JSON object stream.json holds, keys in the order the store writes them."""
        return {
            "format_version": self.format_version, "session": self.session, "stream": self.stream,
            "track": self.track, "host": self.host, "sample_rate": self.sample_rate, "channels": self.channels,
            "block_size": self.block_size, "audio": self.audio.to_json(), "blocks": self.blocks,
            "events": self.events, "params": self.params, "first_seq": self.first_seq, "last_seq": self.last_seq,
            "complete": self.complete, "ended": self.ended, "take": self.take,
            "gaps": [g.to_json() for g in self.gaps], "damage": [d.to_json() for d in self.damage],
            "duplicates_ignored": self.duplicates_ignored,
            "quality": {"history": [r.to_json() for r in self.history],
                        "backfills": [b.to_json() for b in self.backfills]},
            "meta": self.meta, "sender": self.sender, "checksums": self.checksums,
            "finalised_at": self.finalised_at, "receiver": self.receiver, **self.extra,
        }

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
    pa.field("frames_valid", pa.int64(), nullable=False),
    pa.field("events", pa.int64(), nullable=False),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
    pa.field("split", pa.string(), nullable=False),  # 1.2: the session's, train/validation/test
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
    pa.field("frames_valid", pa.int64(), nullable=False),
    pa.field("seconds", pa.float64(), nullable=False),
    pa.field("peak", pa.float64(), nullable=False),
    pa.field("rms", pa.float64(), nullable=False),
    pa.field("silence_ratio", pa.float64(), nullable=False),
    pa.field("clip_ratio", pa.float64(), nullable=False),
    pa.field("over_full_scale_ratio", pa.float64(), nullable=False),
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
