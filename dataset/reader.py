"""The reader of a data directory's finished streams (docs/dataset.md): the bottom layer of
``sendlearn.dataset``, under windows, measures, the sequences cache and the ``Dataset`` façade.

Lazy like mirdata's tracks: opening a ``DataDir`` or a ``Stream`` reads only ``stream.json``
(as a ``StreamSummary``); tables are read on first use and kept; audio is read by sample range,
seeking in the file, so asking for a slice never reads the whole file. A file a newer major
format wrote is refused (``FormatTooNew``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pyarrow as pa
import soundfile

from sendlearn.capture import Playhead, check_name

from .notes import note_table
from .schema import BLOCKS_SCHEMA, EVENTS_SCHEMA, FULL_QUALITY, PARAMS_SCHEMA, StreamSummary, read_parquet

WORK = ".work"  # the receiver's folder for a stream still open (docs/dataset.md, "Durability")


class DataDir:
    """A data directory: ``sessions/<session>/<stream>/`` as the store writes them. ``Dataset``
    (sendlearn.dataset.facade) is this plus its windows."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such data directory")
        self._streams: dict[tuple[str, str], Stream] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def sessions(self) -> list[str]:
        """Sessions with at least one finished stream (one whose ``stream.json`` is written)."""
        return sorted({p.parent.parent.name for p in (self.path / "sessions").glob("*/*/stream.json")})

    def streams(self, session: str) -> list[str]:
        return sorted(p.parent.name for p in self._session_dir(session).glob("*/stream.json"))

    def stream(self, session: str, stream: str) -> Stream:
        key = (session, stream)
        if key not in self._streams:
            folder = self._session_dir(session) / check_name(stream, "stream")
            if not (folder / "stream.json").is_file():
                raise KeyError(f"no finished stream {session}/{stream} in {self.path}")
            self._streams[key] = Stream(folder)
        return self._streams[key]

    def __iter__(self) -> Iterator[Stream]:
        for session in self.sessions():
            for name in self.streams(session):
                yield self.stream(session, name)

    def session_frames(self, session: str) -> int:
        """The session's length on its clock: its longest stream."""
        return max((self.stream(session, s).frames for s in self.streams(session)), default=0)

    def session_rate(self, session: str) -> int:
        rates = {self.stream(session, s).sample_rate for s in self.streams(session)}
        if len(rates) != 1:
            raise ValueError(f"session {session}: streams at {sorted(rates)} Hz do not share one clock")
        return rates.pop()

    def _session_dir(self, session: str) -> Path:
        return self.path / "sessions" / check_name(session, "session")


