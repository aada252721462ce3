"""The JACK transport as a ``Playhead``, with tempo always in quarter notes per minute.

JACK's position carries bar, beat, tick, meter and ``beats_per_minute``. What that tempo
counts depends on who publishes it: JACK's own definition (and our ``--timebase-master``)
counts beats of the meter's denominator (137 in 7/8 is 68.5 quarter notes a minute), while
Ardour 7 publishes quarter notes whatever the meter (100 with ``beat_type`` 8 in 6/8), and its
ticks too (``ticks_per_beat`` 1920 per quarter note: ticks run 0…959 within an eighth). So
neither field's unit is trusted, and the ticks are no evidence: a master's tick motion within a
period can say "denominator" while its beats say "quarter" (a real Ardour in 6/8 did).

The unit is read off whole beats and bars over time (capture/tempo.py names the two units):
the frames between two beat boundaries (a change of the master's beat count, bars included)
are measured against the beat lengths the two readings of ``beats_per_minute`` give, which
differ by ``den / 4``. Once one reading alone fits, the unit is decided (``decisions``: the
stream sample, the unit, and what the master's ``ticks_per_beat`` counts, "beat" or "quarter":
the last tick before a beat boundary tells). Until then (stopped, fewer than two boundaries
rolled, a tempo ramp) a block stores what the master publishes, tempo and ticks, and is noted
provisional (``provisional_spans``), unless the meter is x/4, where both units are one number.
A meter change is decided again from scratch. A master publishing nonsense (bpm ≤ 0, a
``beat_type`` not a power of two, no beats per bar, …) is stored as no master: the manual
``bpm``/``meter`` playhead, counted in ``invalid``.

This module runs in the capturing process, on raw fields the JACK callback copied into the
ring (plugin/live/ring.py); it imports no JACK library.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from sendlearn.capture import CaptureError, Playhead
from sendlearn.capture.tempo import DENOMINATOR, QUARTER, to_quarter_notes

ROLLING = 1  # jack_transport_state_t JackTransportRolling
POSITION_BBT = 0x10  # jack_position_bits_t JackPositionBBT
TICKS_PER_BEAT = 1920.0  # what we publish when we are the timebase master
HOLD_SECONDS = 5.0  # a master silent for longer has released the timebase (or the machine stalled)
FIT = 0.03  # how far (relative) a beat length may sit outside what the boundaries bound and still fit
MAX_SPANS = 1000  # provisional spans listed in the figures; more are counted (docs/protocol.md, "Facts")
DENOMINATORS = frozenset((1, 2, 4, 8, 16, 32, 64, 128))


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
    """Turns the transport fields of one period into a ``Playhead``. With a timebase master
    publishing BBT, bar, beat and meter are the master's and the tempo is in quarter notes once
    its unit is decided (module docstring); without one, ``bpm`` (quarter notes) and ``meter``
    hold from transport frame 0. ``ppq`` counts quarter notes from bar 1 assuming the meter has
    not changed since (JACK gives no absolute beat count).

    A master whose timebase callback ran late leaves a period without BBT. That period is the
    master's last position carried on at its tempo and meter, to JACK's tick resolution
    (``held`` counts them), for up to ``HOLD_SECONDS`` of transport time after it: a song in 7/8
    does not turn into --bpm in 4/4 for one period. Beyond that the master is gone."""

    def __init__(self, rate: int, bpm: float, meter: Meter, *, own_unit: str | None = None) -> None:
        """``own_unit``: the unit is known, not measured (we are the timebase master ourselves,
        publishing JACK's definition: ``DENOMINATOR``)."""
        self.rate = rate
        self.bpm = float(bpm)
        self.meter = meter
        self.invalid = 0  # positions from a master publishing nonsense: stored as the manual playhead
        self.held = 0  # periods a late master left without BBT, carried on from its last position
        self.provisional = 0  # blocks stored with the tempo as published, the unit not yet decided
        self.provisional_spans: list[list[int]] = []  # [[first sample, end sample), ...] of those
        self.decisions: list[list[Any]] = []  # [[stream sample, unit, ticks], ...]: every decision, meter by meter
        self.own_unit = own_unit
        self.unit: str | None = own_unit  # the current meter's decided unit (None: not yet, or x/4)
        if own_unit is not None:
            self.decisions.append([0, own_unit, "beat"])
        self._ticks_per_beat: float | None = None  # the master's ticks per beat of 1/den, once decided
        self._metre: tuple[float, float] | None = None  # the meter the decision above belongs to
        self._prev: Transport | None = None  # the last valid rolling position, for boundaries
        self._first: tuple[int, int, int, float] | None = None  # a boundary: frames (after, at), beat, bpm
        self._last: Transport | None = None  # the master's last valid position

    def read(self, record: Transport, sample: int = 0, frames: int = 0) -> Playhead:
        """The playhead of the period ``record`` was copied in, which becomes the stream's
        ``frames`` samples from ``sample`` (for the figures)."""
        playing = record.state == ROLLING
        if record.valid & POSITION_BBT:
            if not _sensible(record):
                self.invalid += 1  # a master publishing nonsense must not stop the capture
                self._prev = self._first = None
                return self._manual(record.frame, playing)
            self._follow(record, sample)
            playhead = self._from_bbt(record, playing)
            if playhead is not None:
                self._last = record
                self._note(record, sample, frames)
                return playhead
            self._prev = self._first = None
            return self._manual(record.frame, playing)
        held = self._carried_on(record)
        if held is not None:
            playhead = self._from_bbt(held, playing)
            if playhead is not None:
                self.held += 1
                self._note(held, sample, frames)
                return playhead
        return self._manual(record.frame, playing)

    def figures(self) -> dict[str, Any]:
        """The tempo facts a stream closes with (BYE stats, so stream.json's ``sender``)."""
        return {
            "tempo_unit": self.decisions[-1][1] if self.decisions else None,
            "tempo_unit_at": self.decisions[0][0] if self.decisions else None,
            "tempo_units": [list(d) for d in self.decisions[:MAX_SPANS]],
            "tempo_provisional": self.provisional,
            "tempo_provisional_spans": [list(s) for s in self.provisional_spans[:MAX_SPANS]],
            "tempo_provisional_spans_left_out": max(0, len(self.provisional_spans) - MAX_SPANS),
            "tempo_invalid": self.invalid,
        }

    # -- deciding the unit ----------------------------------------------------------------

    def _follow(self, record: Transport, sample: int) -> None:
        """Watch the master's beat count for boundaries and decide its unit from them."""
        metre = (record.beats_per_bar, record.beat_type)
        if metre != self._metre:  # a new meter (or the first): decided again, from scratch
            self._metre, self.unit, self._ticks_per_beat = metre, self.own_unit, None
            self._prev = self._first = None
        prev = self._prev
        if prev is not None and record.state == ROLLING and record.frame == prev.frame:
            return  # the same position again (a master late for a period): nothing new to see
        self._prev = record if record.state == ROLLING else None
        if prev is None or record.state != ROLLING or not 0 < record.frame - prev.frame <= self.rate:
            self._first = None  # stopped, a locate, or the first period: no boundary to see
            return
        moved = _beat_index(record) - _beat_index(prev)
        if moved < 0:
            self._first = None  # a locate back within a second
            return
        if moved == 0:
            return
        if moved == 1 and self._ticks_per_beat is None:
            self._ticks_per_beat = _tick_scale(prev)
        first = self._first
        if first is None or first[3] != record.bpm:  # the first boundary, or the tempo changed
            self._first = (prev.frame, record.frame, _beat_index(record), record.bpm)
            return
        if self.unit is not None:
            return
        beats = _beat_index(record) - first[2]
        shortest = (prev.frame - first[1]) / beats  # frames per beat, bounded by the two boundaries
        longest = (record.frame - first[0]) / beats
        per_beat = {QUARTER: 60.0 * self.rate / (record.bpm * record.beat_type / 4.0),
                    DENOMINATOR: 60.0 * self.rate / record.bpm}
        fits = [unit for unit, frames in per_beat.items()
                if shortest * (1.0 - FIT) <= frames <= longest * (1.0 + FIT)]
        if len(fits) == 1:
            if record.beat_type != 4.0:
                self.unit = fits[0]
                scale = self._ticks_per_beat or record.ticks_per_beat
                ticks = QUARTER if scale != record.ticks_per_beat else "beat"  # what its ticks_per_beat counts
                self.decisions.append([sample, fits[0], ticks])
        elif not fits:
            self._first = (prev.frame, record.frame, _beat_index(record), record.bpm)  # a ramp: start again

    def _note(self, record: Transport, sample: int, frames: int) -> None:
        if self.unit is not None or record.beat_type == 4.0 or frames <= 0:
            return
        self.provisional += 1
        spans = self.provisional_spans
        if spans and spans[-1][1] == sample:
            spans[-1][1] = sample + frames
        else:
            spans.append([sample, sample + frames])

    # -- playheads --------------------------------------------------------------------------

    def _ticks(self, record: Transport) -> float:
        """The master's ticks per beat of 1/den once its unit is decided, else as published (a
        provisional block is all as published: capture/tempo.py settles it whole)."""
        return (self._ticks_per_beat if self.unit is not None else None) or record.ticks_per_beat

    def _carried_on(self, record: Transport) -> Transport | None:
        """The master's last position moved on to ``record.frame`` at its tempo, or None."""
        last = self._last
        if last is None or not 0 <= record.frame - last.frame <= HOLD_SECONDS * self.rate:
            return None  # no master yet, a locate back, or a master gone
        per_minute = last.bpm * (last.beat_type / 4.0 if self.unit == QUARTER else 1.0)  # its beats of 1/den
        ticks = self._ticks(last)
        beats = _beats(last, ticks) + (record.frame - last.frame) / self.rate * per_minute / 60.0
        num = last.beats_per_bar
        bar = int(beats // num)
        within = beats - bar * num
        beat = int(within)
        tick = int((within - beat) * ticks)  # JACK's tick field is whole
        return last._replace(frame=record.frame, state=record.state, bar=bar + 1, beat=beat + 1, tick=tick)

    def _from_bbt(self, record: Transport, playing: bool) -> Playhead | None:
        try:
            num, den = int(round(record.beats_per_bar)), int(round(record.beat_type))
            ticks = self._ticks(record)
            return Playhead(
                seconds=record.frame / self.rate, ppq=_beats(record, ticks) * 4.0 / den,
                bpm=to_quarter_notes(record.bpm, den, self.unit), ts_num=num, ts_den=den, bar=record.bar,
                beat=float(record.beat + record.tick / ticks), playing=playing,
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


def _sensible(record: Transport) -> bool:
    """Whether a master's position can be a playhead at all: a tempo, a meter, a tick scale."""
    try:
        return (math.isfinite(record.bpm) and 0.0 < record.bpm <= 10000.0
                and record.beat_type in DENOMINATORS
                and math.isfinite(record.beats_per_bar) and 1 <= round(record.beats_per_bar) <= 255
                and math.isfinite(record.ticks_per_beat) and record.ticks_per_beat >= 1.0
                and record.bar >= 1 and record.beat >= 1 and record.tick >= 0)
    except (TypeError, ValueError):
        return False


def _beat_index(record: Transport) -> int:
    """Whole beats (of 1/den) from bar 1, beat 1: what changes at a beat or bar boundary."""
    return (record.bar - 1) * int(round(record.beats_per_bar)) + record.beat - 1


def _tick_scale(end_of_beat: Transport) -> float:
    """The master's ticks per beat of 1/den, from the last tick it published in a beat: its
    ``ticks_per_beat`` counts either that beat or a quarter note (Ardour), and a beat's ticks
    never reach the scale they count in. The smallest scale above that tick is the one."""
    published = end_of_beat.ticks_per_beat
    candidates = sorted({published, published * 4.0 / end_of_beat.beat_type})
    return next((scale for scale in candidates if end_of_beat.tick < scale), candidates[-1])


def _beats(record: Transport, ticks_per_beat: float) -> float:
    """The master's beats (of 1/den) from bar 1, beat 1 at ``record``'s frame."""
    beat = record.beat + record.tick / ticks_per_beat
    return (record.bar - 1) * record.beats_per_bar + beat - 1.0
