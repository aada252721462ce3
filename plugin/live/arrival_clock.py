"""MIDI arrivals placed on a PortAudio stream's samples, each with an honest error bound.

Two clocks meet here: the time a MIDI message arrived (``time.perf_counter_ns``, CLOCK_MONOTONIC
on Linux, shared by every process: plugin/live/midi_in.py) and the stream's samples.

The bridge between them is each block's callback: it began at ``entry_ns`` (monotonic, taken
by the PortAudio process), and PortAudio said its first frame was captured ``lag_ns`` before
"now" on the device's clock (``currentTime - inputBufferAdcTime``; 0 over its JACK host API).
So the block says "stream sample 0 was at the ADC at ``entry_ns - lag_ns - sample / rate``".
A callback runs late, never early (waiting for its thread, for the GIL; a block cannot be
delivered before its frames exist): that time is the truth plus a lateness >= 0, and the
*earliest* is the estimate; each block's ``lateness`` is how far it lay above it.
Earliest of what depends on whether the device's timestamps can be trusted (adc_clock.py):
- trusted (they say when each block was captured, buffering included): the last ``window``
  blocks, about a second, so a crystal's drift stays under a frame;
- not trusted (PortAudio's JACK host API, whose stamps are "now", lag 0): every block since
  the start. Measured here: after a stall PortAudio's JACK host API went on delivering each
  cycle's audio 2 to 3 cycles late (5 to 8 ms after the player's own callback for the same
  frames, for good), with its timestamps saying nothing of it. A window would adopt that
  delay and place every message early by it; the earliest block since the start does not,
  and the bound's lateness term (below) covers a clock that really moved. The cost: a drift
  between the device's clock and the monotonic one widens the bounds as the capture goes on.

The bound of an event (``Placer.place``), in frames, is the sum of what can be wrong:
- ``block``: the transport delivering MIDI is quantised to its periods, in either direction
  (JACK MIDI read by rtmidi's JACK client loses the in-cycle offset: up to a period early;
  a sender outside the graph is delivered at the next cycle: up to a period late);
- the lateness of the blocks around the arrival (the last ``near`` blocks up to the one after
  it): a late cycle delays a JACK-delivered message and the audio callback together, so the
  message lands late by the cycle's lateness (measured here under two CPU hogs: milliseconds);
- the arrival's own uncertainty (midi_in.py: how well rtmidi's timestamps are anchored);
- ``margin`` (block/16) for the jitter of the clocks themselves;
- ``moved``: frames an event was moved forward because its block had already gone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from sendlearn.capture import CaptureError, MidiEvent

RECENT = 64  # blocks ``sample_at_local`` looks back over


class StreamClock:
    """Monotonic ns -> stream sample, from the blocks as they are captured (in order)."""

    def __init__(self, rate: int, window: int | None, near: int = 8) -> None:
        """``window``: blocks the estimate looks back over (None: all of them)."""
        self.rate, self.window = rate, window
        self._minima: deque[tuple[int, float]] = deque()  # (block index, zero_ns), rising
        self._recent: deque[float] = deque(maxlen=near)  # the latest blocks' lateness, ns
        self._index = 0
        self.zero_ns: float | None = None  # the estimate: when stream sample 0 was at the ADC
        self._next: float | None = None  # the peeked next block's zero (see ``peek``)
        self._latest: deque[tuple[float, int]] = deque(maxlen=RECENT)  # (entry - lag, sample): ``sample_at_local``

    def block(self, sample: int, entry_ns: int, lag_ns: int) -> None:
        """The block whose first frame is stream sample ``sample``."""
        zero = entry_ns - lag_ns - sample * 1e9 / self.rate
        minima, index = self._minima, self._index
        while minima and minima[-1][1] >= zero:
            minima.pop()
        minima.append((index, zero))
        if self.window is not None and minima[0][0] <= index - self.window:
            minima.popleft()
        self._index = index + 1
        self.zero_ns = minima[0][1]
        self._recent.append(zero)
        self._latest.append((entry_ns - lag_ns, sample))

    def ns_at(self, sample: float) -> float:
        """When stream sample ``sample`` was at the ADC, by the estimate (monotonic ns)."""
        assert self.zero_ns is not None, "no block yet"
        return self.zero_ns + sample * 1e9 / self.rate

    def sample_at(self, ns: float) -> float:
        """The stream sample at the ADC at monotonic time ``ns`` (a fraction)."""
        assert self.zero_ns is not None, "no block yet"
        return (ns - self.zero_ns) * self.rate / 1e9

    def sample_at_local(self, ns: float) -> float:
        """The stream sample at ``ns`` by the last block whose callback began by then (or the
        oldest one kept): follows the cycles as they ran, stalls included, so the spacing of
        messages delivered by the same cycles (MIDI clock) keeps the stream's own rate. For a
        rate, not a bound: it is as late as that callback was."""
        base, sample = self._latest[0]
        for when, at in reversed(self._latest):
            if when <= ns:
                base, sample = when, at
                break
        return sample + (ns - base) * self.rate / 1e9

    def delivered_by_then(self, ns: float, end: int) -> bool:
        """Whether monotonic time ``ns`` came before the latest block (ending at stream
        sample ``end``) was delivered, by that block's own callback time."""
        return ns <= self._recent[-1] + end * 1e9 / self.rate

    def peek(self, sample: int, entry_ns: int, lag_ns: int) -> None:
        """The block after the latest (not yet captured): its lateness counts in the next
        ``lateness_frames``, as a late cycle may hold a message delivered just before it."""
        self._next = entry_ns - lag_ns - sample * 1e9 / self.rate

    def lateness_frames(self) -> float:
        """The most the latest blocks' callbacks (and a peeked next one) lay above the
        estimate, in frames."""
        assert self.zero_ns is not None, "no block yet"
        latest = max(max(self._recent), self._next if self._next is not None else -math.inf)
        self._next = None
        return max(0.0, latest - self.zero_ns) * self.rate / 1e9


