"""The sans-I/O protocol both ends drive: bytes in, events out; messages in, bytes out.

Like python-websockets' ``Protocol``: the websocket library only moves frames.

    protocol.receive_data(frame)      # a whole websocket binary message from the peer
    protocol.events_received()        # Hello | Welcome | BlocksReceived | Ack | Bye | Error
    protocol.send(...)/send_blocks()  # queue outgoing frames
    protocol.data_to_send()           # frames to write to the websocket
    protocol.close_code, close_reason # set once the connection must end on an error

A receiver that decodes frames off its event loop does it with the pure functions of
transport/received.py and hands the result to ``receive_decoded``; the object itself is driven
from one thread (``guard``, when set, is called on every entry to check that).

``receive_data`` never raises: a bad frame becomes an ERROR to send, state CLOSED, and a
close code with a reason. Blocks come out as ``capture.Block`` — the one block type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sendlearn.capture import Block, block_digest

from .codec import Quality, degrade, encode_audio
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
from .received import Event, Received, blocks_of, decode_received
from .state import Role, State, next_state

MAX_CLOSE_REASON = 123  # bytes a websocket close frame's reason may hold


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
        self.guard: Callable[[], None] | None = None  # called on every entry (a debug check of the thread)

    # --- sending --------------------------------------------------------------------------

    def send(self, message: Message, frame: bytes | None = None) -> None:
        """Queue ``message`` (already encoded as ``frame``, if given); raises InvalidState
        if this end may not send it now."""
        if self.guard is not None:
            self.guard()
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
        if self.guard is not None:
            self.guard()
        if self.state is State.CLOSED:
            return
        reason = _clip(reason)
        self._outgoing.append(encode_frame(Error(code, reason), 0))
        self.state = State.CLOSED
        self.close_code = code
        self.close_reason = reason

    def data_to_send(self) -> list[bytes]:
        if self.guard is not None:
            self.guard()
        frames, self._outgoing = self._outgoing, []
        return frames

    # --- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take one whole frame from the peer. Never raises."""
        if self.state is State.CLOSED:
            return
        self.receive_decoded(decode_received(data, self.hello, self.limits))

    def receive_decoded(self, received: Received) -> None:
        """Take one frame decoded by ``transport.received`` (on any thread, against this
        connection's HELLO). Never raises."""
        if self.guard is not None:
            self.guard()
        if self.state is State.CLOSED:
            return
        try:
            self._receive(received)
        except ProtocolError as exc:
            self.fail(exc.code, exc.reason)

    def events_received(self) -> list[Event]:
        if self.guard is not None:
            self.guard()
        events, self._events = self._events, []
        return events

    def _receive(self, received: Received) -> None:
        message = received.message
        if message is None:
            assert received.error is not None
            raise received.error
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
        if received.error is not None:
            raise received.error
        event = received.event
        if event is None:  # a BLOCK parsed without its blocks: built now, against this connection's HELLO
            assert isinstance(message, BlockFrame)
            event = blocks_of(message, self._require_hello(), self.limits)
        self.state = after
        self._events.append(event)

    def _require_hello(self) -> Hello:
        if self.hello is None:
            raise InvalidState("no HELLO yet")
        return self.hello


def _clip(reason: str) -> str:
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."
