"""The shared-memory rings between the audio process (JACK or PortAudio) and the process that captures.

The JACK callback's process (``jack_host.py``) does nothing but copy each period into a
preallocated slot here and return; the capturing process (``bridge.py``) turns slots into
blocks, and the sender, the receiver and the panel live there too, so no other Python
thread ever competes with the callback for its GIL (measured in one process: the sender's
work took the callback's p99 to 32–54 % of a 128-frame period; scripts/bench_live.py).

One file under ``/dev/shm`` (RAM) is mapped by both processes and unlinked as soon as both
hold it, so nothing is left behind even after a SIGKILL. It holds:

- ``control``: int64 counters (``Control``): ring heads and tails, drops, cycles, xruns;
- ``periods``: ``slots`` records of one period each: the JACK frame time of its first
  frame, the raw transport fields, the JACK MIDI port's events and the audio;
- ``messages``: a second ring for the virtual MIDI port's messages, stamped on arrival;
- ``times``: the callback's durations (ns), newest overwriting oldest, for benchmarks.

Each ring has one writer and one reader (single producer, single consumer): the writer
fills a record, then advances ``head``; the reader copies it out, then advances ``tail``.
Neither waits for the other and there is no lock the other side could hold. In real time a
full ring drops what does not fit and counts it; a period dropped that way is recorded with
the next one that fits (``dropped_before``), so the stream marks its samples as a gap. While
JACK freewheels (a DAW exporting faster than real time) there is no deadline: the writer
naps until the reader makes room, so no period is lost.
Ordering: numpy stores are plain stores and x86-64 keeps them in program order (TSO);
the heads are written last.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

MAX_EVENTS = 512  # JACK MIDI events one period can carry here; more are counted, not stored
MIDI_BYTES = 16384  # their bytes (a period of dense MIDI plus a few sysex)
MAX_MESSAGE = 1024  # bytes of one virtual-port message (sysex longer than this is counted)
MESSAGE_SLOTS = 4096
TIMING_SLOTS = 1 << 16


class Control(IntEnum):
    """Indices of the int64 counters in ``SharedRings.control``."""

    HEAD = 0  # periods written
    TAIL = 1  # periods read
    DROPPED_PERIODS = 2  # the ring was full
    DROPPED_EVENTS = 3  # JACK MIDI events that did not fit a slot, or were in a dropped period
    CYCLES = 4  # callbacks run
    XRUNS = 5  # xruns the server reported (counted by the capturing process: bridge.py)
    ERRORS = 6  # callbacks that raised (audio still passed through)
    MESSAGE_HEAD = 7
    MESSAGE_TAIL = 8
    MESSAGES_RECEIVED = 9
    MESSAGES_DROPPED = 10  # the message ring was full, or a message was too long
    STATE = 11  # RunState
    DROPPED_AT_END = 12  # periods dropped after the last one written (set once stopped)
    DROPPED_FRAMES_AT_END = 13
    FREEWHEELING = 14  # 1 while JACK freewheels (set from the freewheel notification)
    FREEWHEEL_WAITS = 15  # freewheeling periods whose callback waited for room in a full ring
    INPUT_OVERFLOWS = 16  # PortAudio callbacks flagged paInputOverflow (plugin/live/portaudio_host.py)
    CLOCK_GAPS = 17  # times the device's timestamps showed frames lost (plugin/live/adc_clock.py)
    DEVICE_LOST = 18  # 1: the device stopped on its own (gone, unplugged, its server died)
    CLOCK_JUMPS = 19  # leaps the device's timestamps showed, gaps or not (plugin/live/adc_clock.py)


CONTROL_SLOTS = 32


class RunState(IntEnum):
    STARTING = 0
    RUNNING = 1
    STOPPED = 2  # the writer has deactivated: nothing more will be written


class Int(IntEnum):
    """Indices into a period record's ``ints`` (written in one store by the callback)."""

    CYCLE = 0  # JACK frame time of the period's first frame (a uint32 in JACK)
    ENTRY_NS = 1  # CLOCK_MONOTONIC when the callback began: cycle lengths, measured
    FRAMES = 2
    DROPPED_BEFORE = 3  # periods dropped (ring full) just before this one
    DROPPED_FRAMES_BEFORE = 4
    STATE = 5  # jack transport state
    VALID = 6  # jack position bits
    FRAME = 7  # transport frame
    BAR = 8
    BEAT = 9
    TICK = 10
    EVENTS = 11  # JACK MIDI events stored
    EVENT_BYTES = 12
    FREEWHEEL = 13  # 1: JACK was freewheeling (no deadline: the period waited for room, never dropped)
    ADC_LAG_NS = 14  # PortAudio: currentTime - inputBufferAdcTime (how long ago the first frame was captured)


