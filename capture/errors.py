"""Errors raised by the block model.

    CaptureError (ValueError)
    ├── InvalidName      an id that is not a safe name
    ├── InvalidMidi      bytes that are not one well-formed MIDI message
    ├── InvalidBlock     frames, channels, dtype, offsets or playhead out of range
    └── DigestMismatch   a block whose content does not hash to the digest it carries

Every error names the field it is about, so callers (the protocol, the CLI) can map it
to a code and a message without parsing strings.
"""

from __future__ import annotations


class CaptureError(ValueError):
    """A value that cannot be part of a block."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidName(CaptureError):
    pass


class InvalidMidi(CaptureError):
    pass


class InvalidBlock(CaptureError):
    pass


class DigestMismatch(CaptureError):
    pass
