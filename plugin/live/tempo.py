"""The JACK transport as a ``Playhead``, with tempo always in quarter notes per minute.

JACK's position carries bar, beat, tick, meter and ``beats_per_minute``. What that tempo
counts depends on who publishes it: JACK's own definition (and our ``--timebase-master``)
counts beats of the meter's denominator (137 in 7/8 is 68.5 quarter notes a minute), while
Ardour 7 publishes quarter notes whatever the meter (100 with ``beat_type`` 8 in 6/8). So
the field's unit is not trusted: it is read off the master's own motion, how many of its
beats pass per second of transport frames, compared with the two readings of the field.
The two differ by a factor ``den / 4`` (2 in 6/8 or 7/8), so one period of motion decides
it even with ticks rounded. In 4/4 (and whenever there is no motion yet to measure) the two
agree or cannot be told apart, and JACK's definition is taken.

This module runs in the capturing process, on raw fields the JACK callback copied into the
ring (plugin/live/ring.py); it imports no JACK library.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from sendlearn.capture import CaptureError, Playhead

ROLLING = 1  # jack_transport_state_t JackTransportRolling
POSITION_BBT = 0x10  # jack_position_bits_t JackPositionBBT
TICKS_PER_BEAT = 1920.0  # what we publish when we are the timebase master
HOLD_SECONDS = 5.0  # a master silent for longer has released the timebase (or the machine stalled)


class Meter(NamedTuple):
    """A time signature: ``num`` beats of 1/``den`` notes per bar."""

    num: int
    den: int


def parse_meter(text: str) -> Meter:
    num, den = (int(part) for part in text.split("/"))
    return Meter(num, den)


def manual_bbt(frame: int, rate: int, bpm: float, meter: Meter) -> tuple[int, int, float]:
    """(bar, beat, tick) at ``frame`` for a constant tempo ``bpm`` (quarter notes per minute)
    and meter from frame 0, JACK style: bar and beat 1-based, beats of 1/den notes."""
    beats = frame / rate * bpm * meter.den / 4.0 / 60.0
    whole = int(beats)
    bar, beat = divmod(whole, meter.num)
    return bar + 1, beat + 1, (beats - whole) * TICKS_PER_BEAT


def jack_beats_per_minute(bpm: float, meter: Meter) -> float:
    """What JACK's ``beats_per_minute`` says for ``bpm`` quarter notes: beats of 1/den."""
    return bpm * meter.den / 4.0


class Transport(NamedTuple):
    """JACK's transport state and position fields, as the callback copied them."""

    state: int
    valid: int  # position bits
    frame: int
    bar: int
    beat: int
    tick: int
    beats_per_bar: float
    beat_type: float
    ticks_per_beat: float
    bpm: float  # beats_per_minute, in whatever unit the master meant


