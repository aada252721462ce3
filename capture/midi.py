"""MIDI events inside a block: an offset in frames and the raw bytes of one whole message.

The messages we accept are mido's (``mido.messages.specs``: every status byte MIDI 1.0
defines, its type and its length). Running status is rejected: hosts hand us whole messages,
and a message that depends on the one before it cannot be placed on its own sample. Sysex is
framed ``F0 … F7``. ``delta_track`` is the one place messages on absolute ticks become a
standard MIDI file's track (delta times).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import mido

from .errors import InvalidMidi

MAX_SYSEX_BYTES = 65536
SYSEX = 0xF0

# status byte -> (mido's type, length in bytes; 0 for sysex, which is framed F0 … F7), from
# mido's table (mido.messages.specs.SPEC_BY_STATUS: every channel's status byte, and the
# system ones MIDI 1.0 defines)
KINDS: dict[int, tuple[str, int]] = {
    status: (str(spec["type"]), 0 if status == SYSEX else int(spec["length"]))
    for status, spec in mido.messages.specs.SPEC_BY_STATUS.items()
}


def check_midi_bytes(data: bytes) -> bytes:
    """Return ``data`` as ``bytes`` if it is exactly one well-formed MIDI message."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidMidi("data", f"must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidMidi("data", "is empty")
    status = data[0]
    if status < 0x80:
        raise InvalidMidi("data", f"starts with data byte 0x{status:02X} (running status is not accepted)")
    if status not in KINDS:
        raise InvalidMidi("data", f"status 0x{status:02X} is undefined in MIDI 1.0")
    if status == SYSEX:
        if len(data) < 2 or data[-1] != 0xF7:
            raise InvalidMidi("data", "sysex must end with F7")
        if len(data) > MAX_SYSEX_BYTES:
            raise InvalidMidi("data", f"sysex of {len(data)} bytes is over {MAX_SYSEX_BYTES}")
        if any(b >= 0x80 for b in data[1:-1]):
            raise InvalidMidi("data", "sysex body holds a status byte")
        return data
    length = KINDS[status][1]
    if len(data) != length:
        raise InvalidMidi("data", f"status 0x{status:02X} takes {length} bytes, got {len(data)}")
    for b in data[1:]:
        if b >= 0x80:
            raise InvalidMidi("data", f"data byte 0x{b:02X} is over 0x7F")
    return data


def midi_kind(data: bytes) -> str:
    """The mido name of a well-formed message's type."""
    kind = KINDS[data[0]][0]
    if kind == "note_on" and data[2] == 0:
        return "note_off"  # velocity-0 note-on is a note-off by the MIDI spec
    return kind


def midi_channel(data: bytes) -> int | None:
    """0-based channel of a channel message; None for system messages."""
    return data[0] & 0x0F if data[0] < 0xF0 else None


def delta_track(timed: Iterable[tuple[int, Any]], end: int | None = None) -> mido.MidiTrack:
    """``(tick, message)`` pairs, in the order given, as a ``mido.MidiTrack`` of delta times,
    closed by ``end_of_track`` on tick ``end`` (default: the last message's). A tick before the
    one before it is taken as that one (delta 0)."""
    track = mido.MidiTrack()
    now = 0
    for tick, message in timed:
        track.append(message.copy(time=max(0, tick - now)))
        now = max(now, tick)
    track.append(mido.MetaMessage("end_of_track", time=0 if end is None else max(0, end - now)))
    return track


@dataclass(frozen=True, slots=True)
class MidiEvent:
    """One MIDI message at ``offset`` frames from the start of its block.

    ``timing_error`` is None when the offset is exact (offline hosts, JACK MIDI ports); when
    the offset is an estimate (a virtual port timed against the audio clock) it is the bound
    on the estimate's error, in samples.
    """

    offset: int
    data: bytes
    timing_error: int | None = None

    def __post_init__(self) -> None:
        if type(self.offset) is not int or self.offset < 0:
            raise InvalidMidi("offset", f"must be an int >= 0, got {self.offset!r}")
        if self.timing_error is not None and (type(self.timing_error) is not int
                                              or not 0 <= self.timing_error < 2**31):
            raise InvalidMidi("timing_error", f"must be None or an int in 0..2**31-1, got {self.timing_error!r}")
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", check_midi_bytes(self.data))
        else:
            check_midi_bytes(self.data)

    @property
    def kind(self) -> str:
        return midi_kind(self.data)

    @property
    def channel(self) -> int | None:
        return midi_channel(self.data)
