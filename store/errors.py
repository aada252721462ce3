"""What a stream refuses, and what the receiver's disk refuses (tree: sendlearn/errors.py).

    Refused(reason)          what a stream cannot take; ``code`` is the close code its connection ends with
    ├── InvalidBlocks        blocks that break the stream (seq or samples out of reach)     INVALID_BLOCK
    ├── Overlap              samples over stored audio of another seq                      OVERLAP
    ├── InvalidBye           a BYE that does not fit the stream (last seq, dropped ranges)  INVALID_BYE
    └── StreamMismatch       a HELLO that disagrees with the stream on disk                 STREAM_MISMATCH
    StorageError(reason)     the disk refused a write or a sync                             STORAGE
    StreamBusy               another writer on this data dir holds the stream
"""

from __future__ import annotations

from typing import ClassVar

from sendlearn.errors import SendLearnError
from sendlearn.transport import ErrorCode


class Refused(SendLearnError):
    """Something the stream cannot take; the connection ends with ``code`` and this message."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_BLOCK


class InvalidBlocks(Refused):
    code = ErrorCode.INVALID_BLOCK


class Overlap(Refused):
    code = ErrorCode.OVERLAP


class InvalidBye(Refused):
    code = ErrorCode.INVALID_BYE


class StreamMismatch(Refused):
    code = ErrorCode.STREAM_MISMATCH


class StorageError(SendLearnError):
    """The disk refused a write or a sync; ``reason`` names the problem for the peer."""

    code: ClassVar[ErrorCode] = ErrorCode.STORAGE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamBusy(SendLearnError):
    """A receiver on the same data dir holds the stream: it is not ours to write now."""
