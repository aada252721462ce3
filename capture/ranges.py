"""Runs and ranges of seqs (and of samples). Pure; shared by the store and the wire.

    runs(items, seq, key)             the first and last item of each run of consecutive seqs
    merge_range(ranges, first, last)  merge one range into sorted, disjoint ranges, in place
    range_holding(ranges, value)      the range of sorted, disjoint ranges that holds ``value``

stream.json lists quality history and backfills as runs of seqs (docs/dataset.md); the store
keeps declared drops and stored samples as merged ranges; the wire names sets of blocks as
runs (``transport.ranges.seq_ranges``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def _one(_: object) -> None:
    return None


def runs(items: Iterable[T], seq: Callable[[T], int], key: Callable[[T], object] = _one) -> list[tuple[T, T]]:
    """``(first item, last item)`` of each run of ``items``, in their order, in which each
    item's seq is one more than the one before it and ``key`` is the same for all."""
    found: list[tuple[T, T]] = []
    for item in items:
        if found and seq(found[-1][1]) == seq(item) - 1 and key(found[-1][1]) == key(item):
            found[-1] = (found[-1][0], item)
        else:
            found.append((item, item))
    return found


def merge_range(ranges: list[tuple[int, int]], first: int, last: int, *, touch: int) -> None:
    """Merge ``first..last`` into ``ranges``, sorted and disjoint, keeping them so: the ranges
    it overlaps, or comes within ``touch`` of, become one with it. ``touch`` is 1 for inclusive
    ranges of seqs (3..5 and 6..9 join) and 0 for half-open ranges of samples. Only its
    neighbours are looked at: n ranges merged one by one cost n log n, not n squared."""
    low = bisect.bisect_left(ranges, (first, -1))
    if low > 0 and ranges[low - 1][1] + touch >= first:
        low -= 1
    high = low
    while high < len(ranges) and ranges[high][0] <= last + touch:
        high += 1
    if high > low:
        first = min(first, ranges[low][0])
        last = max(last, ranges[high - 1][1])
    ranges[low:high] = [(first, last)]


def range_holding(ranges: list[tuple[int, int]], value: int) -> tuple[int, int] | None:
    """The inclusive range of ``ranges`` (sorted, disjoint) that holds ``value``, or None."""
    index = bisect.bisect_right(ranges, (value, float("inf"))) - 1
    if index >= 0 and ranges[index][0] <= value <= ranges[index][1]:
        return ranges[index]
    return None
