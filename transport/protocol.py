"""The sans-I/O protocol both ends drive: bytes in, events out; messages in, bytes out.

Like python-websockets' ``Protocol``: the websocket library only moves frames.

    protocol.receive_data(frame)      # a whole websocket binary message from the peer
    protocol.events_received()        # Hello | Welcome | BlocksReceived | Ack | Bye | Error
    protocol.send(...)/send_blocks()  # queue outgoing frames
    protocol.data_to_send()           # frames to write to the websocket
    protocol.close_code, close_reason # set once the connection must end on an error

``receive_data`` never raises: a bad frame becomes an ERROR to send, state CLOSED, and a
close code with a reason. Blocks come out as ``capture.Block`` — the one block type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sendlearn.capture import Block, CaptureError, DigestMismatch, block_digest

from .codec import Quality, decode_audio, degrade, encode_audio
from .decode import decode_frame
from .encode import encode_frame, encode_frame_sized
from .errors import ErrorCode, InvalidMessage, InvalidState, ProtocolError
from .limits import Limits
from .messages import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Ack,
    BlockEntry,
    BlockFrame,
    Bye,
    Error,
    Hello,
    Message,
    Welcome,
)
from .state import Role, State, next_state

MAX_CLOSE_REASON = 123  # bytes a websocket close frame's reason may hold


@dataclass(frozen=True, slots=True)
class BlocksReceived:
    """A BLOCK message, decoded and verified into capture Blocks of the stream."""

    quality: Quality
    blocks: tuple[Block, ...]
    backfill: bool
    dropped: tuple[tuple[int, int], ...]


Event = Hello | Welcome | BlocksReceived | Ack | Bye | Error

_KIND = {Hello: "hello", Welcome: "welcome", BlockFrame: "block", Ack: "ack", Bye: "bye", Error: "error"}


class Protocol:
    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        compression_level: int = 3,
        limits: Limits | None = None,
    ) -> None:
        self.role = role
        self.peer = Role.RECEIVER if role is Role.SENDER else Role.SENDER
        self.limits = limits if limits is not None else Limits(max_frame_size=max_frame_size)
        self.max_frame_size = self.limits.max_frame_size
        self.compression_level = compression_level
        self.state = State.IDLE
        self.hello: Hello | None = None
        self.close_code: ErrorCode | None = None
        self.close_reason: str = ""
        self._events: list[Event] = []
        self._outgoing: list[bytes] = []
        self.last_audio_payload = 0  # bytes of coded audio in the last BLOCK frame sent

    # --- sending --------------------------------------------------------------------------

    def send(self, message: Message, frame: bytes | None = None) -> None:
        """Queue ``message`` (already encoded as ``frame``, if given); raises InvalidState
        if this end may not send it now."""
        kind = _KIND[type(message)]
        after = next_state(self.state, kind, self.role)
        if after is None:
            raise InvalidState(f"{self.role.value} may not send {kind} in state {self.state.value}")
        if isinstance(message, Hello):
            self.hello = message
        self._outgoing.append(frame if frame is not None else encode_frame(message, self.compression_level))
        self.state = after

    def send_blocks(
        self,
        blocks: Sequence[Block],
        quality: Quality = Quality.FLOAT32,
        *,
        backfill: bool = False,
        dropped: Sequence[tuple[int, int]] = (),
        max_size: int | None = None,
    ) -> int:
        """Code ``blocks`` at ``quality`` into one BLOCK frame; returns its size in bytes.

        With ``max_size``, a frame that would be larger is not queued: InvalidMessage
        FRAME_TOO_LARGE is raised, and the caller sends fewer blocks per frame.
        """
        hello = self._require_hello()
        for block in blocks:
            if (block.session, block.stream, block.sample_rate, block.channels) != (
                hello.session, hello.stream, hello.sample_rate, hello.channels
            ):
                raise InvalidMessage(ErrorCode.INVALID_BLOCK,
                                     f"block {block.seq} is not of the stream this connection said HELLO for")
            if block.audio is None and quality is not Quality.NONE:
                raise InvalidMessage(ErrorCode.INVALID_BLOCK, f"block {block.seq} has no audio to send at {quality.name}")
        audio: np.ndarray
        if quality is Quality.NONE:  # no audio travels: blocks without any may go too
            audio, decoded = np.zeros((hello.channels, 0), np.float32), None
        else:
            parts = [b.audio for b in blocks if b.audio is not None]  # all of them: checked above
            audio = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            # digests cover the audio as the receiver will decode it, so degrade the batch as one
            decoded = degrade(audio, quality)
        entries = []
        offset = 0
        for block in blocks:
            digest = None
            if quality is not Quality.FLOAT32:
                part = None if decoded is None else np.ascontiguousarray(decoded[:, offset:offset + block.frames])
                digest = block_digest(
                    block.session, block.stream, block.seq, block.start_sample, block.frames,
                    block.sample_rate, block.channels, block.playhead, block.midi, block.params, part,
                )
            offset += block.frames
            entries.append(BlockEntry.of(block, digest))
        coding, payload = encode_audio(audio, quality, hello.sample_rate)
        message = BlockFrame(quality, coding, payload, tuple(entries), backfill, tuple(dropped))
        frame, body_size = encode_frame_sized(message, self.compression_level)
        if max_size is not None and max(body_size, len(frame)) > max_size:
            raise InvalidMessage(ErrorCode.FRAME_TOO_LARGE, f"{len(blocks)} blocks code to {body_size} bytes")
        self.send(message, frame)
        self.last_audio_payload = len(payload)
        return len(frame)

    def fail(self, code: ErrorCode, reason: str) -> None:
        """End the connection on an error: queue ERROR, go CLOSED, set the close code."""
        if self.state is State.CLOSED:
            return
        reason = _clip(reason)
        self._outgoing.append(encode_frame(Error(code, reason), 0))
        self.state = State.CLOSED
        self.close_code = code
        self.close_reason = reason

    def data_to_send(self) -> list[bytes]:
        frames, self._outgoing = self._outgoing, []
        return frames

    # --- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take one whole frame from the peer. Never raises."""
        if self.state is State.CLOSED:
            return
        try:
            message = decode_frame(data, self.max_frame_size, self.limits)
            self._receive(message)
        except ProtocolError as exc:
            self.fail(exc.code, exc.reason)

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _receive(self, message: Message) -> None:
        kind = _KIND[type(message)]
        after = next_state(self.state, kind, self.peer)
        if after is None:
            raise ProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"{kind} is not allowed from the {self.peer.value} "
                f"in state {self.state.value}"
            )
        if isinstance(message, Error):
            self.state = State.CLOSED
            self.close_code = message.code
            self.close_reason = message.reason
            self._events.append(message)
            return
        if isinstance(message, Hello):
            if message.version != PROTOCOL_VERSION:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"protocol version {message.version} is not supported (this end speaks {PROTOCOL_VERSION})",
                )
            self.hello = message
        event: Event = self._blocks(message) if isinstance(message, BlockFrame) else message
        self.state = after
        self._events.append(event)

    def _blocks(self, frame: BlockFrame) -> BlocksReceived:
        hello = self._require_hello()
        largest = self.limits.max_block_frames(hello.block_size)
        for entry in frame.entries:
            if entry.frames > largest:
                raise ProtocolError(ErrorCode.INVALID_BLOCK, f"block {entry.seq} holds {entry.frames} frames, over "
                                    f"{largest} (HELLO's block_size {hello.block_size} x {self.limits.block_factor})")
        if frame.quality is not Quality.NONE and frame.frames * hello.channels * 4 > self.limits.max_decoded_bytes:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"the frame's audio decodes to "
                                f"{frame.frames * hello.channels * 4} bytes, over {self.limits.max_decoded_bytes}")
        audio = decode_audio(frame.coding, frame.audio, hello.channels, frame.frames, frame.quality)
        blocks = []
        offset = 0
        for entry in frame.entries:
            part = None if audio is None else np.ascontiguousarray(audio[:, offset:offset + entry.frames])
            offset += entry.frames
            try:
                blocks.append(entry.to_block(hello, part))
            except DigestMismatch as exc:
                raise ProtocolError(ErrorCode.BAD_DIGEST, str(exc)) from None
            except CaptureError as exc:
                raise ProtocolError(ErrorCode.INVALID_BLOCK, str(exc)) from None
            except (ValueError, OverflowError, TypeError) as exc:  # a value our checks missed: still only this
                raise ProtocolError(ErrorCode.INVALID_BLOCK, f"block {entry.seq}: {exc}") from None
        return BlocksReceived(frame.quality, tuple(blocks), frame.backfill, frame.dropped)

    def _require_hello(self) -> Hello:
        if self.hello is None:
            raise InvalidState("no HELLO yet")
        return self.hello


def _clip(reason: str) -> str:
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."
