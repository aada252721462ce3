"""``Dataset``: the one way to read a data directory (docs/dataset.md).

Lazy like mirdata's tracks: opening a ``Dataset`` or a ``Stream`` reads only ``stream.json``;
tables are read on first use and kept; audio is read by sample range, seeking in the file, so
asking for a slice never reads the whole file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile

from sendlearn.capture import Playhead, check_name

from .notes import note_table
from .schema import BLOCKS_SCHEMA, EVENTS_SCHEMA, FULL_QUALITY, PARAMS_SCHEMA

if TYPE_CHECKING:
    from .windows import Window

WORK = ".work"  # the receiver's folder for a stream still open (docs/dataset.md, "Durability")


class Dataset:
    """A data directory: ``sessions/<session>/<stream>/`` as the receiver writes them."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such data directory")
        self._streams: dict[tuple[str, str], Stream] = {}

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r})"

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

    def windows(self, session: str, window: float | None = None, overlap: float | None = None,
                min_events: int | None = None) -> Iterator[Window]:
        """Training windows of ``session`` (``sendlearn.dataset.windows``): the ones ``sendlearn
        sequences`` stored, with their flags and cached features, when it has run with these
        settings (or none given); otherwise cut now (defaults 30 s, 5 s overlap, 10 events)."""
        from .windows import session_windows

        return session_windows(self, session, window, overlap, min_events)

    def _session_dir(self, session: str) -> Path:
        return self.path / "sessions" / check_name(session, "session")


class Stream:
    """One stream: its ``stream.json`` facts, its tables, and its audio by sample range."""

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.info: dict[str, Any] = json.loads((folder / "stream.json").read_text())
        self.session: str = self.info["session"]
        self.name: str = self.info["stream"]
        self.sample_rate: int = int(self.info["sample_rate"])
        self.channels: int = int(self.info["channels"])
        self.block_size: int = int(self.info["block_size"])
        self.frames: int = int(self.info["audio"]["frames"])
        self.audio_path = folder / self.info["audio"]["file"]

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
        return "complete" if self.info["complete"] else "ended: " + self.info["ended"]

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
        return pq.read_table(self.path / "events.parquet", schema=EVENTS_SCHEMA)

    @cached_property
    def _blocks(self) -> pa.Table:
        return pq.read_table(self.path / "blocks.parquet", schema=BLOCKS_SCHEMA)

    @cached_property
    def _params(self) -> pa.Table:
        return pq.read_table(self.path / "params.parquet", schema=PARAMS_SCHEMA)

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
        info = self.info
        return {
            "session": self.session, "stream": self.name, "track": info.get("track", ""), "state": self.state,
            "seconds": info["audio"]["seconds"], "blocks": info["blocks"], "events": info["events"],
            "gaps": len(info["gaps"]), "gap_blocks": sum(g["last_seq"] - g["first_seq"] + 1 for g in info["gaps"]),
            "audio": info["audio"]["file"], "path": str(self.path),
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
