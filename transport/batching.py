"""A batch of blocks into BLOCK frames the receiver takes (docs/protocol.md, "Delivery").

One frame when it fits the receiver's frame limit, else halves, and halves of those, until each
fits. A frame's ``dropped`` ranges lie before its first seq, so a block that follows a hole
the audio thread left starts a frame of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sendlearn.capture import Block

from .codec import Quality
from .errors import ErrorCode, InvalidMessage
from .protocol import Protocol
from .retry import SenderError


@dataclass(frozen=True, slots=True)
class Queued:
    """One BLOCK frame queued on the protocol: its blocks, its size and its coded audio's."""

    blocks: list[Block]
    frame_bytes: int
    audio_bytes: int


def queue_batch(protocol: Protocol, batch: list[Block], quality: Quality, *, backfill: bool,
                holes: Mapping[int, tuple[int, int]], max_size: int) -> list[Queued]:
    """Queue ``batch`` on ``protocol`` as few frames of at most ``max_size`` bytes as it takes.
    ``holes`` maps a seq to the seqs dropped just before it. Raises SenderError when one block
    alone is over the limit."""
    hole = next((i for i, b in enumerate(batch) if i and b.seq in holes), None)
    if hole is not None:
        return (queue_batch(protocol, batch[:hole], quality, backfill=backfill, holes=holes, max_size=max_size)
                + queue_batch(protocol, batch[hole:], quality, backfill=backfill, holes=holes, max_size=max_size))
    dropped = [holes[batch[0].seq]] if batch[0].seq in holes else []
    try:
        size = protocol.send_blocks(batch, quality, backfill=backfill, dropped=dropped, max_size=max_size)
        return [Queued(batch, size, protocol.last_audio_payload)]
    except InvalidMessage as exc:
        if exc.code is not ErrorCode.FRAME_TOO_LARGE:
            raise
        if len(batch) == 1:
            raise SenderError(f"block {batch[0].seq} alone is over the receiver's frame limit "
                              f"({max_size} bytes)", ErrorCode.FRAME_TOO_LARGE) from None
    half = len(batch) // 2
    return (queue_batch(protocol, batch[:half], quality, backfill=backfill, holes=holes, max_size=max_size)
            + queue_batch(protocol, batch[half:], quality, backfill=backfill, holes=holes, max_size=max_size))
