"""When the sender tries again, and when it gives up (docs/protocol.md, "Delivery").

    LinkLost(message, code)      one connection ended: the sender reconnects and resumes
    SenderError(message, code)   the stream cannot be delivered: the sender stops, its producer is told
    FATAL_CODES                  the receiver's refusals no retry can change (SenderError at once)
    backoff(attempt)             seconds to wait before connecting again

``code`` is the receiver's error code, when it gave one. A receiver that is busy, short of
disk, restarting or failing inside is tried again until the sender's ``give_up_after``.
"""

from __future__ import annotations

import random

from sendlearn.errors import SendLearnError

from .errors import ErrorCode

FATAL_CODES = {ErrorCode.UNAUTHORIZED, ErrorCode.BAD_ID, ErrorCode.STREAM_MISMATCH, ErrorCode.UNSUPPORTED_VERSION,
               ErrorCode.MALFORMED, ErrorCode.BAD_DIGEST, ErrorCode.INVALID_BLOCK, ErrorCode.UNEXPECTED_MESSAGE,
               ErrorCode.OVERLAP, ErrorCode.INVALID_BYE}


class SenderError(SendLearnError):
    """The stream could not be delivered; ``code`` is the receiver's error code if it sent one."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkLost(SendLearnError):
    """The connection ended; worth reconnecting. ``code``: the receiver's reason, if it gave one."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


def backoff(attempt: int) -> float:
    """Seconds before try ``attempt`` (1, 2, ...): exponential, capped at 5 s, with full jitter,
    so many senders cut at once do not reconnect in step."""
    return random.uniform(0.05, min(5.0, 0.1 * 2 ** min(attempt, 10)))
