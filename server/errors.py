"""The close code a store error ends its connection with: the store knows no wire, so the
receiver maps its refusals here (docs/protocol.md, "Errors")."""

from __future__ import annotations

from sendlearn.store.errors import InvalidBlocks, InvalidBye, Overlap, Refused, StorageError, StreamMismatch
from sendlearn.transport import ErrorCode

_CLOSE_CODES: tuple[tuple[type[Exception], ErrorCode], ...] = (
    (Overlap, ErrorCode.OVERLAP),
    (InvalidBye, ErrorCode.INVALID_BYE),
    (StreamMismatch, ErrorCode.STREAM_MISMATCH),
    (InvalidBlocks, ErrorCode.INVALID_BLOCK),
    (Refused, ErrorCode.INVALID_BLOCK),
    (StorageError, ErrorCode.STORAGE),
)


def close_code(exc: Exception) -> ErrorCode:
    """The close code for a store error (INVALID_BLOCK for a refusal it does not name)."""
    for kind, code in _CLOSE_CODES:
        if isinstance(exc, kind):
            return code
    return ErrorCode.INVALID_BLOCK
