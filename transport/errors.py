"""Protocol error codes, and the exceptions of the two ends of a mistake (tree: sendlearn/errors.py).

    ProtocolError(code, reason)    what the peer sent breaks the protocol: the only exception
                                   ``decode_frame`` raises, and what ``Protocol`` closes on
    InvalidMessage(code, reason)   this end built a message the protocol forbids (a bug or a
                                   bad argument here; ``code`` is what a peer would be told)
    InvalidState                   this end sent a message its connection's state does not allow

Codes live in the websocket private range (4000-4999), so an ERROR message's code is also
the close code of the connection it ends.
"""

from __future__ import annotations

from enum import IntEnum

from sendlearn.errors import SendLearnError


class ErrorCode(IntEnum):
    MALFORMED = 4000
    UNSUPPORTED_VERSION = 4001
    BAD_ID = 4002
    UNAUTHORIZED = 4003
    FRAME_TOO_LARGE = 4004
    BAD_DIGEST = 4005
    INVALID_BLOCK = 4006
    UNEXPECTED_MESSAGE = 4007
    STREAM_BUSY = 4008
    STREAM_MISMATCH = 4009
    RECEIVER_ERROR = 4010
    GOING_AWAY = 4011
    STORAGE = 4012
    OVERLAP = 4013
    BUSY = 4014
    TIMEOUT = 4015
    INVALID_BYE = 4016


EXPLANATIONS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED: "the frame is not a valid message (flags, zstd, msgpack, a field's type or range)",
    ErrorCode.UNSUPPORTED_VERSION: "HELLO names a protocol version this end does not speak",
    ErrorCode.BAD_ID: "a session or stream id is not 1-64 of A-Z a-z 0-9 . _ - (or only dots)",
    ErrorCode.UNAUTHORIZED: "the token is missing or not accepted",
    ErrorCode.FRAME_TOO_LARGE: "the frame, its decompressed body, or what it decodes to (list items, events, "
                                "ranges, audio bytes) is over a limit (docs/serve.md)",
    ErrorCode.BAD_DIGEST: "a block's content does not hash to the digest it carries",
    ErrorCode.INVALID_BLOCK: "a block breaks the block model (frames, offsets, MIDI bytes, playhead)",
    ErrorCode.UNEXPECTED_MESSAGE: "a message that is not allowed in the connection's current state",
    ErrorCode.STREAM_BUSY: "another connection is already streaming this (session, stream)",
    ErrorCode.STREAM_MISMATCH: "HELLO disagrees with what is on disk for this stream (rate, channels)",
    ErrorCode.RECEIVER_ERROR: "the receiver failed internally; no details are given to the peer",
    ErrorCode.GOING_AWAY: "the receiver is shutting down; reconnect later",
    ErrorCode.STORAGE: "the receiver cannot write or sync its disk (full, read-only, I/O error); nothing unsynced "
                       "was acknowledged; reconnect later",
    ErrorCode.OVERLAP: "a block's samples overlap stored audio of other seqs",
    ErrorCode.BUSY: "the receiver is at its limit of connections (in all, or from this address); reconnect later",
    ErrorCode.TIMEOUT: "no HELLO soon enough after connecting, or no message for the idle timeout after it",
    ErrorCode.INVALID_BYE: "a BYE that does not fit the stream: its last seq is below a seq that arrived, or a "
                           "dropped range is outside the stream's open seqs",
}


class ProtocolError(SendLearnError):
    """A frame or message from the peer that breaks the protocol, with the code to close on."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code.name} ({int(code)}): {reason}")
        self.code = code
        self.reason = reason


class InvalidMessage(SendLearnError, ValueError):
    """A message this end was asked to build that the protocol forbids; decoding turns it
    into the peer's ProtocolError with the same code."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class InvalidState(SendLearnError):
    """This end sent a message its connection's state does not allow (websockets' InvalidState)."""
