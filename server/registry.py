"""Each stream's lifecycle in one receiver process, as a table (in the style of transport/state.py).

Rules:
- A stream this process does not hold is FREE: no entry here, its lock (store/locks.py) not held.
- An accepted HELLO makes it CONNECTED, owned by that connection. Finishing a stream nobody
  streams (recovery of one left with a BYE, expiry of an old work folder) makes it FINALISING.
- A connection cut without BYE leaves it LINGERING, its writer open for the sender to come back
  (LINGERING -> CONNECTED); the linger running out, or the receiver stopping, makes it FINALISING.
- A BYE, or a cut stream that may not linger, makes it FINALISING; that ends COMPLETE (files
  written) or FAILED (the work folder is kept for a resume). A connection whose disk failed,
  or whose token was revoked, ends FAILED; one that stored nothing of its own (refused, no
  block, complete already) frees it.
- COMPLETE, FAILED and FREE end the entry and release the lock: a later HELLO finds the stream free,
  here or in another worker process.
Every move goes through ``StreamRegistry.move``, which refuses one that is not in the table.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from sendlearn.errors import SendLearnError
from sendlearn.store.completed import StreamTarget
from sendlearn.store.errors import StreamBusy
from sendlearn.store.locks import StreamLocks

Key = tuple[str, str]  # (session, stream)


class StreamState(Enum):
    FREE = "free"
    CONNECTED = "connected"
    LINGERING = "lingering"
    FINALISING = "finalising"
    COMPLETE = "complete"
    FAILED = "failed"


S = StreamState

TRANSITIONS: frozenset[tuple[StreamState, StreamState]] = frozenset({
    (S.FREE, S.CONNECTED),  # a HELLO accepted
    (S.FREE, S.FINALISING),  # recovery or expiry finishes a stream nobody streams
    (S.CONNECTED, S.LINGERING),  # cut without BYE: its sender may come back
    (S.CONNECTED, S.FINALISING),  # BYE, or cut while the receiver stops (or lingers 0 s)
    (S.CONNECTED, S.FAILED),  # the disk refused, or its token was revoked: the work folder stays for a resume
    (S.CONNECTED, S.FREE),  # nothing of its own stored: refused, no block, or complete already
    (S.LINGERING, S.CONNECTED),  # its sender came back
    (S.LINGERING, S.FINALISING),  # the linger ran out, or the receiver stops
    (S.FINALISING, S.COMPLETE),
    (S.FINALISING, S.FAILED),
})

ENDS = frozenset({S.FREE, S.COMPLETE, S.FAILED})  # the entry goes, the lock is released


class IllegalTransition(SendLearnError):
    """A move the table does not allow: a bug in the receiver, never the peer's doing."""


@dataclass(slots=True)
class Held:
    """A stream this process holds."""

    state: StreamState
    owner: object | None = None  # the connection that has it CONNECTED
    writer: StreamTarget | None = None  # LINGERING: the open writer its sender resumes
    timer: asyncio.Task[None] | None = None  # LINGERING: the task that finalises it when the linger runs out


class StreamRegistry:
    """The streams this process holds, by (session, stream). Used from the event loop only."""

    def __init__(self, locks: StreamLocks) -> None:
        self.locks = locks
        self._held: dict[Key, Held] = {}
        self.ended: Counter[StreamState] = Counter()  # how often each end was reached, for /status

    def state(self, key: Key) -> StreamState:
        held = self._held.get(key)
        return held.state if held is not None else S.FREE

    def owned_by(self, key: Key, owner: object) -> bool:
        held = self._held.get(key)
        return held is not None and held.state is S.CONNECTED and held.owner is owner

    def lingering_writer(self, key: Key) -> StreamTarget | None:
        held = self._held.get(key)
        return held.writer if held is not None and held.state is S.LINGERING else None

    def keys(self) -> set[Key]:
        return set(self._held)

    def count(self, state: StreamState) -> int:
        return sum(1 for held in self._held.values() if held.state is state)

    def move(self, key: Key, to: StreamState, *, owner: object | None = None, writer: StreamTarget | None = None,
             timer: asyncio.Task[None] | None = None) -> Held | None:
        """Move ``key`` to ``to``; returns what it held before (None when FREE). Raises
        IllegalTransition for a move not in the table, and StreamBusy when a stream leaving FREE
        is held by another process (its lock is taken)."""
        before = self._held.get(key)
        state = before.state if before is not None else S.FREE
        if (state, to) not in TRANSITIONS:
            raise IllegalTransition(f"stream {key[0]}/{key[1]}: {state.value} -> {to.value} is not allowed")
        if state is S.FREE and not self.locks.acquire(key):
            raise StreamBusy(f"stream {key[0]}/{key[1]} is held by another receiver process")
        if before is not None and before.timer is not None and before.timer is not _current_task():
            before.timer.cancel()  # leaving LINGERING before its linger ran out
        if to in ENDS:
            self._held.pop(key, None)
            self.locks.release(key)
            self.ended[to] += 1
        else:
            self._held[key] = Held(to, owner, writer, timer)
        return before


def _current_task() -> asyncio.Task[None] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
