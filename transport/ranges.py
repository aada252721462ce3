"""Sets of blocks as the wire names them: inclusive ``(first, last)`` seq ranges (docs/protocol.md).

The run and range helpers themselves live in ``sendlearn.capture.ranges``, below both the wire
and the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from sendlearn.capture.ranges import runs


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted ``(first, last)`` runs of consecutive seqs: how the wire names sets of blocks."""
    return tuple(runs(sorted(set(seqs)), int))
