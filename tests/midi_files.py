"""MIDI files the tests write, and the arithmetic of their tempo maps done by hand.

Messages are placed by absolute tick (``timed_track`` turns them into a track's delta times);
``conductor`` is a tempo and meter map as such messages; ``seconds_at`` is where a tick falls
in seconds on a tempo map, exactly (never with the project's Timeline)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import mido

Timed = tuple[int, mido.Message | mido.MetaMessage]  # (absolute tick, message)


def timed_track(timed: Iterable[Timed]) -> mido.MidiTrack:
    """A track of ``timed`` messages in tick order (those on one tick keep their order)."""
    track, last = mido.MidiTrack(), 0
    for tick, msg in sorted(timed, key=lambda item: item[0]):
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def conductor(tempos: Sequence[tuple[int, int]], meters: Sequence[tuple[int, int, int]]) -> list[Timed]:
    """``set_tempo`` at each (tick, µs per quarter) and ``time_signature`` at each (tick,
    numerator, denominator); on one tick the tempo comes first."""
    return ([(t, mido.MetaMessage("set_tempo", tempo=v)) for t, v in tempos]
            + [(t, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for t, n, d in meters])


def seconds_at(tick: Fraction | int, tempos: Sequence[tuple[int, int]], ticks_per_beat: int) -> Fraction:
    """Exact time of ``tick`` on the tempo map ``tempos`` ((tick, µs per quarter), the first on
    tick 0): whole tempo segments summed, then the part of the last."""
    total, tick = Fraction(0), Fraction(tick)
    for (start, tempo), (end, _) in zip(tempos, list(tempos[1:]) + [(math.inf, 0)], strict=True):
        if tick <= start:
            break
        total += (min(tick, end) - start) * Fraction(tempo, 1_000_000 * ticks_per_beat)
    return total


def write_tune(path: Path, notes: list[tuple[int, int, int]], *, extra: Sequence[mido.Message] = ()) -> Path:
    """A type-0 file at 480 tpb, 120 bpm: (tick, note, velocity), each a 200-tick note; ``extra``
    messages on tick 960."""
    timed: list[Timed] = []
    for tick, note, velocity in notes:
        timed += [(tick, mido.Message("note_on", note=note, velocity=velocity)),
                  (tick + 200, mido.Message("note_off", note=note))]
    timed += [(960, msg) for msg in extra]
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(timed_track(timed))
    midi.save(str(path))
    return path
