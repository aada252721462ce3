"""The capture processor: the part of the plugin that sits on the audio thread.

``process`` returns the very array it was given (audio passes through untouched), and on
the way copies what the block holds into a ``Block`` that it hands off without waiting. What a
Block checks is checked here once (names, rate, channels) or as it comes (the host's events,
frames, playhead), so the block is made without checking it again (``Block.checked_by_maker``):
on an audio thread, after an idle period as between a host's callbacks, every line of Python
runs several times slower from cold caches (scripts/bench_process.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypedDict, TypeVar, Unpack

import numpy as np

from sendlearn.capture import (
    MAX_CHANNELS,
    MAX_FRAMES,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    STOPPED,
    Block,
    CaptureError,
    HandOff,
    InvalidBlock,
    MidiEvent,
    ParamChange,
    Playhead,
    StreamInfo,
    check_name,
)

MidiInput = MidiEvent | tuple[int, bytes]
OpenStream = Callable[[StreamInfo], "CaptureProcessor"]  # how a host asks for the processor of a stream
ParamInput = ParamChange | tuple[int, str, float]
_Item = TypeVar("_Item", MidiEvent, ParamChange)


class ProcessorOptions(TypedDict, total=False):
    """The keyword options of ``CaptureProcessor``, for ``CaptureProcessor.for_stream``."""

    handoff: HandOff | None
    capacity: int
    realtime: bool
    first_seq: int
    start_sample: int


class CaptureProcessor:
    """Numbers blocks, stamps absolute samples and hands each block off.

    ``realtime=True`` (a live audio thread): a full hand-off drops the block and counts it
    (``dropped``); the seq it had is never reused, so the receiver records the hole as a gap.
    ``realtime=False`` (an offline render): a full hand-off makes ``process`` wait for room.
    MIDI events and parameter changes that are malformed or outside the block are not
    allowed to stop the audio: they are counted in ``rejected_events`` and the last problem
    is kept in ``last_rejection``.
    """

    def __init__(
        self,
        session: str,
        stream: str,
        sample_rate: int,
        channels: int,
        *,
        handoff: HandOff | None = None,
        capacity: int = 1024,
        realtime: bool = True,
        first_seq: int = 0,
        start_sample: int = 0,
    ) -> None:
        self.session = check_name(session, "session")
        self.stream = check_name(stream, "stream")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        # what every Block would check, checked once (process makes blocks without checking them again)
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise InvalidBlock("sample_rate", f"must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}, got {self.sample_rate}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise InvalidBlock("channels", f"must be 1-{MAX_CHANNELS}, got {self.channels}")
        self.handoff = handoff if handoff is not None else HandOff(capacity)
        self.realtime = realtime
        self._seq = first_seq
        self._sample = start_sample
        self._rejected = 0
        self.last_rejection: str | None = None

    def process(
        self,
        audio: np.ndarray,
        midi: Iterable[MidiInput] = (),
        playhead: Playhead = STOPPED,
        params: Iterable[ParamInput] = (),
    ) -> np.ndarray:
        """Capture one block; return ``audio`` itself, unchanged."""
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ValueError(f"audio must be (channels={self.channels}, frames), got {audio.shape}")
        frames = audio.shape[1]
        if not 0 < frames <= MAX_FRAMES:  # what Block would refuse
            raise InvalidBlock("frames", f"must be 1-{MAX_FRAMES}, got {frames}")
        if not isinstance(playhead, Playhead):
            raise InvalidBlock("playhead", f"must be a Playhead, not {type(playhead).__name__}")
        block = Block.checked_by_maker(
            self.session, self.stream, self._seq, self._sample, frames, self.sample_rate, self.channels, playhead,
            self._events(midi, frames) if midi else (),  # most blocks have none
            self._params(params, frames) if params else (),
            np.array(audio, dtype=np.float32, order="C"),  # always a copy: hosts reuse buffers
        )
        if self.realtime:
            self.handoff.offer(block)
        else:
            self.handoff.put(block)
        self._seq += 1
        self._sample += frames
        return audio

    def skip(self, blocks: int, frames: int) -> None:
        """``blocks`` periods of ``frames`` samples in all never reached us (a live host lost
        them before capture): their seqs are used up and counted as dropped, so the receiver
        records their samples as a gap, exactly like blocks the hand-off refused."""
        if blocks < 1 or frames < 0:
            raise ValueError(f"skip needs blocks >= 1 and frames >= 0, got {blocks}, {frames}")
        self.handoff.count_dropped(blocks)
        self._seq += blocks
        self._sample += frames

    @classmethod
    def for_stream(cls, info: StreamInfo, **options: Unpack[ProcessorOptions]) -> CaptureProcessor:
        """A processor for ``info``'s session, stream, rate and channels."""
        return cls(info.session, info.stream, info.sample_rate, info.channels, **options)

    def close(self) -> None:
        """No more blocks: lets the consumer finish once it has drained the hand-off."""
        self.handoff.close()

    def _events(self, midi: Iterable[MidiInput], frames: int) -> tuple[MidiEvent, ...]:
        return self._collect(midi, frames, "midi", lambda item: MidiEvent(int(item[0]), item[1]), MidiEvent)

    def _params(self, params: Iterable[ParamInput], frames: int) -> tuple[ParamChange, ...]:
        return self._collect(params, frames, "params",
                             lambda item: ParamChange(int(item[0]), item[1], float(item[2])), ParamChange)

    def _collect(self, items: Iterable[_Item | tuple[Any, ...]], frames: int, field: str,
                 make: Callable[[Any], _Item], kind: type[_Item]) -> tuple[_Item, ...]:
        """Valid items inside the block, sorted by offset (stably: one sample keeps the host's
        order); the others counted and skipped. A host may hand anything: ``make`` turns what is
        not a ``kind`` into one or raises TypeError, IndexError or ValueError."""
        kept: list[_Item] = []
        for item in items:
            try:
                value = item if isinstance(item, kind) else make(item)
                if value.offset >= frames:
                    raise CaptureError(f"{field}.offset", f"{value.offset} is outside {frames} frames")
            except (CaptureError, TypeError, IndexError, ValueError) as exc:
                self._reject(exc)
                continue
            kept.append(value)
        kept.sort(key=_offset)
        return tuple(kept)

    def _reject(self, exc: Exception) -> None:
        self._rejected += 1
        self.last_rejection = str(exc)

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def position(self) -> int:
        """Absolute sample of the next block's first frame."""
        return self._sample

    @property
    def dropped(self) -> int:
        """Blocks the hand-off refused or the host lost before capture (live only)."""
        return self.handoff.dropped

    @property
    def rejected_events(self) -> int:
        return self._rejected


def _offset(item: MidiEvent | ParamChange) -> int:
    return item.offset
