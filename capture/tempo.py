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
from collections.abc import Mapping, Sequence
from typing import Any

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


def settle(spans: Sequence[Sequence[int]], units: Sequence[Sequence[object]]) -> list[tuple[int, int, str | None]]:
    """For each provisional span ``[start, end)`` (stream samples), the unit its blocks are in:
    the first decision at or after the span's end (the one that ended it), else the last
    decision before it (the master's convention, decided in an earlier meter), else None
    (never decided: leave the blocks as published). ``units`` is ``[[sample, unit], ...]``
    in stream order, as in the ``tempo_units`` figure."""
    samples = [int(u[0]) for u in units]  # type: ignore[call-overload]
    settled: list[tuple[int, int, str | None]] = []
    for span in spans:
        start, end = int(span[0]), int(span[1])
        after = bisect.bisect_left(samples, end)
        if after < len(units):
            unit: str | None = str(units[after][1])
        elif after > 0:
            unit = str(units[after - 1][1])
        else:
            unit = None
        settled.append((start, end, unit))
    return settled


def settle_bpms(samples: Sequence[int], bpms: Sequence[float], ts_dens: Sequence[int],
                figures: Mapping[str, Any]) -> list[float]:
    """Every block's bpm in quarter notes: ``samples``, ``bpms`` and ``ts_dens`` are the blocks'
    columns (first sample, stored bpm, meter denominator), ``figures`` the stream's closing
    figures (stream.json ``sender``). A block in a provisional span stored what the master
    published: it is converted with the unit ``settle`` gives the span; any other block is
    already in quarter notes and kept."""
    spans = settle(figures.get("tempo_provisional_spans") or [], figures.get("tempo_units") or [])
    starts = [start for start, _, _ in spans]
    settled = []
    for sample, bpm, den in zip(samples, bpms, ts_dens, strict=True):
        index = bisect.bisect_right(starts, sample) - 1
        if index >= 0 and sample < spans[index][1]:
            settled.append(to_quarter_notes(bpm, den, spans[index][2]))
        else:
            settled.append(bpm)
    return settled
