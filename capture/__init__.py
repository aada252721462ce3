"""The block model: what the capture processor records, with no I/O and no host library."""

from .block import MAX_CHANNELS, MAX_FRAMES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, Block, ParamChange, block_digest
from .errors import CaptureError, ConsumerFailed, DigestMismatch, InvalidBlock, InvalidMidi, InvalidName
from .handoff import HandOff
from .midi import MidiEvent, check_midi_bytes, midi_channel, midi_kind
from .names import check_name
from .playhead import STOPPED, Playhead
from .quality import Quality
from .stream import StreamInfo

__all__ = [
    "MAX_CHANNELS", "MAX_FRAMES", "MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "Block", "CaptureError", "ConsumerFailed", "HandOff", "DigestMismatch", "InvalidBlock", "InvalidMidi", "InvalidName",
    "MidiEvent", "ParamChange", "Playhead", "Quality", "STOPPED", "StreamInfo", "block_digest", "check_midi_bytes",
    "check_name", "midi_channel", "midi_kind",
]
