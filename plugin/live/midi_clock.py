"""The playhead from MIDI clock (``--clock midi:PORT``): clocks, Start/Stop/Continue and Song
Position Pointer, as a DAW sends them to a MIDI port, placed on the stream's samples by
arrival_clock.py like any other message.

- Tempo: 24 clocks a quarter note. ``bpm`` is the Theil-Sen slope (the median of the slopes
  between every pair) of the last ``SMOOTHING`` clocks' samples (48: two quarter notes), so the
  jitter of a periodic MIDI transport (a JACK period either way) averages out and a clock held
  back by a stalled cycle does not pull the tempo (a least-squares fit did: 0.13 bpm off at
  97.3 under two CPU hogs); before ``MIN_TICKS`` clocks it is ``--bpm``. A pause of the clock
  longer than ``GAP_TICKS`` intervals starts the fit again (a new tempo may follow).
- Position: Start sets it to 0, Song Position Pointer to its sixteenths; the first clock after
  Start or Continue is that position, each further clock a 24th of a quarter note on. Between
  clocks it moves at ``bpm``, never past the next clock's.
- Playing: from Start or Continue until Stop. The meter is ``--meter``'s (MIDI clock has none).
- Jitter: each clock's distance from the fitted line, in frames (``figures``): what the
  transport and our placement did to the sender's clock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import mido
import numpy as np

from sendlearn.capture import Playhead

SMOOTHING = 48
MIN_TICKS = 6
GAP_TICKS = 8
TICKS_PER_QUARTER = 24
_PAIRS = {n: np.triu_indices(n, 1) for n in range(MIN_TICKS, SMOOTHING + 1)}  # every (i < j) of n clocks


class MidiClock:
    """Feed it the clock port's messages in order (``feed``); ask for the playhead at a block."""

    def __init__(self, rate: int, bpm: float, meter: tuple[int, int], port: str) -> None:
        self.rate, self.bpm, self.meter, self.port = rate, bpm, meter, port
        self.playing = False
        self._ticks: deque[float] = deque(maxlen=SMOOTHING)
        self._ppq = 0.0  # the position at the last clock (or Start, Continue, SPP)
        self._anchor: float | None = None  # ... and its sample, once a clock has moved it
        self._armed = False  # Start or Continue came: the next clock is the position itself
        self.clocks = 0
        self.ignored = 0  # not clock, transport or SPP messages (a clock port may carry others)
        self._residuals: list[float] = []

    def feed(self, sample: float, data: bytes) -> None:
        try:
            message = mido.Message.from_bytes(list(data))
        except ValueError:
            self.ignored += 1
            return
        kind = message.type
        if kind == "clock":
            self._clock(sample)
        elif kind == "start":
            self._ppq, self.playing, self._armed, self._anchor = 0.0, True, True, None
        elif kind == "continue":
            self._ppq, self.playing, self._armed, self._anchor = self.ppq_at(sample), True, True, None
        elif kind == "stop":
            self._ppq, self.playing, self._anchor = self.ppq_at(sample), False, None
        elif kind == "songpos":
            self._ppq, self._anchor = message.pos / 4.0, None  # sixteenths: 4 a quarter note
        else:
            self.ignored += 1

    def _clock(self, sample: float) -> None:
        self.clocks += 1
        ticks = self._ticks
        if ticks and sample - ticks[-1] > GAP_TICKS * self._interval():
            ticks.clear()
        ticks.append(sample)
        if len(ticks) >= MIN_TICKS:
            self._fit()
        if self.playing:
            if self._armed:
                self._armed = False
            elif self._anchor is not None:
                self._ppq += 1.0 / TICKS_PER_QUARTER
            self._anchor = sample

    def _interval(self) -> float:
        """Frames between clocks at the current tempo."""
        return self.rate * 60.0 / (self.bpm * TICKS_PER_QUARTER)

    def _fit(self) -> None:
        samples = np.fromiter(self._ticks, float)
        first, second = _PAIRS[len(samples)]
        slope = float(np.median((samples[second] - samples[first]) / (second - first)))
        if slope > 0:
            self.bpm = self.rate * 60.0 / (slope * TICKS_PER_QUARTER)
        if len(samples) == SMOOTHING:
            index = np.arange(len(samples), dtype=float)
            intercept = float(np.median(samples - slope * index))
            self._residuals.append(float(samples[-1] - (slope * index[-1] + intercept)))

    def ppq_at(self, sample: float) -> float:
        if not self.playing or self._anchor is None:
            return self._ppq
        moved = (sample - self._anchor) * self.bpm / (60.0 * self.rate)
        return self._ppq + min(max(moved, 0.0), 1.0 / TICKS_PER_QUARTER)

    def playhead(self, sample: int) -> Playhead:
        ppq = self.ppq_at(sample)
        num, den = self.meter
        per_bar = num * 4.0 / den
        bar = math.floor(ppq / per_bar)
        return Playhead(seconds=ppq * 60.0 / self.bpm, ppq=ppq, bpm=self.bpm, ts_num=num, ts_den=den,
                        bar=bar + 1, beat=(ppq - bar * per_bar) * den / 4.0 + 1.0, playing=self.playing)

    def figures(self) -> dict[str, Any]:
        """The playhead's source and the clock's measured jitter (stream.json's ``sender``)."""
        residuals = np.abs(np.array(self._residuals)) if self._residuals else np.zeros(0)
        return {"playhead_source": f"midi clock ({self.port})", "midi_clocks": self.clocks,
                "midi_clock_bpm_smoothing": f"Theil-Sen over the last {SMOOTHING} clocks",
                "midi_clock_jitter_p50_frames": round(float(np.percentile(residuals, 50)), 1) if len(residuals) else None,
                "midi_clock_jitter_max_frames": round(float(residuals.max()), 1) if len(residuals) else None,
                "midi_clock_ignored": self.ignored}
