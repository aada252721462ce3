"""The one unit that travels from host to disk: a block of audio with what happened in it."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
import xxhash

from .errors import DigestMismatch, InvalidBlock
from .midi import MidiEvent
from .names import check_name
from .playhead import Playhead

MAX_FRAMES = 1 << 20
MAX_CHANNELS = 64
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
MAX_PARAM_NAME = 128

_HEADER = struct.Struct("<qqIIH")
_PLAYHEAD = struct.Struct("<dddBBqd???")
_EVENT = struct.Struct("<IIq")
_PARAM = struct.Struct("<IHd")


@dataclass(frozen=True, slots=True)
class ParamChange:
    """A parameter (automation lane) taking ``value`` at ``offset`` frames into its block."""

    offset: int
    param: str
    value: float

    def __post_init__(self) -> None:
        if type(self.offset) is not int or self.offset < 0:
            raise InvalidBlock("params.offset", f"must be an int >= 0, got {self.offset!r}")
        if not isinstance(self.param, str) or not 0 < len(self.param) <= MAX_PARAM_NAME:
            raise InvalidBlock("params.param", f"must be a name of 1-{MAX_PARAM_NAME} characters")
        if not self.param.isprintable():
            raise InvalidBlock("params.param", f"{self.param!r} holds control characters")
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise InvalidBlock("params.value", f"must be a finite number, got {self.value!r}")


def block_digest(
    session: str, stream: str, seq: int, start_sample: int, frames: int, sample_rate: int,
    channels: int, playhead: Playhead, midi: tuple[MidiEvent, ...],
    params: tuple[ParamChange, ...], audio: np.ndarray | None,
) -> int:
    """xxh3-64 of a block's content in a fixed byte layout (docs/protocol.md, "Digest"). One call
    over the whole layout: xxhash lets go of the GIL in every call, and each time it did, a busy
    sender thread could take it and keep the capture thread waiting (scripts/bench_process.py)."""
    parts: list[bytes | memoryview] = [_HEADER.pack(seq, start_sample, frames, sample_rate, channels),
                                       session.encode(), b"\0", stream.encode(), b"\0",
                                       _PLAYHEAD.pack(*playhead.as_tuple())]
    for event in midi:
        error = -1 if event.timing_error is None else event.timing_error
        parts += (_EVENT.pack(event.offset, len(event.data), error), event.data)
    for change in params:
        name = change.param.encode()
        parts += (_PARAM.pack(change.offset, len(name), float(change.value)), name)
    if audio is None:
        parts.append(b"\0no-audio")
    else:
        parts += (b"\1", audio.data)
    return xxhash.xxh3_64_intdigest(b"".join(parts))


@dataclass(frozen=True, slots=True)
class Block:
    """``frames`` frames of one stream starting at ``start_sample``, with its MIDI, playhead
    and automation. ``audio`` is float32 ``(channels, frames)``, or None when only MIDI and
    playhead were kept. ``digest`` is computed when not given and checked when given."""

    session: str
    stream: str
    seq: int
    start_sample: int
    frames: int
    sample_rate: int
    channels: int
    playhead: Playhead
    midi: tuple[MidiEvent, ...] = ()
    params: tuple[ParamChange, ...] = ()
    audio: np.ndarray | None = field(default=None, repr=False)
    digest: int | None = None

    def __post_init__(self) -> None:
        check_name(self.session, "session")
        check_name(self.stream, "stream")
        _check_int("seq", self.seq, 0, (1 << 63) - 1)
        _check_int("start_sample", self.start_sample, 0, (1 << 62))
        _check_int("frames", self.frames, 1, MAX_FRAMES)
        _check_int("sample_rate", self.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        _check_int("channels", self.channels, 1, MAX_CHANNELS)
        if not isinstance(self.playhead, Playhead):
            raise InvalidBlock("playhead", f"must be a Playhead, not {type(self.playhead).__name__}")
        if type(self.midi) is not tuple:
            object.__setattr__(self, "midi", tuple(self.midi))
        if type(self.params) is not tuple:
            object.__setattr__(self, "params", tuple(self.params))
        if self.midi:  # most blocks have neither
            _check_offsets("midi", self.midi, MidiEvent, self.frames)
        if self.params:
            _check_offsets("params", self.params, ParamChange, self.frames)
        audio = self.audio
        if audio is not None:
            if not isinstance(audio, np.ndarray) or audio.dtype != np.float32:
                raise InvalidBlock("audio", "must be a float32 numpy array")
            if audio.shape != (self.channels, self.frames):
                raise InvalidBlock(
                    "audio", f"shape {audio.shape} is not (channels, frames) = "
                    f"({self.channels}, {self.frames})"
                )
            if not audio.flags.c_contiguous:
                raise InvalidBlock("audio", "must be C-contiguous")
        digest = block_digest(
            self.session, self.stream, self.seq, self.start_sample, self.frames,
            self.sample_rate, self.channels, self.playhead, self.midi, self.params, audio,
        )
        if self.digest is None:
            object.__setattr__(self, "digest", digest)
        elif self.digest != digest:
            raise DigestMismatch(
                "digest", f"block {self.seq} carries {self.digest:016x}, content hashes to {digest:016x}"
            )

    @classmethod
    def checked_by_maker(cls, session: str, stream: str, seq: int, start_sample: int, frames: int,
                         sample_rate: int, channels: int, playhead: Playhead, midi: tuple[MidiEvent, ...],
                         params: tuple[ParamChange, ...], audio: np.ndarray) -> Block:
        """A block whose maker has checked everything ``__post_init__`` would (the capture
        processor: its names, rate and channels once, its own counters, the host's events as they
        came, its own float32 copy of the audio): only the digest is computed. On an audio
        thread, after an idle period, every check costs several times its warm price
        (scripts/bench_process.py)."""
        block = object.__new__(cls)
        for name, value in (("session", session), ("stream", stream), ("seq", seq), ("start_sample", start_sample),
                            ("frames", frames), ("sample_rate", sample_rate), ("channels", channels),
                            ("playhead", playhead), ("midi", midi), ("params", params), ("audio", audio)):
            object.__setattr__(block, name, value)
        object.__setattr__(block, "digest", block_digest(session, stream, seq, start_sample, frames, sample_rate,
                                                         channels, playhead, midi, params, audio))
        return block

    @property
    def end_sample(self) -> int:
        """The first sample after this block."""
        return self.start_sample + self.frames

    def absolute_events(self) -> list[tuple[int, MidiEvent]]:
        """Each MIDI event with its absolute sample from stream start."""
        return [(self.start_sample + e.offset, e) for e in self.midi]


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise InvalidBlock(name, f"must be an int in {low}..{high}, got {value!r}")


def _check_offsets(
    name: str, items: tuple[object, ...], kind: type[MidiEvent] | type[ParamChange], frames: int
) -> None:
    last = 0
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise InvalidBlock(f"{name}[{index}]", f"must be a {kind.__name__}")
        if item.offset >= frames:
            raise InvalidBlock(
                f"{name}[{index}].offset", f"{item.offset} is outside the block's {frames} frames"
            )
        if item.offset < last:
            raise InvalidBlock(f"{name}[{index}].offset", f"{item.offset} comes before {last}: not sorted")
        last = item.offset
