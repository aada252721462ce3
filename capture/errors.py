"""Errors raised by the block model.

    CaptureError (SendLearnError, ValueError)
    ├── InvalidName      an id that is not a safe name
    ├── InvalidMidi      bytes that are not one well-formed MIDI message
    ├── InvalidBlock     frames, channels, dtype, offsets or playhead out of range
    └── DigestMismatch   a block whose content does not hash to the digest it carries
    ConsumerFailed (SendLearnError)   the hand-off's consumer gave up; its producer stops

The whole tree of the package's errors is drawn in sendlearn/errors.py.

Every error names the field it is about, so callers (the protocol, the CLI) can map it
to a code and a message without parsing strings.
"""

from __future__ import annotations

from sendlearn.errors import SendLearnError


class CaptureError(SendLearnError, ValueError):
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


class ConsumerFailed(SendLearnError):
    """The consumer of a hand-off gave up (its sender failed): a producer's ``put`` raises this
    instead of waiting for room that will never come."""
