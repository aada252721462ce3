"""The bounded hand-off between a host's audio thread and whoever drains it.

One producer (the audio thread), one consumer (the sender's thread). The producer's
``offer`` never waits and takes no lock: ``deque.append``/``popleft`` are atomic under the
GIL, and only the producer grows the queue, so its length check cannot be raced past the
capacity. When full, the block is dropped and counted. Offline hosts are not real-time and
call ``put`` instead, which waits for room (back-pressure), so a render never loses a block.
"""

from __future__ import annotations

import time
from collections import deque

from .block import Block
from .errors import ConsumerFailed

_POLL_SECONDS = 0.0005


class HandOff:
    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._queue: deque[Block] = deque()
        self._dropped = 0
        self._offered = 0
        self._closed = False
        self._failure: str | None = None

    def offer(self, block: Block) -> bool:
        """Queue ``block`` if there is room; otherwise count it as dropped. Never waits."""
        self._offered += 1
        if len(self._queue) >= self.capacity:
            self._dropped += 1
            return False
        self._queue.append(block)
        return True

    def count_dropped(self, blocks: int) -> None:
        """Blocks the producer lost before it could offer them (counted like refused ones)."""
        self._offered += blocks
        self._dropped += blocks

    def put(self, block: Block, timeout: float | None = None) -> None:
        """Queue ``block``, waiting for room. For offline hosts only."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._failure is not None or len(self._queue) >= self.capacity:
            if self._failure is not None:
                raise ConsumerFailed(f"the consumer failed: {self._failure}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"hand-off stayed full for {timeout} s")
            time.sleep(_POLL_SECONDS)
        self._offered += 1
        self._queue.append(block)

    def take(self, timeout: float = 0.0) -> Block | None:
        """The oldest queued block, waiting up to ``timeout`` seconds; None if there is none."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._queue.popleft()
            except IndexError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(_POLL_SECONDS)

    def close(self) -> None:
        """The producer has finished: no block will follow."""
        self._closed = True

    def fail(self, reason: str) -> None:
        """The consumer has given up: a producer waiting in ``put`` raises instead of hanging."""
        self._failure = reason

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        """Closed and drained: the consumer has seen everything."""
        return self._closed and not self._queue

    @property
    def dropped(self) -> int:
        """Blocks refused because the hand-off was full."""
        return self._dropped

    @property
    def offered(self) -> int:
        return self._offered

    def __len__(self) -> int:
        return len(self._queue)