class PlayheadReader:
    """Turns the transport fields of one period into a ``Playhead``. With a timebase master publishing BBT, bar, beat and meter are the
    master's and the tempo is converted to quarter notes; without one, ``bpm`` (quarter
    notes) and ``meter`` hold from transport frame 0. ``ppq`` counts quarter notes from bar 1
    assuming the meter has not changed since (JACK gives no absolute beat count).

    A master whose timebase callback ran late leaves a period without BBT. That period is the
    master's last position carried on at its tempo and meter, to JACK's tick resolution
    (``held`` counts them), for up to ``HOLD_SECONDS`` of transport time after it: a song in 7/8
    does not turn into --bpm in 4/4 for one period. Beyond that the master is gone."""

    def __init__(self, rate: int, bpm: float, meter: Meter) -> None:
        self.rate = rate
        self.bpm = float(bpm)
        self.meter = meter
        self.quarter_note_master: bool | None = None  # None: not measured yet
        self.invalid = 0  # positions from a master that did not make a valid Playhead
        self.held = 0  # periods a late master left without BBT, carried on from its last position
        self._last: Transport | None = None  # the master's last valid position

    def read(self, record: Transport, following: Transport | None = None) -> Playhead:
        playing = record.state == ROLLING
        if record.valid & POSITION_BBT:
            if following is not None:
                self._measure(record, following)
            playhead = self._from_bbt(record, playing)
            if playhead is not None:
                self._last = record
                return playhead
        held = self._carried_on(record)
        if held is not None:
            playhead = self._from_bbt(held, playing)
            if playhead is not None:
                self.held += 1
                return playhead
        return self._manual(record.frame, playing)

    def _carried_on(self, record: Transport) -> Transport | None:
        """The master's last position moved on to ``record.frame`` at its tempo, or None."""
        last = self._last
        if last is None or not 0 <= record.frame - last.frame <= HOLD_SECONDS * self.rate:
            return None  # no master yet, a locate back, or a master gone
        per_minute = last.bpm * (last.beat_type / 4.0 if self.quarter_note_master else 1.0)  # its beats of 1/den
        beats = _beats(last) + (record.frame - last.frame) / self.rate * per_minute / 60.0
        num = last.beats_per_bar
        bar = int(beats // num)
        within = beats - bar * num
        beat = int(within)
        tick = int((within - beat) * last.ticks_per_beat)  # JACK's tick field is whole
        return last._replace(frame=record.frame, state=record.state, bar=bar + 1, beat=beat + 1, tick=tick)

    def _measure(self, first: Transport, second: Transport) -> None:
        """Decide the master's tempo unit from two consecutive rolling periods."""
        if not (first.state == second.state == ROLLING and second.valid & POSITION_BBT):
            return
        frames = second.frame - first.frame
        den, bpm = first.beat_type, first.bpm
        if not 0 < frames <= self.rate or den == 4.0 or second.beat_type != den or bpm <= 0:
            return  # a locate, a meter change, or nothing to tell apart
        try:
            moved = _beats(second) - _beats(first)
        except ZeroDivisionError:
            return
        if moved <= 0:
            return
        per_minute = moved / frames * self.rate * 60.0  # the master's own beats (1/den) per minute
        as_jack = abs(math.log(per_minute / bpm))
        as_quarters = abs(math.log(per_minute / (bpm * den / 4.0)))
        self.quarter_note_master = as_quarters < as_jack

    def _from_bbt(self, record: Transport, playing: bool) -> Playhead | None:
        try:
            num, den = int(round(record.beats_per_bar)), int(round(record.beat_type))
            bpm = record.bpm
            if not self.quarter_note_master:
                bpm = bpm * 4.0 / den  # JACK's definition: beats of 1/den
            beat = record.beat + record.tick / record.ticks_per_beat
            return Playhead(
                seconds=record.frame / self.rate, ppq=_beats(record) * 4.0 / den, bpm=bpm,
                ts_num=num, ts_den=den, bar=record.bar, beat=float(beat), playing=playing,
            )
        except (CaptureError, ZeroDivisionError, ValueError, OverflowError):
            self.invalid += 1  # a master publishing nonsense must not stop the capture
            return None

    def _manual(self, frame: int, playing: bool) -> Playhead:
        bar, beat, tick = manual_bbt(frame, self.rate, self.bpm, self.meter)
        beats = (bar - 1) * self.meter.num + (beat - 1) + tick / TICKS_PER_BEAT
        return Playhead(
            seconds=frame / self.rate, ppq=beats * 4.0 / self.meter.den, bpm=self.bpm,
            ts_num=self.meter.num, ts_den=self.meter.den, bar=bar, beat=beat + tick / TICKS_PER_BEAT,
            playing=playing,
        )


def _beats(record: Transport) -> float:
    """The master's beats (of 1/den) from bar 1, beat 1 at ``record``'s frame."""
    beat = record.beat + record.tick / record.ticks_per_beat
    return (record.bar - 1) * record.beats_per_bar + beat - 1.0
