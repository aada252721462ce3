"""MIDI events inside a block: an offset in frames and the raw bytes of one whole message.

The table below is the whole MIDI 1.0 wire grammar we accept (names as in mido). Running
status is rejected: hosts hand us whole messages, and a message that depends on the one
before it cannot be placed on its own sample. Sysex is framed ``F0 … F7``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidMidi

MAX_SYSEX_BYTES = 65536

# status (high nibble for channel messages, whole byte for system ones) -> (kind, length)
CHANNEL_KINDS: dict[int, tuple[str, int]] = {
    0x80: ("note_off", 3),
    0x90: ("note_on", 3),
    0xA0: ("polytouch", 3),
    0xB0: ("control_change", 3),
    0xC0: ("program_change", 2),
    0xD0: ("aftertouch", 2),
    0xE0: ("pitchwheel", 3),
}
SYSTEM_KINDS: dict[int, tuple[str, int]] = {
    0xF0: ("sysex", 0),  # variable length, framed F0 … F7
    0xF1: ("quarter_frame", 2),
    0xF2: ("songpos", 3),
    0xF3: ("song_select", 2),
    0xF6: ("tune_request", 1),
    0xF8: ("clock", 1),
    0xFA: ("start", 1),
    0xFB: ("continue", 1),
    0xFC: ("stop", 1),
    0xFE: ("active_sensing", 1),
    0xFF: ("reset", 1),
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
    if status < 0xF0:
        length = CHANNEL_KINDS[status & 0xF0][1]
    elif status == 0xF0:
        if len(data) < 2 or data[-1] != 0xF7:
            raise InvalidMidi("data", "sysex must end with F7")
        if len(data) > MAX_SYSEX_BYTES:
            raise InvalidMidi("data", f"sysex of {len(data)} bytes is over {MAX_SYSEX_BYTES}")
        if any(b >= 0x80 for b in data[1:-1]):
            raise InvalidMidi("data", "sysex body holds a status byte")
        return data
    elif status in SYSTEM_KINDS:
        length = SYSTEM_KINDS[status][1]
    else:
        raise InvalidMidi("data", f"status 0x{status:02X} is undefined in MIDI 1.0")
    if len(data) != length:
        raise InvalidMidi("data", f"status 0x{status:02X} takes {length} bytes, got {len(data)}")
    for b in data[1:]:
        if b >= 0x80:
            raise InvalidMidi("data", f"data byte 0x{b:02X} is over 0x7F")
    return data


def midi_kind(data: bytes) -> str:
    """The mido name of a well-formed message's type."""
    status = data[0]
    if status < 0xF0:
        kind = CHANNEL_KINDS[status & 0xF0][0]
        if kind == "note_on" and data[2] == 0:
            return "note_off"  # velocity-0 note-on is a note-off by the MIDI spec
        return kind
    return SYSTEM_KINDS[status][0]


def midi_channel(data: bytes) -> int | None:
    """0-based channel of a channel message; None for system messages."""
    return data[0] & 0x0F if data[0] < 0xF0 else None


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
