"""The bounded hand-off between a host's audio thread and whoever drains it.

One producer (the audio thread), one consumer (the sink's thread). The producer's
``offer`` never waits and takes no lock: ``deque.append``/``popleft`` are atomic under the
GIL, and only the producer grows the queue, so its length check cannot be raced past the
capacity. When full, the block is dropped and counted. Offline hosts are not real-time and
call ``put`` instead, which waits for room (back-pressure), so a render never loses a block.

Offline both sides block on one condition, never a sleep loop: ``put``, ``close`` and
``fail`` wake a waiting ``take``; ``take`` wakes a waiting ``put``. ``offer`` notifies no one
(that would take the condition's lock on the audio thread), so a consumer of a real-time
producer takes with a short timeout: the timeout is its polling period.

An offline consumer may instead be called on the producer's own thread (``deliver_to``):
no queue and no second thread. Two Python threads only take turns at the GIL, and each turn
the other takes costs a wait: the store, drained on a thread of its own, made a render's
capture about twice as slow as the same work on one thread (scripts/bench_offline.py).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .block import Block
from .errors import ConsumerFailed


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
        self._changed = threading.Condition(threading.Lock())  # offline waits only: ``offer`` never takes it
        self._consumer: Callable[[Block], None] | None = None

    def deliver_to(self, consumer: Callable[[Block], None]) -> None:
        """Offline only: from now on ``put`` calls ``consumer(block)`` on the producer's thread
        instead of queueing the block. The consumer raises ``ConsumerFailed`` when it cannot take
        it (and calls ``fail``, so every later ``put`` raises too)."""
        self._consumer = consumer

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
        """Queue ``block``, waiting for room (or hand it to the consumer: ``deliver_to``). For
        offline hosts only."""
        if (consumer := self._consumer) is not None:
            if self._failure is not None:
                raise ConsumerFailed(f"the consumer failed: {self._failure}")
            self._offered += 1
            consumer(block)
            return
        with self._changed:
            room = self._failure is not None or len(self._queue) < self.capacity  # usually: no wait at all
            if not room and not self._changed.wait_for(
                    lambda: self._failure is not None or len(self._queue) < self.capacity, timeout):
                raise TimeoutError(f"hand-off stayed full for {timeout} s")
            if self._failure is not None:
                raise ConsumerFailed(f"the consumer failed: {self._failure}")
            self._offered += 1
            self._queue.append(block)
            self._changed.notify_all()

    def take(self, timeout: float | None = 0.0) -> Block | None:
        """The oldest queued block, waiting up to ``timeout`` seconds (None: until a block comes
        or the producer closes); None if there is none."""
        try:
            block = self._queue.popleft()
        except IndexError:
            if timeout is not None and timeout <= 0:
                return None
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._closed, timeout)
                if not self._queue:
                    return None
                block = self._queue.popleft()
        if self.capacity - len(self._queue) <= 1:  # there was no room before this take: a put may be waiting
            with self._changed:
                self._changed.notify_all()
        return block

    def close(self) -> None:
        """The producer has finished: no block will follow."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def fail(self, reason: str) -> None:
        """The consumer has given up: a producer waiting in ``put`` raises instead of hanging."""
        with self._changed:
            self._failure = reason
            self._changed.notify_all()

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
