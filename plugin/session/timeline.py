"""The host's clock for a MIDI file: tempo map, meter map, every event on its sample.

All arithmetic is exact (``fractions.Fraction``): a tick's time is the sum of whole tempo
segments, never an accumulated float, so event ``k`` of a ten-minute file lands on the same
sample as it would at second zero. The sample of time ``t`` is ``floor(t * sample_rate)``,
which is where DawDreamer's seconds mode puts an event placed at ``(k + 0.5) / sr``.

Bars: a time signature that arrives mid-bar starts a new bar (the partial bar before it
still counts as one), as DAWs show it. ``beat`` is 1-based in units of the signature's
denominator: in 6/8, beat 4.0 is the fourth eighth note.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mido

from sendlearn.capture import Playhead, check_midi_bytes, midi_channel

DEFAULT_TEMPO = 500_000  # µs per quarter note: 120 bpm, the SMF default
MIDI_ERRORS = (OSError, EOFError, ValueError, KeyError)  # how Timeline(path) says "not a MIDI file it can use"
MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class TempoSegment:
    """From ``tick`` on, a quarter note lasts ``tempo`` µs; ``seconds`` is the tick's time."""

    tick: int
    tempo: int
    seconds: Fraction


@dataclass(frozen=True, slots=True)
class MeterSegment:
    """From ``tick`` on, the meter is ``num``/``den`` and ``tick`` is the downbeat of ``bar``."""

    tick: int
    num: int
    den: int
    bar: int


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """One channel or sysex message of the file on its absolute tick and sample.

    ``track`` and ``index`` (position in that track) keep the file's order for events that
    share a tick."""

    tick: int
    sample: int
    data: bytes
    track: int
    index: int

    @property
    def channel(self) -> int | None:
        """0-based channel of a channel message; None for system messages."""
        return midi_channel(self.data)


