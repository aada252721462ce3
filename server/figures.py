"""What one connection's stream has done, for /status and /metrics: blocks, bytes, MIDI events,
gaps, quality and ACK lag. Counted per frame in plain integers and sent to Prometheus once per
commit (in ``--workers`` mode each metric update writes to a shared file)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sendlearn.server import metrics
from sendlearn.transport import BlocksReceived


class StreamFigures:
    def __init__(self, peer: str) -> None:
        self.started = time.monotonic()
        self.peer = peer
        self.host = ""
        self.blocks = self.bytes = self.midi_events = self.gap_blocks = 0
        self.quality: int | None = None
        self.ack_lag: float | None = None
        self._arrived: deque[tuple[int, float]] = deque()  # (highest seq of a frame, when it arrived)
        self._flushed: tuple[int, int, int, int] = (0, 0, 0, 0)  # blocks, bytes, events, gaps sent to metrics
        self._flushed_quality: int | None = None

    def count(self, received: BlocksReceived, size: int) -> None:
        self.blocks += len(received.blocks)
        self.bytes += size
        self.midi_events += sum(len(block.midi) for block in received.blocks)
        self.gap_blocks += sum(last - first + 1 for first, last in received.dropped)
        self.quality = int(received.quality)
        self._arrived.append((max(block.seq for block in received.blocks), time.monotonic()))

    def acknowledged(self, through: int) -> None:
        """ACK lag: from the arrival of the last frame the ACK covers to now."""
        arrived = None
        while self._arrived and self._arrived[0][0] <= through:
            arrived = self._arrived.popleft()[1]
        if arrived is not None:
            self.ack_lag = time.monotonic() - arrived
            metrics.ACK_LAG.observe(self.ack_lag)

    def flush(self, key: tuple[str, str] | None) -> None:
        """What was counted since the last flush, to Prometheus."""
        counted = (self.blocks, self.bytes, self.midi_events, self.gap_blocks)
        for metric, now, before in zip((metrics.BLOCKS, metrics.BYTES, metrics.EVENTS, metrics.GAPS), counted,
                                       self._flushed, strict=True):
            if now > before:
                metric.inc(now - before)
        self._flushed = counted
        if self.quality is not None and self.quality != self._flushed_quality and key is not None:
            metrics.QUALITY.set(key, self.quality)
            self._flushed_quality = self.quality

    def status(self, key: tuple[str, str], acked: int) -> dict[str, Any]:
        """One entry of /status's ``streams``."""
        seconds = max(time.monotonic() - self.started, 1e-9)
        return {
            "session": key[0], "stream": key[1], "host": self.host, "peer": self.peer,
            "connected_seconds": round(seconds, 3), "blocks": self.blocks, "bytes": self.bytes,
            "mbps": round(self.bytes * 8 / seconds / 1e6, 3), "midi_events": self.midi_events,
            "quality": self.quality, "acked_through": acked, "ack_lag_seconds": self.ack_lag,
            "gap_blocks": self.gap_blocks,
        }