class Float(IntEnum):
    """Indices into a period record's ``floats``: the transport's BBT fields."""

    BEATS_PER_BAR = 0
    BEAT_TYPE = 1
    TICKS_PER_BEAT = 2
    BPM = 3


def period_dtype(channels: int, max_frames: int) -> np.dtype:
    return np.dtype([
        ("ints", np.int64, (len(Int),)),
        ("floats", np.float64, (len(Float),)),
        ("event_offset", np.int32, (MAX_EVENTS,)), ("event_length", np.int32, (MAX_EVENTS,)),
        ("event_data", np.uint8, (MIDI_BYTES,)),
        ("audio", np.float32, (channels, max_frames)),
    ], align=True)


MESSAGE_DTYPE = np.dtype([
    ("cycle", np.int64),  # last_frame_time when it arrived
    ("since", np.int64),  # frames_since_cycle_start when it arrived
    ("length", np.int32),
    ("data", np.uint8, (MAX_MESSAGE,)),
], align=True)


@dataclass(frozen=True)
class Layout:
    channels: int
    max_frames: int
    slots: int

    @property
    def period(self) -> np.dtype:
        return period_dtype(self.channels, self.max_frames)

    def offsets(self) -> tuple[int, int, int, int, int]:
        """(control, periods, messages, times, total) byte offsets."""
        periods = _align(CONTROL_SLOTS * 8)
        messages = _align(periods + self.slots * self.period.itemsize)
        times = _align(messages + MESSAGE_SLOTS * MESSAGE_DTYPE.itemsize)
        total = _align(times + TIMING_SLOTS * 8)
        return 0, periods, messages, times, total


def _map(fd: int, size: int) -> mmap.mmap:
    """A shared mapping with its page tables filled in now where Linux can (``MAP_POPULATE``)."""
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags)


def _align(n: int, to: int = 4096) -> int:
    return -(-n // to) * to


def slots_for(block_size: int, rate: int, seconds: float = 2.0) -> int:
    """Enough periods for ``seconds`` of audio, so a reader stalled that long loses nothing."""
    return int(min(8192, max(64, seconds * rate / max(block_size, 1))))


class SharedRings:
    """The mapping both processes hold. ``create`` on the JACK side, ``attach`` on the other."""

    def __init__(self, path: Path, layout: Layout, mapping: mmap.mmap) -> None:
        self.path, self.layout, self._mapping = path, layout, mapping
        _, periods, messages, times, _ = layout.offsets()
        buffer = memoryview(mapping)
        self.control = np.frombuffer(buffer, np.int64, CONTROL_SLOTS, 0)
        self.periods = np.frombuffer(buffer, layout.period, layout.slots, periods)
        self.messages = np.frombuffer(buffer, MESSAGE_DTYPE, MESSAGE_SLOTS, messages)
        self.times = np.frombuffer(buffer, np.int64, TIMING_SLOTS, times)

    @classmethod
    def create(cls, layout: Layout) -> SharedRings:
        """The file's memory is allocated and mapped now (``fallocate``, ``MAP_POPULATE``), so the
        callback never takes a page fault on its first lap round the ring (a fault allocating
        and zeroing a page of tmpfs costs microseconds, several a period)."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        fd, name = tempfile.mkstemp(prefix="sendlearn-ring-", dir=folder)
        size = layout.offsets()[-1]
        try:
            os.ftruncate(fd, size)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError:
                pass  # a file system without fallocate: pages come on first touch
            mapping = _map(fd, size)
        finally:
            os.close(fd)
        return cls(Path(name), layout, mapping)

    @classmethod
    def attach(cls, path: Path, layout: Layout) -> SharedRings:
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = _map(fd, layout.offsets()[-1])
        finally:
            os.close(fd)
        return cls(path, layout, mapping)

    def unlink(self) -> None:
        """Remove the name; the memory stays mapped in both processes until they let go."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def count(self, index: Control) -> int:
        return int(self.control[index])

    def callback_times_ns(self) -> np.ndarray:
        """The latest callback durations (up to ``TIMING_SLOTS``), oldest first."""
        cycles = self.count(Control.CYCLES)
        if cycles <= TIMING_SLOTS:
            return self.times[:cycles].copy()
        return np.roll(self.times, -(cycles % TIMING_SLOTS))
