"""What a stream refuses, and what the store's disk refuses (tree: sendlearn/errors.py).

    Refused(reason)          what a stream cannot take
    ├── InvalidBlocks        blocks that break the stream (seq or samples out of reach)
    ├── Overlap              samples over stored audio of another seq
    ├── InvalidBye           an end that does not fit the stream (last seq, dropped ranges)
    └── StreamMismatch       a stream that disagrees with the stream on disk
    StorageError(reason)     the disk refused a write or a sync
    └── OldJournal           a work folder in a journal format this store does not read
    StreamBusy               another writer on this data dir holds the stream

The store knows no wire: the receiver maps these to close codes (``server.errors.close_code``).
"""

from __future__ import annotations

from sendlearn.errors import SendLearnError


class Refused(SendLearnError):
    """Something the stream cannot take."""


class InvalidBlocks(Refused):
    pass


class Overlap(Refused):
    pass


class InvalidBye(Refused):
    pass


class StreamMismatch(Refused):
    pass


class StorageError(SendLearnError):
    """The disk refused a write or a sync; ``reason`` names the problem for the peer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OldJournal(StorageError):
    """A work folder whose journal an older (or newer) sendlearn wrote: refused, never dropped."""


class StreamBusy(SendLearnError):
    """Another writer on the same data dir holds the stream: it is not ours to write now."""
