"""One export sample per (session, stream, window), read through ``sendlearn.dataset`` only.

Every format writes the same ``Sample`` (docs/export.md): the window's audio as a lossless file
(float32 WAV for a float source; FLAC at the source's depth for a PCM one, WAV at that depth past
8 channels), its MIDI events re-based to the window's first sample, the playhead at that sample
and at every block starting inside the window, its automation, features and flags.

Samples are made one at a time, and one ``Dataset`` is opened per session, so an export holds one
window's data and one session's tables at most, whatever the size of the data directory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from sendlearn.dataset.errors import UnknownSession
from sendlearn.dataset.facade import Dataset
from sendlearn.dataset.sequences import SequenceCache
from sendlearn.dataset.window_midi import window_midi
from sendlearn.dataset.windows import Window

FLAC_MAX_CHANNELS = 8
PCM_BITS = {"PCM_16": 16, "PCM_24": 24}
# per-block playhead columns a sample carries (blocks.parquet names; ``sample`` relative to the window)
TIMELINE = ("sample", "frames", "playing", "seconds", "bpm", "ts_num", "ts_den", "ppq", "bar", "beat", "quality")
PLAYHEAD = ("seconds", "ppq", "bpm", "ts_num", "ts_den", "bar", "beat", "playing", "recording", "looping")


def json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sample_key(session: str, stream: str, window: int) -> str:
    """``session__stream__000012`` with every dot written ``%2E``: webdataset cuts a key at its first
    dot, and ids may hold dots (``%`` is not allowed in an id, so the key maps back)."""
    return f"{session}__{stream}__{window:06d}".replace(".", "%2E")


@dataclass
class Sample:
    """What every format stores of one stream in one window (all samples relative to the window)."""

    session: str
    stream: str
    window: int
    start_sample: int  # on the session's clock
    frames: int
    frames_valid: int  # the window's real frames; past them, padding: silence and no events
    sample_rate: int
    channels: int
    subtype: str  # the source's: FLOAT, PCM_16 or PCM_24
    flags: list[str]
    audio: np.ndarray  # float32 (channels, frames), as window.audio(stream) gives it
    midi_sample: np.ndarray  # int64
    midi_data: list[bytes]
    midi_timing_error: list[int | None]
    playhead: dict[str, Any]  # at the window's first sample
    timeline: dict[str, list[Any]]  # TIMELINE columns: one entry per block starting in the window
    params: dict[str, list[Any]]  # sample, param, value: automation, the value in force first
    features: dict[str, np.ndarray] = field(default_factory=dict)
    # the window as a Standard MIDI File (sendlearn.dataset.window_midi), and its notes as the reader
    # pairs them: int64 (N, 4) pitch, velocity, start, end, relative to the window and clipped to it
    midi_file: bytes = b""
    midi_notes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    split: str = "train"  # the session's: train, validation or test (sendlearn.dataset.splits)

    @property
    def key(self) -> str:
        return sample_key(self.session, self.stream, self.window)

    @property
    def audio_format(self) -> str:
        """``wav`` or ``flac``: the extension of ``audio_bytes``."""
        return "flac" if self.subtype in PCM_BITS and self.channels <= FLAC_MAX_CHANNELS else "wav"

    @cached_property
    def audio_bytes(self) -> bytes:
        """The window's audio as a whole file: float32 WAV, or PCM at the source's depth."""
        return encode_audio(self.audio, self.sample_rate, self.subtype)

    @property
    def audio_path(self) -> str:
        return f"{self.key}.{self.audio_format}"

    def meta(self) -> dict[str, Any]:
        """Everything but audio and features, as JSON (webdataset's ``.json``; TFRecord's ``meta``)."""
        return {
            "session": self.session, "stream": self.stream, "window": self.window, "split": self.split,
            "start_sample": self.start_sample, "frames": self.frames, "frames_valid": self.frames_valid,
            "sample_rate": self.sample_rate,
            "channels": self.channels, "audio_format": self.audio_format, "audio_subtype": self.subtype,
            "flags": list(self.flags),
            "midi": [[int(s), list(d)] for s, d in zip(self.midi_sample.tolist(), self.midi_data, strict=True)],
            "midi_timing_error": list(self.midi_timing_error),
            "playhead": dict(self.playhead), "timeline": {k: list(v) for k, v in self.timeline.items()},
            "params": {k: list(v) for k, v in self.params.items()},
            "midi_notes": self.midi_notes.tolist(),
            "features": {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in self.features.items()},
        }


def encode_audio(audio: np.ndarray, sample_rate: int, subtype: str) -> bytes:
    """A WAV or FLAC file of float32 ``(channels, frames)`` audio that reads back bit for bit.

    PCM is scaled by hand (``x · 2^(bits-1)``, the inverse of how soundfile reads it) rather than by
    libsndfile, whose float-to-integer scale is not the inverse of its integer-to-float one.
    """
    buffer = io.BytesIO()
    bits = PCM_BITS.get(subtype)
    if bits is None:
        soundfile.write(buffer, audio.T, sample_rate, subtype="FLOAT", format="WAV")
        return buffer.getvalue()
    scaled = np.rint(audio.T.astype(np.float64) * (1 << (bits - 1)))
    if bits == 16:
        ints = np.clip(scaled, -32768, 32767).astype(np.int16)
    else:  # libsndfile takes the top 24 bits of an int32
        ints = (np.clip(scaled, -(1 << 23), (1 << 23) - 1).astype(np.int32) << 8)
    audio_format = "FLAC" if audio.shape[0] <= FLAC_MAX_CHANNELS else "WAV"
    soundfile.write(buffer, ints, sample_rate, subtype=subtype, format=audio_format)
    return buffer.getvalue()


def decode_audio(data: bytes) -> np.ndarray:
    """float32 ``(channels, frames)`` of an exported audio file, as ``sendlearn.dataset`` reads audio."""
    audio, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def window_sample(window: Window, stream: str, with_features: bool = True) -> Sample:
    """The ``Sample`` of ``stream`` in ``window``."""
    source = window.dataset.stream(window.session, stream)
    events = window.events(stream)
    playhead = window.playhead(stream)
    blocks = window.blocks(stream)
    params = window.params(stream)
    midi = window_midi(window, stream)
    return Sample(
        session=window.session, stream=stream, window=window.index, start_sample=window.start_sample,
        frames=window.frames, frames_valid=window.frames_valid, sample_rate=window.sample_rate, channels=source.channels,
        subtype=source.facts.audio.subtype, flags=list(window.flags),
        audio=np.ascontiguousarray(window.audio(stream)),
        midi_sample=events["sample"].to_numpy().astype(np.int64),
        midi_data=[bytes(d) for d in events["data"].to_pylist()],
        midi_timing_error=events["timing_error_samples"].to_pylist(),
        playhead={name: getattr(playhead, name) for name in PLAYHEAD},
        timeline={name: blocks[name].to_pylist() for name in TIMELINE},
        params={name: params[name].to_pylist() for name in ("sample", "param", "value")},
        features=window.features(stream) if with_features else {},
        midi_file=midi.data, midi_notes=midi.notes, split=window.split,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """What an export will write: (session, window index, flagged) per window, and skipped counts."""

    windows: list[tuple[str, int, int]]  # session, window index, streams
    skipped: int  # flagged windows left out
    samples: int
    # session -> its split, and how it was decided (``SequenceCache.split``: spec, key, fallback), or
    # just {"split": ...} for a session cut now (80/10/10 by its id)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def split_note(self) -> str:
        """One sentence for a card: how sessions were split, and how many fell back to their id."""
        specs = {json_key(info.get("spec")) for info in self.splits.values() if info.get("spec")}
        if not self.splits:
            return "No sessions."
        if not specs:
            return "Sessions are split 80/10/10 by a hash of their id."
        spec = self.splits[next(iter(self.splits))].get("spec") or {}
        parts = "/".join(str(p) for p in spec.get("parts", (80, 10, 10)))
        by = spec.get("by")
        if len(specs) > 1:
            return "Sessions were split with different settings (`sendlearn sequences --split`); each keeps its own."
        if by is None:
            return f"Sessions are split {parts} (train/validation/test) by a hash of their id."
        fallback = sum(bool(info.get("fallback")) for info in self.splits.values())
        return (f"Sessions are split {parts} (train/validation/test) by a hash of their `{by}` fact; {fallback} of "
                f"{len(self.splits)} sessions have no `{by}` and are split by a hash of their id.")

    @property
    def total(self) -> int:
        return self.samples


def plan(data_dir: Path, sessions: list[str] | None, include_flagged: bool, **spec: Any) -> Plan:
    """The windows an export takes (flagged ones left out unless asked), without reading audio
    when ``sendlearn sequences`` stored the flags."""
    dataset = Dataset(data_dir)
    chosen = dataset.sessions() if not sessions else sessions
    missing = sorted(set(chosen) - set(dataset.sessions()))
    if missing:
        raise UnknownSession(missing[0], data_dir)
    windows, skipped, samples = [], 0, 0
    splits: dict[str, dict[str, Any]] = {}
    for session in chosen:
        cache = SequenceCache.open(dataset, session)
        if cache is not None and "split" in cache.settings:
            splits[session] = cache.split
        for window in dataset.windows(session, **spec):
            splits.setdefault(session, {"split": window.split})
            if window.flags and not include_flagged:
                skipped += 1
                continue
            windows.append((session, window.index, len(window.streams)))
            samples += len(window.streams)
    return Plan(windows, skipped, samples, splits)


def iter_samples(data_dir: Path, the_plan: Plan, with_features: bool = True,
                 progress: Callable[[int, int], None] | None = None, **spec: Any) -> Iterator[Sample]:
    """The plan's samples in order (session, window, stream), one at a time."""
    done = 0
    by_session: dict[str, set[int]] = {}
    for session, index, _ in the_plan.windows:
        by_session.setdefault(session, set()).add(index)
    for session in dict.fromkeys(s for s, _, _ in the_plan.windows):
        dataset = Dataset(data_dir)  # one per session: its streams' tables are let go after it
        for window in dataset.windows(session, **spec):
            if window.index not in by_session[session]:
                continue
            for stream in window.streams:
                yield window_sample(window, stream, with_features)
                done += 1
                if progress is not None:
                    progress(done, the_plan.total)


def publish_split_parts(out: Path, parts: dict[str, list[Path]], rows: dict[str, int],
                        splits: tuple[str, ...]) -> dict[str, Any]:
    """A per-split exporter's result: its parts published in split order, and its row counts."""
    return {"rows": sum(rows.values()), "files": publish_parts(out, [p for s in splits if s in parts for p in parts[s]]),
            "splits": rows}


def discard_split_parts(parts: dict[str, list[Path]]) -> None:
    """A stopped export leaves nothing: every part written so far goes."""
    for paths in parts.values():
        for path in paths:
            path.unlink(missing_ok=True)


def publish_parts(out: Path, parts: list[Path]) -> list[str]:
    """Rename each ``.NAME.part`` shard in ``out`` to ``NAME`` once all are written, so a
    shard appears under its name only whole; returns the final paths."""
    files = []
    for path in parts:
        final = out / path.name[1:-len(".part")]
        path.replace(final)
        files.append(str(final))
    return files
