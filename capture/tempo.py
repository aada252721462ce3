"""Tempo units: what a timebase master's ``beats_per_minute`` counts, and how a stored block is put
in quarter notes once the stream knows (plugin/live/tempo.py decides; the store applies it).

A master publishes ``beats_per_minute`` either in beats of the meter's denominator (JACK's own
definition: 137 in 7/8 is 68.5 quarter notes a minute) or in quarter notes whatever the meter
(Ardour 7: 100 with ``beat_type`` 8 in 6/8). The live capture decides which from the master's
beats and bars over time; until it can, it stores what the master publishes and notes those
blocks as provisional. The stream's closing figures then say which unit each provisional span
was in (``tempo_units``, ``tempo_provisional_spans``), and ``settle`` maps each span to it.

Pure functions: no I/O, no host library.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

QUARTER = "quarter"  # beats_per_minute counts quarter notes, whatever the meter
DENOMINATOR = "denominator"  # beats_per_minute counts beats of 1/den notes (JACK's definition)
UNITS = (QUARTER, DENOMINATOR)


def to_quarter_notes(bpm: float, ts_den: int, unit: str | None) -> float:
    """``bpm`` as quarter notes per minute, given the ``unit`` the master published it in
    (None: unknown, returned as published). In x/4 the two units are the same number."""
    if unit == DENOMINATOR:
        return bpm * 4.0 / ts_den
    if unit == QUARTER or unit is None:
        return bpm
    raise ValueError(f"tempo unit must be {QUARTER!r}, {DENOMINATOR!r} or None, got {unit!r}")


def settle(spans: Sequence[Sequence[int]], units: Sequence[Sequence[object]]) -> list[tuple[int, int, str | None, str]]:
    """For each provisional span ``[start, end)`` (stream samples), the unit its blocks are in and
    what their ticks counted ("beat" or "quarter"): the first decision at or after the span's end
    (the one that ended it), else the last decision before it (the master's convention, decided
    in an earlier meter), else ``(None, "beat")`` (never decided: leave the blocks as published).
    ``units`` is ``[[sample, unit, ticks], ...]`` in stream order, the ``tempo_units`` figure."""
    samples = [int(u[0]) for u in units]  # type: ignore[call-overload]
    settled: list[tuple[int, int, str | None, str]] = []
    for span in spans:
        start, end = int(span[0]), int(span[1])
        after = bisect.bisect_left(samples, end)
        chosen = units[after] if after < len(units) else units[after - 1] if after > 0 else None
        if chosen is None:
            settled.append((start, end, None, "beat"))
        else:
            settled.append((start, end, str(chosen[1]), str(chosen[2]) if len(chosen) > 2 else "beat"))
    return settled


class Settled(NamedTuple):
    """A blocks table's tempo columns in quarter notes, the beat and ppq in the meter's beats."""

    bpm: list[float]
    beat: list[float]
    ppq: list[float]


def settle_blocks(sample: Sequence[int], bpm: Sequence[float], ts_num: Sequence[int], ts_den: Sequence[int],
                  bar: Sequence[int], beat: Sequence[float], ppq: Sequence[float],
                  figures: Mapping[str, Any]) -> Settled:
    """Every block's playhead settled: the columns of a stream's blocks (first sample, stored bpm,
    meter, bar, beat, ppq) and its closing figures (stream.json ``sender``). A block in a
    provisional span stored what the master published: its bpm is converted with the span's unit
    (``to_quarter_notes``), and where the master's ticks counted quarter notes its beat's
    fraction (ticks / published ``ticks_per_beat``) is scaled to the meter's beat and its ppq
    recomputed from bar and beat. Any other block is already settled and kept as it is."""
    spans = settle(figures.get("tempo_provisional_spans") or [], figures.get("tempo_units") or [])
    starts = [span[0] for span in spans]
    out = Settled(list(bpm), list(beat), list(ppq))
    for k, at in enumerate(sample):
        index = bisect.bisect_right(starts, at) - 1
        if index < 0 or at >= spans[index][1]:
            continue
        _, _, unit, ticks = spans[index]
        den = ts_den[k]
        out.bpm[k] = to_quarter_notes(bpm[k], den, unit)
        if ticks == QUARTER and unit is not None:
            whole = math.floor(beat[k])
            out.beat[k] = whole + (beat[k] - whole) * den / 4.0
            out.ppq[k] = ((bar[k] - 1) * ts_num[k] + out.beat[k] - 1.0) * 4.0 / den
    return out


def settle_bpms(samples: Sequence[int], bpms: Sequence[float], ts_dens: Sequence[int],
                figures: Mapping[str, Any]) -> list[float]:
    """Only the bpm column of ``settle_blocks``."""
    zeros = [0.0] * len(samples)
    return settle_blocks(samples, bpms, [1] * len(samples), ts_dens, [1] * len(samples), zeros, zeros, figures).bpm
