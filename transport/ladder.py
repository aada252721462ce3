"""The quality ladder: which audio level to send at, from what the sender measures.

Rungs, best first: FLOAT32 → PCM24 → PCM16 → REDUCED → NONE. The measure is the backlog:
seconds of audio taken from the producer but not yet acknowledged by the receiver. A backlog
that grows means the link delivers less than the stream needs.

- Step down one rung when the backlog is over ``high`` seconds, at most once per ``settle``
  seconds (the previous step needs time to show).
- Step up one rung when the backlog has stayed under ``low`` seconds for ``hold`` seconds.
The gap between ``low`` and ``high`` and the hold time keep it from flapping.
"""

from __future__ import annotations

from .codec import Quality

RUNGS = (Quality.FLOAT32, Quality.PCM24, Quality.PCM16, Quality.REDUCED, Quality.NONE)


class QualityLadder:
    def __init__(self, *, ceiling: Quality = Quality.FLOAT32, floor: Quality = Quality.NONE, high: float = 1.5,
                 low: float = 0.4, hold: float = 2.0, settle: float = 0.75) -> None:
        self.rungs = RUNGS[RUNGS.index(ceiling): RUNGS.index(floor) + 1]
        self.high, self.low, self.hold, self.settle = high, low, hold, settle
        self._index = 0
        self._changed_at = float("-inf")
        self._low_since: float | None = None
        self.steps: list[tuple[float, Quality]] = []  # (time, level) each time it changed

    @property
    def level(self) -> Quality:
        return self.rungs[self._index]

    def update(self, backlog_seconds: float, now: float) -> Quality:
        if backlog_seconds > self.high:
            self._low_since = None
            if self._index < len(self.rungs) - 1 and now - self._changed_at >= self.settle:
                self._move(+1, now)
        elif backlog_seconds < self.low:
            if self._low_since is None:
                self._low_since = now
            elif self._index > 0 and now - self._low_since >= self.hold and now - self._changed_at >= self.hold:
                self._move(-1, now)
                self._low_since = now
        else:
            self._low_since = None
        return self.level

    def _move(self, direction: int, now: float) -> None:
        self._index += direction
        self._changed_at = now
        self.steps.append((now, self.level))
