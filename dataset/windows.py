"""Training windows on a session's clock (``sendlearn sequences``; docs/dataset.md, "Sequences").

Window ``k`` starts at sample ``k * hop`` with ``hop = round((window - overlap) * sr)`` and is
``round(window * sr)`` frames long. Whole windows come first (``start + frames`` within the
session's length, its longest stream); then, with ``tail="pad"`` (the default), one more window
covers what is left after the last whole one (or the whole of a session shorter than a window),
starting a hop after it and padded to the full length with silence and no events. Its
``frames_valid`` says how many of its frames are real (every other window: all of them). With
``tail="drop"`` only whole windows are cut. Every window holds every stream of the session, and
every window of a session is in the session's split (``splits.py``: train, validation or test).

A window reads its data through the reader below it; its quality flags and features come from
above (``WindowMeasures``: the measures, or the ``sequences/`` cache), so this layer imports neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendlearn.capture import Playhead

from .reader import DataDir, Stream
from .splits import SplitSpec, session_split


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How a session is cut: seconds of each window, seconds shared by neighbours, and the fewest
    MIDI events (all streams) a window needs not to be flagged ``few_events``."""

    window: float = 30.0
    overlap: float = 5.0
    min_events: int = 10
    tail: str = "pad"  # or "drop": the last part of a session shorter than a window is left out

    def __post_init__(self) -> None:
        if not self.window > 0 or not 0 <= self.overlap < self.window:
            raise ValueError(f"need window > 0 and 0 <= overlap < window, got {self.window} and {self.overlap}")
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {', '.join(TAILS)}, got {self.tail!r}")
        if self.min_events < 0:
            raise ValueError(f"min_events must be >= 0, got {self.min_events}")

    def frames(self, sample_rate: int) -> int:
        return round(self.window * sample_rate)

    def hop(self, sample_rate: int) -> int:
        return round((self.window - self.overlap) * sample_rate)

    def starts(self, total_frames: int, sample_rate: int) -> list[int]:
        """First sample of every window of a session ``total_frames`` long: the whole ones, then
        (``tail="pad"``) the one covering what they leave at the end."""
        frames, hop = self.frames(sample_rate), self.hop(sample_rate)
        if hop <= 0 or frames <= 0:
            raise ValueError(f"{self} is shorter than one sample at {sample_rate} Hz")
        whole = list(range(0, total_frames - frames + 1, hop)) if total_frames >= frames else []
        if self.tail == "pad" and total_frames > 0:
            covered = whole[-1] + frames if whole else 0
            if covered < total_frames:
                whole.append(whole[-1] + hop if whole else 0)
        return whole


TAILS = ("pad", "drop")


class WindowMeasures(Protocol):
    """What a window asks the layers above for: its quality flags, and a stream's features."""

    def flags(self, window: Window) -> tuple[str, ...]: ...

    def features(self, window: Window, stream: str) -> dict[str, np.ndarray]: ...


