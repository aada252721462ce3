"""The sender's spool: every block kept, at full quality, until the receiver has it durably.

On disk (``directory`` given): append-only segment files of checksummed records (the same
record log the receiver journals with), a ``released`` log of seqs the receiver has made
durable at full quality, and ``stream.json`` naming the stream. A sender restarted on the same
folder finds every block not yet released, and where its producer should go on from
(``next_seq``, ``next_sample``). Without a directory the spool lives in memory only.

When full (``max_bytes``), ``add`` refuses the block; the sender then either waits for room
(offline producers: back-pressure) or keeps the block without its audio (live producers:
MIDI, playhead and automation are never dropped; the lost audio is counted and recorded).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from sendlearn.capture import Block, StreamInfo
from sendlearn.errors import SendLearnError
from sendlearn.files.records import Journal, iter_records, read_record_at, read_records

from .decode import entry_from_wire
from .encode import entry_to_wire
from .messages import BlockEntry
from .ranges import seq_ranges

SEGMENT_BYTES = 16 * 1024 * 1024
MEMORY_CACHE_BYTES = 32 * 1024 * 1024


class SpoolMismatch(SendLearnError, ValueError):
    """A spool folder that belongs to another stream."""


class Spool:
    def __init__(self, directory: Path | str | None, info: StreamInfo, *, max_bytes: int | None = None) -> None:
        self.info = info
        self.directory = Path(directory) if directory is not None else None
        if max_bytes is None:  # memory is scarcer than disk
            max_bytes = 2 * 1024**3 if directory is not None else 256 * 1024**2
        self.max_bytes = max_bytes
        self.take = uuid.uuid4().hex[:16]  # this recording; a folder keeps its own across restarts
        self.next_seq = 0
        self.next_sample = 0
        self._where: dict[int, tuple[int, int, int]] = {}  # seq -> (segment, offset, bytes)
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cache_bytes = 0
        self._segment_pending: dict[int, int] = {}
        self._segment_bytes: dict[int, int] = {}
        self._writer: Journal | None = None
        self._writer_segment = -1
        self._released_log: Journal | None = None
        if self.directory is not None:
            self._open_folder(self.directory)

    # --- adding and reading ---------------------------------------------------------------

    def add(self, block: Block) -> bool:
        """Keep ``block`` until released; False (nothing kept) if that would pass ``max_bytes``."""
        size = block.frames * block.channels * 4 + 256 + sum(len(e.data) + 16 for e in block.midi)
        if self.bytes_used + size > self.max_bytes:
            return False
        if self.directory is None:
            self._where[block.seq] = (-1, 0, size)
            self._segment_bytes[-1] = self._segment_bytes.get(-1, 0) + size
            self._cache[block.seq] = block
        else:
            writer = self._segment_for(size)
            segment = self._writer_segment
            offset = writer.append(_record(block))
            self._where[block.seq] = (segment, offset, size)
            self._segment_pending[segment] = self._segment_pending.get(segment, 0) + 1
            self._segment_bytes[segment] = self._segment_bytes.get(segment, 0) + size
            self._remember(block, size)
        self.next_seq = max(self.next_seq, block.seq + 1)
        self.next_sample = max(self.next_sample, block.end_sample)
        return True

    def block(self, seq: int) -> Block:
        """A pending block, from memory or from disk (its digest checked on the way)."""
        cached = self._cache.get(seq)
        if cached is not None:
            return cached
        segment, offset, _ = self._where[seq]
        return _block(read_record_at(self._segment_path(segment), offset), self.info)

    def seqs(self) -> list[int]:
        """Pending seqs, oldest first."""
        return sorted(self._where)

    def __contains__(self, seq: int) -> bool:
        return seq in self._where

    def __len__(self) -> int:
        return len(self._where)

    @property
    def bytes_used(self) -> int:
        return sum(self._segment_bytes.values())

    # --- releasing ------------------------------------------------------------------------

    def release(self, seqs: list[int]) -> None:
        """The receiver has these durably at full quality: forget them."""
        seqs = [s for s in seqs if s in self._where]
        if not seqs:
            return
        for seq in seqs:
            segment, _, size = self._where.pop(seq)
            cached = self._cache.pop(seq, None)
            if cached is not None and self.directory is not None:
                self._cache_bytes -= size
            self._segment_bytes[segment] -= size
            if self.directory is not None:
                self._segment_pending[segment] -= 1
                if self._segment_pending[segment] == 0 and segment != self._writer_segment:
                    self._drop_segment(segment)
        if self._released_log is not None:
            for first, last in seq_ranges(seqs):
                self._released_log.append({"first": first, "last": last})

    def sync(self) -> None:
        """Make what was added and released durable (power loss, not only a killed process)."""
        for log in (self._writer, self._released_log):
            if log is not None:
                log.sync()

    def close(self) -> None:
        for log in (self._writer, self._released_log):
            if log is not None:
                log.close()

    # --- the folder -----------------------------------------------------------------------

    def _open_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "stream.json"
        mine = {"session": self.info.session, "stream": self.info.stream,
                "sample_rate": self.info.sample_rate, "channels": self.info.channels}
        if meta_path.exists():
            theirs = json.loads(meta_path.read_text())
            if {k: theirs.get(k) for k in mine} != mine:
                raise SpoolMismatch(f"{folder} holds the spool of {theirs}, not of {mine}")
            self.take = theirs.get("take") or self.take
        else:
            meta_path.write_text(json.dumps({**mine, "take": self.take}))
        released: set[int] = set()
        for record in read_records(folder / "released")[0]:
            released.update(range(record["first"], record["last"] + 1))
        for path in sorted(folder.glob("segment-*.log")):
            segment = int(path.stem.split("-")[1])
            self._segment_pending[segment] = 0
            self._segment_bytes[segment] = 0
            for offset, record in iter_records(path):
                entry = entry_from_wire(record["entry"])
                size = len(record["audio"]) + 256
                self.next_seq = max(self.next_seq, entry.seq + 1)
                self.next_sample = max(self.next_sample, entry.start_sample + entry.frames)
                if entry.seq not in released:
                    self._where[entry.seq] = (segment, offset, size)
                    self._segment_pending[segment] += 1
                    self._segment_bytes[segment] += size
            self._writer_segment = max(self._writer_segment, segment)
        for segment in [s for s, n in self._segment_pending.items() if n == 0 and s != self._writer_segment]:
            self._drop_segment(segment)
        # the released log only needs what still has a segment; start it afresh
        log = folder / "released"
        log.unlink(missing_ok=True)
        self._released_log = Journal(log)
        still = sorted(s for s in released if s < self.next_seq and s not in self._where)
        for first, last in seq_ranges(still):
            self._released_log.append({"first": first, "last": last})
        if self._writer_segment >= 0:
            # Journal.open drops a torn last record, so blocks appended after it stay readable
            self._writer, _ = Journal.open(self._segment_path(self._writer_segment))

    def _segment_for(self, size: int) -> Journal:
        """The journal of the segment to append ``size`` bytes to (``_writer_segment``)."""
        if self._writer is None or self._writer.size + size > SEGMENT_BYTES:
            if self._writer is not None:
                self._writer.close()
                if self._segment_pending.get(self._writer_segment, 0) == 0:
                    self._drop_segment(self._writer_segment)
            self._writer_segment += 1
            self._writer = Journal(self._segment_path(self._writer_segment))
            self._segment_pending.setdefault(self._writer_segment, 0)
        return self._writer

    def _segment_path(self, segment: int) -> Path:
        assert self.directory is not None  # only a spool on disk has segments
        return self.directory / f"segment-{segment:09d}.log"

    def _drop_segment(self, segment: int) -> None:
        self._segment_path(segment).unlink(missing_ok=True)
        self._segment_pending.pop(segment, None)
        self._segment_bytes.pop(segment, None)

    def _remember(self, block: Block, size: int) -> None:
        self._cache[block.seq] = block
        self._cache_bytes += size
        while self._cache_bytes > MEMORY_CACHE_BYTES and self._cache:
            seq, _ = self._cache.popitem(last=False)
            self._cache_bytes -= self._where[seq][2]


def _record(block: Block) -> dict[str, Any]:
    assert block.audio is not None  # a producer's blocks carry their audio
    return {"entry": entry_to_wire(BlockEntry.of(block)), "audio": block.audio.tobytes()}


def _block(record: dict[str, Any], info: StreamInfo) -> Block:
    e = entry_from_wire(record["entry"])
    audio = np.frombuffer(record["audio"], dtype=np.float32).reshape(info.channels, e.frames).copy()
    return e.to_block(info, audio)