class Timeline:
    """Tempo and meter maps of a MIDI file at ``sample_rate``, and its events in samples."""

    def __init__(self, midi: mido.MidiFile | str | Path, sample_rate: int) -> None:
        if not isinstance(midi, mido.MidiFile):
            midi = mido.MidiFile(str(midi))
        if midi.type == 2:
            raise ValueError("MIDI file type 2 (independent sequences) has no single timeline")
        if type(sample_rate) is not int or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.ticks_per_beat: int = midi.ticks_per_beat
        tempo_marks: list[tuple[int, int]] = []
        meter_marks: list[tuple[int, int, int]] = []
        raw: list[tuple[int, int, int, bytes]] = []
        end_tick = 0
        for track_index, track in enumerate(midi.tracks):
            tick = 0
            for index, msg in enumerate(track):
                tick += msg.time
                if msg.type == "set_tempo":
                    tempo_marks.append((tick, msg.tempo))
                elif msg.type == "time_signature":
                    meter_marks.append((tick, msg.numerator, msg.denominator))
                elif not msg.is_meta:
                    raw.append((tick, track_index, index, check_midi_bytes(bytes(msg.bin()))))
            end_tick = max(end_tick, tick)  # the last message is end_of_track (or the last event)
        self.tempos = self._tempo_map(tempo_marks)
        self.meters = self._meter_map(meter_marks)
        raw.sort(key=lambda item: (item[0], item[1], item[2]))  # stable file order on one tick
        self.events: list[TimedEvent] = [
            TimedEvent(tick, self.sample_at_tick(tick), data, track, index) for tick, track, index, data in raw
        ]
        self.end_tick = end_tick
        # +1: an event on the last tick must lie inside the stream, on its last sample.
        self.length = self.sample_at_tick(end_tick) + 1

    # -- maps ---------------------------------------------------------------------------

    def _tempo_map(self, marks: list[tuple[int, int]]) -> list[TempoSegment]:
        marks.sort(key=lambda m: m[0])  # stable: the last tempo written on a tick wins
        segments = [TempoSegment(0, DEFAULT_TEMPO, Fraction(0))]
        for tick, tempo in marks:
            last = segments[-1]
            if tick == last.tick:
                segments[-1] = TempoSegment(tick, tempo, last.seconds)
            else:
                seconds = last.seconds + Fraction((tick - last.tick) * last.tempo, MICROS * self.ticks_per_beat)
                segments.append(TempoSegment(tick, tempo, seconds))
        return segments

    def _meter_map(self, marks: list[tuple[int, int, int]]) -> list[MeterSegment]:
        marks.sort(key=lambda m: m[0])
        segments = [MeterSegment(0, 4, 4, 1)]
        for tick, num, den in marks:
            last = segments[-1]
            if tick == last.tick:
                segments[-1] = MeterSegment(tick, num, den, last.bar)
            else:
                bars = math.ceil(Fraction(tick - last.tick, self._ticks_per_bar(last)))
                segments.append(MeterSegment(tick, num, den, last.bar + bars))
        return segments

    def _ticks_per_bar(self, meter: MeterSegment) -> Fraction:
        return Fraction(self.ticks_per_beat * 4 * meter.num, meter.den)

    # -- conversions --------------------------------------------------------------------

    def seconds_at_tick(self, tick: int | Fraction) -> Fraction:
        """Exact time of ``tick`` from the start."""
        seg = self.tempos[bisect.bisect_right([s.tick for s in self.tempos], tick) - 1]
        return seg.seconds + Fraction(tick - seg.tick) * seg.tempo / (MICROS * self.ticks_per_beat)

    def sample_at_tick(self, tick: int | Fraction) -> int:
        """The sample an event on ``tick`` belongs to: ``floor(seconds * sample_rate)``."""
        return math.floor(self.seconds_at_tick(tick) * self.sample_rate)

    def tick_at_seconds(self, seconds: Fraction | int) -> Fraction:
        """Exact (fractional) tick at time ``seconds``; the last tempo holds past the end."""
        seconds = Fraction(seconds)
        seg = self.tempos[bisect.bisect_right([s.seconds for s in self.tempos], seconds) - 1]
        return seg.tick + (seconds - seg.seconds) * MICROS * self.ticks_per_beat / seg.tempo

    def seconds_at_beats(self, quarters: Fraction | float) -> Fraction:
        """Time of a position given in quarter notes from the start (automation in beats)."""
        return self.seconds_at_tick(Fraction(quarters) * self.ticks_per_beat)

    def tempo_at_tick(self, tick: int | Fraction) -> int:
        return self.tempos[bisect.bisect_right([s.tick for s in self.tempos], tick) - 1].tempo

    def meter_at_tick(self, tick: int | Fraction) -> MeterSegment:
        return self.meters[bisect.bisect_right([m.tick for m in self.meters], tick) - 1]

    def bar_beat_at_tick(self, tick: int | Fraction) -> tuple[int, Fraction]:
        """1-based bar and 1-based beat (in denominator units) at ``tick``."""
        meter = self.meter_at_tick(tick)
        into = Fraction(tick) - meter.tick
        per_bar = self._ticks_per_bar(meter)
        bars = math.floor(into / per_bar)
        beat_ticks = Fraction(self.ticks_per_beat * 4, meter.den)
        return meter.bar + bars, 1 + (into - bars * per_bar) / beat_ticks

    def playhead_at(self, sample: int) -> Playhead:
        """The playhead at the first frame of a block that starts on ``sample``.

        Called once per block, so it takes a float path: the tempo segment is chosen exactly
        (integer first samples), the position within it in float64 (error ~1e-12 beats). Only
        where a float could round across a boundary (a meter change, a bar line) does it
        redo the work in exact fractions.
        """
        if not hasattr(self, "_segment_starts"):
            self._prepare_fast_path()
        k = bisect.bisect_right(self._segment_starts, sample) - 1
        start_tick, start_sample, ticks_per_sample, bpm = self._segment_floats[k]
        tick = start_tick + (sample - start_sample) * ticks_per_sample
        m = bisect.bisect_right(self._meter_ticks, tick) - 1
        meter = self.meters[m]
        per_bar = self.ticks_per_beat * 4.0 * meter.num / meter.den
        into = (tick - meter.tick) / per_bar
        if abs(tick - round(tick)) < 1e-6 or abs(into - round(into)) < 1e-9:
            return self._exact_playhead_in(k, sample)
        bars = math.floor(into)
        return Playhead(
            seconds=sample / self.sample_rate, ppq=tick / self.ticks_per_beat, bpm=bpm, ts_num=meter.num,
            ts_den=meter.den, bar=meter.bar + bars, beat=1.0 + (into - bars) * meter.num, playing=True,
        )

    def _prepare_fast_path(self) -> None:
        rate = self.sample_rate
        self._segment_starts = [math.ceil(seg.seconds * rate) for seg in self.tempos]
        self._segment_seconds = [(seg.seconds.numerator, seg.seconds.denominator) for seg in self.tempos]
        self._segment_floats = [
            (float(seg.tick), float(seg.seconds * rate), MICROS * self.ticks_per_beat / (seg.tempo * rate),
             MICROS * 60 / seg.tempo)
            for seg in self.tempos
        ]
        self._meter_ticks = [m.tick for m in self.meters]

    def _exact_playhead_in(self, k: int, sample: int) -> Playhead:
        """``_exact_playhead(sample)`` for a sample in tempo segment ``k``, in integers: each value
        is one exact ratio of two ints, and ``int / int`` rounds it as ``float(Fraction)`` does
        (correctly), so the playhead is the same to the bit, at a tenth of the cost."""
        seg, rate, tpb = self.tempos[k], self.sample_rate, self.ticks_per_beat
        seg_num, seg_den = self._segment_seconds[k]
        # tick = seg.tick + (sample / rate - seg.seconds) * MICROS * tpb / seg.tempo = tick_num / den
        den = rate * seg_den * seg.tempo
        tick_num = seg.tick * den + (sample * seg_den - seg_num * rate) * MICROS * tpb
        meter = self.meters[bisect.bisect_right(self._meter_ticks, tick_num // den) - 1]
        into = tick_num - meter.tick * den  # ticks into the meter, times den
        bars = (into * meter.den) // (den * tpb * 4 * meter.num)
        beat_den = den * tpb * 4
        return Playhead(
            seconds=sample / rate, ppq=tick_num / (den * tpb), bpm=MICROS * 60 / seg.tempo, ts_num=meter.num,
            ts_den=meter.den, bar=meter.bar + bars,
            beat=(beat_den + into * meter.den - bars * tpb * 4 * meter.num * den) / beat_den, playing=True,
        )

    def _exact_playhead(self, sample: int) -> Playhead:
        seconds = Fraction(sample, self.sample_rate)
        tick = self.tick_at_seconds(seconds)
        meter = self.meter_at_tick(tick)
        bar, beat = self.bar_beat_at_tick(tick)
        return Playhead(
            seconds=float(seconds), ppq=float(tick / self.ticks_per_beat),
            bpm=MICROS * 60 / self.tempo_at_tick(tick), ts_num=meter.num, ts_den=meter.den,
            bar=bar, beat=float(beat), playing=True,
        )

    @property
    def seconds(self) -> float:
        """Length of the stream in seconds."""
        return self.length / self.sample_rate


def steady_timeline(bpm: float, meter: tuple[int, int], sample_rate: int) -> Timeline:
    """The clock of a recording that has no MIDI conductor: one tempo (``bpm`` quarter notes
    a minute, rounded to a whole microsecond per quarter as a MIDI file keeps it) and one
    meter from the start."""
    tempo = max(1, min(round(60 * MICROS / bpm), (1 << 24) - 1))
    conductor = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=tempo, time=0),
        mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0),
    ])
    return Timeline(mido.MidiFile(type=0, ticks_per_beat=960, tracks=[conductor]), sample_rate)