class Window:
    """One training window: every stream of the session over ``[start_sample, start_sample + frames)``.

    Samples in its tables are relative to the window's start. ``frames_valid`` of its ``frames``
    are the session's (the last window of a session may be padded: silence and no events past
    them). ``flags`` are those ``sendlearn sequences`` stored, or asked of ``measures`` on first
    use (``sendlearn.dataset.quality``). ``split`` is the session's: ``train``, ``validation`` or
    ``test`` (``sendlearn.dataset.splits``).
    """

    def __init__(self, dataset: DataDir, session: str, index: int, start_sample: int, frames: int,
                 sample_rate: int, streams: tuple[str, ...], spec: WindowSpec, measures: WindowMeasures,
                 flags: tuple[str, ...] | None = None, frames_valid: int | None = None, split: str = "train") -> None:
        self.dataset, self.session, self.index, self.split = dataset, session, index, split
        self.start_sample, self.frames, self.sample_rate = start_sample, frames, sample_rate
        self.frames_valid = frames if frames_valid is None else frames_valid
        self.streams, self.spec, self._measures = streams, spec, measures
        if flags is not None:
            self.__dict__["flags"] = flags

    def __repr__(self) -> str:
        return (f"Window({self.session!r}, {self.index}, start_sample={self.start_sample}, frames={self.frames}, "
                f"frames_valid={self.frames_valid}, split={self.split!r}, flags={self.flags})")

    @property
    def stop_sample(self) -> int:
        return self.start_sample + self.frames

    @cached_property
    def flags(self) -> tuple[str, ...]:
        return self._measures.flags(self)

    @property
    def flags_known(self) -> bool:
        """The flags are at hand (stored by ``sendlearn sequences``, or asked already): reading
        them costs no measuring."""
        return "flags" in self.__dict__

    @property
    def event_count(self) -> int:
        """MIDI events of every stream inside the window."""
        return sum(len(self._stream(s).events(self.start_sample, self.stop_sample)) for s in self.streams)

    def audio(self, stream: str) -> np.ndarray:
        """float32 ``(channels, frames)``: the stream's audio slice (zeros past its end)."""
        return self._stream(stream).audio(self.start_sample, self.stop_sample)

    def valid(self, stream: str) -> np.ndarray:
        """Per sample: the stream's audio is its own (no gap, not degraded, not past its end)."""
        return self._stream(stream).valid(self.start_sample, self.stop_sample)

    def events(self, stream: str) -> pa.Table:
        """events.parquet rows inside the window, ``sample`` relative to its start."""
        return self._rebase(self._stream(stream).events(self.start_sample, self.stop_sample))

    def blocks(self, stream: str) -> pa.Table:
        """blocks.parquet rows starting inside the window, ``sample`` relative to its start."""
        return self._rebase(self._stream(stream).blocks(self.start_sample, self.stop_sample))

    def params(self, stream: str) -> pa.Table:
        """Automation in the window, ``sample`` relative to its start. A lane that changed before the
        window and not on its first sample gets a row at sample 0 with the value then in force."""
        source = self._stream(stream)
        inside = source.params(self.start_sample, self.stop_sample)
        before = source.params(None, self.start_sample).to_pylist()
        at_start = set(pc.filter(inside["param"], pc.equal(inside["sample"], self.start_sample)).to_pylist())
        last: dict[str, dict[str, Any]] = {}
        for row in before:
            last[row["param"]] = row
        carried = [dict(row, sample=self.start_sample) for name, row in sorted(last.items()) if name not in at_start]
        table = pa.concat_tables([pa.Table.from_pylist(carried, schema=inside.schema), inside])
        return self._rebase(table)

    def notes(self, stream: str) -> pa.Table:
        """Notes sounding in the window, ``start``/``end`` relative to its start (a note begun
        before the window starts below 0; one lasting past it ends after ``frames``)."""
        notes = self._stream(stream).notes(self.start_sample, self.stop_sample)
        for name in ("start", "end"):
            notes = notes.set_column(notes.schema.get_field_index(name), name,
                                     pc.subtract(notes[name], pa.scalar(self.start_sample, pa.int64())))
        return notes

    def playhead(self, stream: str, at: int = 0) -> Playhead:
        """The stream's playhead at window sample ``at`` (the window's first sample by default)."""
        return self._stream(stream).playhead(self.start_sample + at)

    def features(self, stream: str) -> dict[str, np.ndarray]:
        """Name -> array, frames of 512 samples (``sendlearn.dataset.features``): read from the
        ``sequences/`` cache when ``sendlearn sequences`` computed them, else computed now."""
        self._stream(stream)  # an unknown stream is a KeyError, whoever measures
        return self._measures.features(self, stream)

    def _stream(self, stream: str) -> Stream:
        if stream not in self.streams:
            raise KeyError(f"session {self.session} has no stream {stream!r} (it has {', '.join(self.streams)})")
        return self.dataset.stream(self.session, stream)

    def _rebase(self, table: pa.Table) -> pa.Table:
        relative = pc.subtract(table["sample"], pa.scalar(self.start_sample, pa.int64()))
        return table.set_column(table.schema.get_field_index("sample"), table.schema.field("sample"), relative)


def cut(dataset: DataDir, session: str, spec: WindowSpec, measures: WindowMeasures,
        split: str | None = None) -> Iterator[Window]:
    """Windows of ``session`` by ``spec``, their flags and features asked of ``measures``, all in
    ``split`` (by default the session's split by the default ``SplitSpec``: 80/10/10 by id)."""
    if split is None:
        split = session_split(dataset, session, SplitSpec()).split
    rate = dataset.session_rate(session)
    streams = tuple(dataset.streams(session))
    frames, total = spec.frames(rate), dataset.session_frames(session)
    for index, start in enumerate(spec.starts(total, rate)):
        yield Window(dataset, session, index, start, frames, rate, streams, spec, measures,
                     frames_valid=min(frames, total - start), split=split)
