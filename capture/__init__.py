"""The block model: what the capture processor records, with no I/O and no host library."""

from .block import MAX_FRAMES, Block, ParamChange, block_digest
from .errors import CaptureError, DigestMismatch, InvalidBlock, InvalidMidi, InvalidName
from .handoff import HandOff
from .midi import MidiEvent, check_midi_bytes, midi_channel, midi_kind
from .names import check_name
from .playhead import STOPPED, Playhead

__all__ = [
    "MAX_FRAMES", "Block", "CaptureError", "HandOff", "DigestMismatch", "InvalidBlock", "InvalidMidi", "InvalidName",
    "MidiEvent", "ParamChange", "Playhead", "STOPPED", "block_digest", "check_midi_bytes",
    "check_name", "midi_channel", "midi_kind",
]
