"""Store errors to the close codes a connection ends with (docs/protocol.md, "Errors").

The store does not import the transport, so the mapping lives here, in one table. The most
specific class wins (a subclass of ``Refused`` before ``Refused`` itself).
"""

from __future__ import annotations

from sendlearn.store.errors import (
    InvalidBlocks,
    InvalidBye,
    Overlap,
    Refused,
    StorageError,
    StreamBusy,
    StreamMismatch,
)
from sendlearn.transport import ErrorCode

CLOSE_CODES: tuple[tuple[type[Exception], ErrorCode], ...] = (
    (Overlap, ErrorCode.OVERLAP),
    (InvalidBye, ErrorCode.INVALID_BYE),
    (StreamMismatch, ErrorCode.STREAM_MISMATCH),
    (InvalidBlocks, ErrorCode.INVALID_BLOCK),
    (Refused, ErrorCode.INVALID_BLOCK),  # anything else a stream cannot take
    (StorageError, ErrorCode.STORAGE),
    (StreamBusy, ErrorCode.STREAM_BUSY),
)


def close_code(exc: Exception) -> ErrorCode:
    """The close code for a store error; RECEIVER_ERROR for anything the table does not name."""
    for kind, code in CLOSE_CODES:
        if isinstance(exc, kind):
            return code
    return ErrorCode.RECEIVER_ERROR