class Stream:
    """One stream: its ``stream.json`` facts (``facts``, typed; ``info``, the same as JSON), its
    tables, and its audio by sample range."""

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.facts = StreamSummary.read(folder / "stream.json")
        self.session = self.facts.session
        self.name = self.facts.stream
        self.sample_rate = self.facts.sample_rate
        self.channels = self.facts.channels
        self.block_size = self.facts.block_size
        self.frames = self.facts.audio.frames
        self.audio_path = folder / self.facts.audio.file

    @cached_property
    def info(self) -> dict[str, Any]:
        """stream.json's content (``facts.to_json()``)."""
        return self.facts.to_json()

    def __repr__(self) -> str:
        return f"Stream({self.session!r}, {self.name!r}, {self.frames} frames at {self.sample_rate} Hz)"

    @property
    def open(self) -> bool:
        """The receiver still holds the stream open (it may be written again, whole)."""
        return (self.path / WORK).exists()

    @property
    def state(self) -> str:
        if self.open:
            return "open"
        return "complete" if self.facts.complete else "ended: " + self.facts.ended

    # --- audio ----------------------------------------------------------------------------

    def audio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` as float32 ``(channels, stop - start)``; past the end of the
        file the slice is zeros (``valid`` says so). Only those frames are read."""
        stop = self.frames if stop is None else stop
        if not 0 <= start <= stop:
            raise ValueError(f"bad sample range [{start}, {stop})")
        have = max(0, min(stop, self.frames) - start)
        if have == 0:
            return np.zeros((self.channels, stop - start), dtype=np.float32)
        with soundfile.SoundFile(self.audio_path) as f:
            f.seek(start)
            data = f.read(have, dtype="float32", always_2d=True)
        if have == stop - start:
            return data.T  # a view: (channels, frames) without copying the samples again
        out = np.zeros((self.channels, stop - start), dtype=np.float32)
        out[:, :have] = data.T
        return out

    def valid(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Boolean mask of ``[start, stop)``: True where the audio is the host's own (a block stored
        at a lossless level); False in gaps, in degraded (``REDUCED``) or missing (``NONE``) audio,
        and past the end of the stream."""
        stop = self.frames if stop is None else stop
        mask = np.zeros(stop - start, dtype=bool)
        for a, b in self._valid_spans:
            if a < stop and b > start:
                mask[max(a, start) - start:min(b, stop) - start] = True
        return mask

    @cached_property
    def _valid_spans(self) -> list[tuple[int, int]]:
        blocks = self.blocks()
        good = np.isin(blocks["quality"].to_numpy(zero_copy_only=False), list(FULL_QUALITY))
        starts = blocks["sample"].to_numpy()[good]
        ends = np.minimum(starts + blocks["frames"].to_numpy()[good], self.frames)
        spans: list[tuple[int, int]] = []
        for a, b in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
            if spans and a <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            elif a < b:
                spans.append((a, b))
        return spans

    # --- tables ---------------------------------------------------------------------------

    def events(self, start: int | None = None, stop: int | None = None) -> pa.Table:
        """events.parquet rows with ``start <= sample < stop`` (absolute samples)."""
        return _in_range(self._events, start, stop)

    def blocks(self, start: int | None = None, stop: int | None = None) -> pa.Table:
        """blocks.parquet rows whose first sample is in ``[start, stop)``."""
        return _in_range(self._blocks, start, stop)

    def params(self, start: int | None = None, stop: int | None = None) -> pa.Table:
        """params.parquet rows with ``start <= sample < stop``."""
        return _in_range(self._params, start, stop)

    def notes(self, start: int | None = None, stop: int | None = None) -> pa.Table:
        """Notes (``start``, ``end`` samples, ``pitch``, ``velocity``, ``channel``) that sound at
        some sample of ``[start, stop)``; rules in ``sendlearn.dataset.notes``."""
        notes = self._notes
        if start is None and stop is None:
            return notes
        keep = np.ones(len(notes), dtype=bool)
        if stop is not None:
            keep &= notes["start"].to_numpy() < stop
        if start is not None:
            keep &= notes["end"].to_numpy() > start
        return notes.filter(pa.array(keep))

    def midi(self) -> mido.MidiFile:
        return mido.MidiFile(self.path / "notes.mid")

    @cached_property
    def _events(self) -> pa.Table:
        return read_parquet(self.path / "events.parquet", EVENTS_SCHEMA)

    @cached_property
    def _blocks(self) -> pa.Table:
        return read_parquet(self.path / "blocks.parquet", BLOCKS_SCHEMA)

    @cached_property
    def _params(self) -> pa.Table:
        return read_parquet(self.path / "params.parquet", PARAMS_SCHEMA)

    @cached_property
    def _notes(self) -> pa.Table:
        events = self._events
        return note_table(events["sample"].to_pylist(), events["data"].to_pylist(), self.frames)

    # --- timeline -------------------------------------------------------------------------

    def playhead(self, sample: int) -> Playhead:
        """The host's timeline at ``sample``, from the playhead of the block holding it (or the last
        block before it) advanced by the frames since. A tempo change inside the block is placed
        where the block's and the next block's playheads meet (as notes.mid places it); a meter
        change takes effect on the next block's bar line. Exact at block starts."""
        rows = self._timeline
        index = int(np.searchsorted(self._block_starts, sample, side="right")) - 1
        if index < 0:
            raise ValueError(f"sample {sample} is before the stream's first block")
        row = rows[index]
        after = rows[index + 1] if index + 1 < len(rows) else None
        since = sample - row["sample"]
        ppq, bpm = row["ppq"], row["bpm"]
        if row["playing"]:
            change = _tempo_change(row, after, self.sample_rate)
            if after is not None and change is not None and since >= change - 1e-6:  # float x of a whole sample
                ppq += change / self.sample_rate * bpm / 60.0
                bpm, since_change = after["bpm"], since - change
            else:
                since_change = since
            ppq += since_change / self.sample_rate * bpm / 60.0
        meter = row
        if after is not None and row["playing"] and (after["ts_num"], after["ts_den"]) != (row["ts_num"], row["ts_den"]):
            if ppq >= after["ppq"] - (after["beat"] - 1.0) * 4.0 / after["ts_den"] - 1e-9:
                meter = after  # past the bar line where the next block's meter starts
        bar, beat = meter["bar"], meter["beat"]
        if row["playing"]:
            beat += (ppq - meter["ppq"]) * meter["ts_den"] / 4.0
            bars = int((beat - 1.0) // meter["ts_num"])
            bar, beat = bar + bars, beat - bars * meter["ts_num"]
        return Playhead(seconds=row["seconds"] + (sample - row["sample"]) / self.sample_rate, ppq=ppq, bpm=bpm,
                        ts_num=meter["ts_num"], ts_den=meter["ts_den"], bar=bar, beat=beat, playing=row["playing"],
                        recording=row["recording"], looping=row["looping"])

    @cached_property
    def _timeline(self) -> list[dict[str, Any]]:
        return self._blocks.select(["sample", "frames", "playing", "recording", "looping", "seconds", "bpm", "ts_num",
                                    "ts_den", "ppq", "bar", "beat"]).to_pylist()

    @cached_property
    def _block_starts(self) -> np.ndarray:
        return self._blocks["sample"].to_numpy()

    def summary(self) -> dict[str, Any]:
        """What ``sendlearn status`` shows of a finished stream."""
        facts = self.facts
        return {
            "session": self.session, "stream": self.name, "track": facts.track, "state": self.state,
            "seconds": facts.audio.seconds, "blocks": facts.blocks, "events": facts.events, "gaps": len(facts.gaps),
            "gap_blocks": sum(g.last_seq - g.first_seq + 1 for g in facts.gaps), "audio": facts.audio.file,
            "path": str(self.path),
        }


def _in_range(table: pa.Table, start: int | None, stop: int | None) -> pa.Table:
    if start is None and stop is None:
        return table
    samples = table["sample"].to_numpy()
    keep = np.ones(len(samples), dtype=bool)
    if start is not None:
        keep &= samples >= start
    if stop is not None:
        keep &= samples < stop
    return table.filter(pa.array(keep))


def _tempo_change(now: dict[str, Any], after: dict[str, Any] | None, sample_rate: int) -> float | None:
    """Frames into block ``now`` where the tempo becomes ``after``'s: the ``x`` where
    ``now.ppq + x·bpm/60/sr + (frames − x)·bpm_after/60/sr = after.ppq``; None when the tempo
    holds or the timeline jumps (a locate, a loop) rather than changes inside the block."""
    if after is None or after["bpm"] == now["bpm"] or not after["playing"] or after["sample"] != now["sample"] + now["frames"]:
        return None
    frames = now["frames"]
    span = after["ppq"] - now["ppq"] - frames / sample_rate * after["bpm"] / 60.0
    x = span * 60.0 * sample_rate / (now["bpm"] - after["bpm"])
    return min(max(x, 0.0), float(frames)) if -0.5 <= x <= frames + 0.5 else None
