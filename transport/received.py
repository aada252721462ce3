"""One frame from the peer, decoded without the protocol object: a pure function of the frame,
the stream's HELLO and the limits. Safe on any thread; ``Protocol.receive_decoded`` applies the
result to the connection's state (docs/protocol.md, "Frame layout").

    received = parse(frame, limits)            # zstd, msgpack, the message's own checks
    received = with_blocks(received, hello, limits)   # a BLOCK's audio decoded and its digests checked
    protocol.receive_decoded(received)

``decode_received`` does both. The two steps are apart so that a receiver can read what a BLOCK
costs (``decoded_bytes``) before it pays for the audio codec and the digests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sendlearn.capture import Block, CaptureError, DigestMismatch

from .codec import Quality, decode_audio
from .decode import decode_frame
from .errors import ErrorCode, ProtocolError
from .limits import Limits
from .messages import Ack, BlockFrame, Bye, Error, Hello, Message, Welcome


@dataclass(frozen=True, slots=True)
class BlocksReceived:
    """A BLOCK message, decoded and verified into capture Blocks of the stream."""

    quality: Quality
    blocks: tuple[Block, ...]
    backfill: bool
    dropped: tuple[tuple[int, int], ...]


Event = Hello | Welcome | BlocksReceived | Ack | Bye | Error


@dataclass(frozen=True, slots=True)
class Received:
    """What one frame says, as far as it was decoded, or why it is refused.

    ``message`` is None when the frame itself is bad (``error`` says why). A BLOCK whose blocks
    were built has ``event`` set; one refused while they were built keeps its ``message`` (so the
    protocol still checks first whether a BLOCK was allowed at all) and the ``error``."""

    message: Message | None
    event: Event | None = None
    error: ProtocolError | None = None

    @property
    def needs_blocks(self) -> bool:
        return isinstance(self.message, BlockFrame) and self.event is None and self.error is None


def parse(data: bytes, limits: Limits) -> Received:
    """The frame to its message; a BLOCK's audio is not decoded yet. Never raises."""
    try:
        message = decode_frame(data, limits.max_frame_size, limits)
    except ProtocolError as exc:
        return Received(None, None, exc)
    if isinstance(message, BlockFrame):
        return Received(message)
    return Received(message, message)


def decoded_bytes(frame: BlockFrame, channels: int) -> int:
    """The float32 audio a BLOCK decodes to: what it costs, whatever its coding."""
    return 0 if frame.quality is Quality.NONE else frame.frames * channels * 4


def with_blocks(received: Received, hello: Hello | None, limits: Limits) -> Received:
    """A parsed BLOCK with its blocks built and verified against ``hello``. Without a HELLO the
    frame is left as it is: the protocol refuses a BLOCK before HELLO by its state. Never raises."""
    if not received.needs_blocks or hello is None:
        return received
    assert isinstance(received.message, BlockFrame)
    try:
        return Received(received.message, blocks_of(received.message, hello, limits))
    except ProtocolError as exc:
        return Received(received.message, None, exc)


def decode_received(data: bytes, hello: Hello | None, limits: Limits) -> Received:
    return with_blocks(parse(data, limits), hello, limits)


def blocks_of(frame: BlockFrame, hello: Hello, limits: Limits) -> BlocksReceived:
    """A BLOCK's entries and audio to capture Blocks, each checked against its digest."""
    largest = limits.max_block_frames(hello.block_size)
    for entry in frame.entries:
        if entry.frames > largest:
            raise ProtocolError(ErrorCode.INVALID_BLOCK, f"block {entry.seq} holds {entry.frames} frames, over "
                                f"{largest} (HELLO's block_size {hello.block_size} x {limits.block_factor})")
    if decoded_bytes(frame, hello.channels) > limits.max_decoded_bytes:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"the frame's audio decodes to "
                            f"{decoded_bytes(frame, hello.channels)} bytes, over {limits.max_decoded_bytes}")
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