class Arrival(Protocol):
    """One message as midi_in.py stamped it: ``ns()`` its estimated arrival (monotonic), and
    ``uncertainty_ns()`` how far that may lie after the truth. Both are read when the message
    is placed: later messages of the same port may have anchored its clock better by then."""

    data: bytes

    def ns(self) -> float: ...
    def uncertainty_ns(self) -> float: ...


class Placer:
    """Turns arrivals into the events of the block they fall in, each with its bound."""

    def __init__(self, clock: StreamClock, block: int) -> None:
        self.clock, self.block, self.margin = clock, block, max(1, block // 16)
        self.waiting: list[Arrival] = []
        self.placed = 0
        self.moved = 0  # arrived after their block had gone: placed at a later block's offset 0
        self.rejected = 0  # not one well-formed MIDI message
        self.bound_max = 0

    def horizon_ns(self, end_sample: int) -> float:
        """The monotonic time before which every arrival of a block ending at ``end_sample``
        must have been collected, so that none of them misses its block."""
        assert self.clock.zero_ns is not None
        return self.clock.zero_ns + end_sample * 1e9 / self.clock.rate

    def place(self, start: int, frames: int, arrivals: Sequence[Arrival], last: bool = False) -> list[MidiEvent]:
        """The events of the block of ``frames`` frames at stream sample ``start``: those
        waiting (and ``arrivals``, newly collected) whose estimated sample is before its end.
        The ``last`` block of a capture also takes those that arrived before it was delivered:
        they lie within the audio, so one estimated past its end (a late estimate) is moved
        back to its last frame, and its bound grows by the frames moved. Later ones are left
        over (``waiting``)."""
        clock, rate = self.clock, self.clock.rate
        self.waiting += list(arrivals)
        now: list[tuple[float, Arrival]] = []
        later: list[tuple[float, Arrival]] = []
        for arrival in self.waiting:
            at = clock.sample_at(arrival.ns())
            if at < start + frames or (last and clock.delivered_by_then(arrival.ns(), start + frames)):
                now.append((at, arrival))
            else:
                later.append((at, arrival))
        self.waiting = [arrival for _, arrival in later]
        now.sort(key=lambda pair: pair[0])
        late = clock.lateness_frames()
        events = []
        for at, arrival in now:
            offset = min(max(0, math.floor(at) - start), frames - 1)
            moved = abs(math.floor(at) - start - offset)
            self.moved += moved > 0
            bound = math.ceil(self.block + late + arrival.uncertainty_ns() * rate / 1e9) + self.margin + moved
            try:
                events.append(MidiEvent(offset, arrival.data, timing_error=bound))
            except CaptureError:
                self.rejected += 1  # running status, a truncated sysex: not one whole message
                continue
            self.placed += 1
            self.bound_max = max(self.bound_max, bound)
        return events
