"""One writer per stream: blocks in, durable work files out (docs/dataset.md, "Durability").

While a stream is open its state lives in ``<stream>/.work/``: ``audio.f32`` (interleaved
float32, each block written at its own sample position, so out-of-order, duplicate and
backfilled blocks all land in place) and ``journal`` (one checksummed record per accepted
block). ``commit`` fsyncs both: that is what "durable" means, and only then is a seq ACKed.
``finalise`` (store/finalise.py) turns the work files into the public files. A writer
re-opened on the same folder (a receiver restart) recovers its state from them; a journal
record damaged on disk is skipped, logged, and reported in ``damage``. Which stream the
folder holds is in ``.work/info.json`` (store/identity.py).

Any OSError from the disk (full, read-only, immutable, I/O error, a failed fsync) becomes
``StorageError`` and marks the writer ``failed``: every later call raises it again, so nothing
not synced is acknowledged. Its owner then calls ``abandon`` (on the thread that also adds,
once no commit is running): nothing buffered is written, and the journal is cut back to what
was last synced, so a new writer on the folder resumes from exactly what is durable.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from sendlearn.capture import Block, Quality, StreamInfo
from sendlearn.capture.ranges import merge_range, range_holding
from sendlearn.files.records import Damage, Journal
from sendlearn.store.errors import InvalidBlocks, InvalidBye, OldJournal, Overlap, StorageError
from sendlearn.store.finalise import finalise
from sendlearn.store.identity import check_same_stream, info_json, read_info, record_info
from sendlearn.store.layout import WORK, fsync_dir, storage, stream_dir, write_fully
from sendlearn.store.record import BlockRecord, block_record, check_version, header_of, record_span

log = logging.getLogger("sendlearn.receiver")

MAX_SPAN = 1 << 24  # seqs a declared drop or a BYE may reach past what has arrived
# block records kept in memory for finalise (3 hours of 512-frame blocks at 48 kHz, ~100 MB);
# a longer stream drops them and finalise reads its journal back, as a reopened folder does
MAX_KEPT_RECORDS = 1 << 20
T = TypeVar("T")


class StreamWriter:
    """A new stream's folder is made only when its first block or BYE arrives (``opened``): a
    HELLO alone leaves nothing on disk and claims nothing (docs/serve.md). A stream with a
    work folder opens it at once, to resume from what is durable."""

    def __init__(self, data_dir: Path, info: StreamInfo, meta: dict[str, Any] | None = None,
                 take: str | None = None, *, max_block_frames: int | None = None,
                 max_seqs_ahead: int = 4096) -> None:
        self.info = info
        self.meta = meta or {}
        self.take = take
        self.dir = stream_dir(data_dir, info.session, info.stream)
        self.work = self.dir / WORK
        self.finalised = False  # the files are released (finalised, closed or abandoned)
        self.failed: str | None = None  # the storage error that stopped this writer
        self.journal: Journal | None = None
        self._audio_fd: int | None = None
        self.through = -1  # every seq <= through is stored or a declared drop
        self._above: set[int] = set()  # stored seqs beyond the watermark
        self._dropped: list[tuple[int, int]] = []  # declared drops: sorted, disjoint
        # stored seqs whose audio is below full quality (only those can be replaced), with their samples
        self._degraded: dict[int, tuple[Quality, int, int]] = {}
        self._samples: list[tuple[int, int]] = []  # sample ranges stored blocks hold: sorted, merged
        self.max_seq = -1
        # frames a block may hold and seqs it may run ahead: together they bound how far its samples reach
        self._max_block = max_block_frames or max(8 * info.block_size, 65536)
        self._max_ahead = max_seqs_ahead
        self.last_seq: int | None = None  # from BYE
        self.sender_stats: dict[str, Any] = {}
        self.end_sample = 0
        self.duplicates = 0
        self.damage: list[dict[str, Any]] = []  # journal stretches lost on disk, with the seqs they held
        # every block record this writer's journal holds, as (header, quality, at), when all were
        # appended by this writer (the journal was empty when it opened); None: read the journal
        self._kept: list[tuple[BlockRecord, Quality, float]] | None = None
        self.opened = False
        if self.work.exists():
            try:
                self.guarded("opening the stream's work files", self._open)
            except StorageError:
                self.abandon()  # nobody else holds this writer yet
                raise

    def _open(self) -> None:
        self.opened = True
        self.work.mkdir(parents=True, exist_ok=True)
        record_info(self.work, self.info, self.meta, self.take)
        recorded = read_info(self.work)
        self.meta, self.take = recorded.get("meta", {}), recorded.get("take")
        self.journal, records, damage = Journal.open_checked(self.work / "journal")
        try:  # before anything is replayed: a work folder in another format is refused whole, and left as it is
            for record in records:
                if record.get("k") == "block":
                    check_version(record, self.work)
        except OldJournal:
            self.journal.abandon()
            self.journal = None
            raise
        self._audio_fd = os.open(self.work / "audio.f32", os.O_RDWR | os.O_CREAT, 0o644)
        for record in records:
            self._replay(record)
        self._record_damage(records, damage)
        self._kept = [] if not records and not damage and not self.journal.torn_bytes else None
        if self.journal.torn_bytes:  # a crash mid-append, or damage at the very end: say so
            log.warning("%s/%s: cut %d bytes off the end of the journal (no intact record in them)",
                        self.info.session, self.info.stream, self.journal.torn_bytes)
        # what WELCOME will call durable must be durable: a crash may have left it only in the page cache
        self._sync()
        fsync_dir(self.work)

    # --- accepting ------------------------------------------------------------------------

    def add(self, blocks: Sequence[Block], quality: Quality = Quality.FLOAT32, *, backfill: bool = False,
            dropped: Sequence[tuple[int, int]] = ()) -> list[int]:
        """Store ``blocks``, whose audio is at ``quality``; ``dropped`` are seq ranges before them
        that the producer lost (recorded as gaps). A seq already stored is ignored unless this
        audio is of a better quality than what is stored, which then replaces it in place
        (``backfill``). Returns the seqs of a backfill, to be acknowledged as backfilled once durable."""
        return self.guarded("writing blocks", lambda: self._add(blocks, quality, backfill, dropped))

    def _add(self, blocks: Sequence[Block], quality: Quality, backfill: bool,
             dropped: Sequence[tuple[int, int]]) -> list[int]:
        if not blocks:
            return []
        journal, audio_fd = self._files()
        first_seq = min(b.seq for b in blocks)
        for first, last in dropped:
            if last >= first_seq or last - first > MAX_SPAN:
                raise InvalidBlocks(f"dropped range {first}..{last} is not a bounded range before seq {first_seq}")
            journal.append({"k": "dropped", "first": first, "last": last})
            self._declare_dropped(first, last)
        duplicates = 0
        run: list[Block] = []  # blocks with audio, each starting where the one before ends: one pwrite
        # their journal records, appended once their audio is written: the journal flushes to its file
        # on its own, and a record there before its audio would make a crash resume over samples
        # never written (a SIGKILL mid-add did: zeros in a resumed render's audio)
        records: list[dict[str, Any]] = []
        for block in blocks:
            if self.last_seq is not None and block.seq > self.last_seq:
                raise InvalidBlocks(f"seq {block.seq} comes after BYE's last seq {self.last_seq}")
            self._check_reach(block)
            seen = self._stored(block.seq)
            if seen and (block.audio is None or quality >= self._stored_quality(block.seq)):
                duplicates += 1  # nothing better than what is on disk
                continue
            self._check_place(block, seen)
            if block.audio is not None:
                if run and run[-1].end_sample != block.start_sample:
                    self._write_run(audio_fd, run)
                    self._append_records(journal, records)
                run.append(block)
            record = block_record(block, quality, seen)
            records.append(record)
            if self._kept is not None:
                self._keep(block, quality, record["at"])
            self._mark(block.seq, block.start_sample, block.end_sample, quality, replaced=seen)
        self._write_run(audio_fd, run)  # before add returns: commit covers all it added
        self._append_records(journal, records)
        if duplicates:
            journal.append({"k": "duplicates", "n": duplicates})
            self.duplicates += duplicates
        return [block.seq for block in blocks] if backfill else []

    @staticmethod
    def _append_records(journal: Journal, records: list[dict[str, Any]]) -> None:
        for record in records:
            journal.append(record)
        records.clear()

    def _keep(self, block: Block, quality: Quality, at: float) -> None:
        kept = self._kept
        assert kept is not None
        if len(kept) >= MAX_KEPT_RECORDS:
            self._kept = None
        else:
            kept.append((header_of(block), quality, at))

    @property
    def kept_records(self) -> list[tuple[BlockRecord, Quality, float]] | None:
        """(header, quality, at) of every block record in the journal, in journal order, when this
        writer appended them all; None when only the journal has them (``finalise`` reads it)."""
        return self._kept

    def _write_run(self, audio_fd: int, run: list[Block]) -> None:
        """Write consecutive blocks' audio interleaved, as audio.f32 and the WAV hold it: the one
        copy the store makes of a block's samples, into one buffer for one pwrite."""
        if not run:
            return
        channels = self.info.channels
        interleaved = np.empty((sum(b.frames for b in run), channels), dtype=np.float32)
        at = 0
        for block in run:  # a channel at a time: numpy copies a (frames, 2) transpose ~2x slower
            rows, audio = interleaved[at:at + block.frames], cast(np.ndarray, block.audio)
            for channel in range(channels):
                rows[:, channel] = audio[channel]
            at += block.frames
        write_fully(audio_fd, interleaved.data, run[0].start_sample * channels * 4)
        run.clear()

    def _check_reach(self, block: Block) -> None:
        """Blocks sit where their seqs say, give or take their sizes: a block may run at most
        ``max_seqs_ahead`` seqs past what is stored or declared dropped, and its samples at most
        that many largest blocks past the stored audio. A block claiming a sample far past that
        would make the audio file that large."""
        known = max(self.through, self.max_seq)
        if block.seq - known > self._max_ahead:
            raise InvalidBlocks(f"block {block.seq} runs {block.seq - known} seqs past seq {known}, the stream's "
                          f"progress (at most {self._max_ahead})")
        reach = self.end_sample + max(1, block.seq - self.max_seq) * self._max_block
        if block.end_sample > reach:
            raise InvalidBlocks(f"block {block.seq} ends at sample {block.end_sample}, beyond sample {reach} "
                          f"({self.end_sample} stored, blocks of at most {self._max_block} frames)")

    def _check_place(self, block: Block, seen: bool) -> None:
        """A block's samples are its own: a backfill replaces its seq's audio exactly, and a new
        block may not overwrite stored audio of other seqs."""
        span = (block.start_sample, block.end_sample)
        if seen:
            stored = self._degraded[block.seq][1:]
            if stored != span:
                raise Overlap(f"backfill of seq {block.seq} covers samples {span[0]}..{span[1]}, not the "
                              f"stored {stored[0]}..{stored[1]}")
            return
        index = bisect.bisect_left(self._samples, (span[1], -1)) - 1
        if index >= 0 and self._samples[index][1] > span[0]:
            raise Overlap(f"block {block.seq} (samples {span[0]}..{span[1]}) overlaps stored blocks' "
                          f"samples {self._samples[index][0]}..{self._samples[index][1]}")

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None,
            dropped: tuple[tuple[int, int], ...] = ()) -> None:
        """The sender produced seqs up to ``last_seq``: what has not arrived is a gap from now on."""
        if last_seq < self.max_seq or last_seq - max(self.through, self.max_seq) > MAX_SPAN:
            raise InvalidBye(f"BYE's last seq {last_seq} does not fit the stream (seq {self.max_seq} arrived)")
        for first, last in dropped:
            if not self.through < first <= last <= last_seq:
                raise InvalidBye(f"BYE's dropped range {first}..{last} is outside the stream's open seqs")

        def record() -> None:
            journal, _ = self._files()
            for first, last in dropped:
                journal.append({"k": "dropped", "first": first, "last": last})
                self._declare_dropped(first, last)
            journal.append({"k": "bye", "last_seq": last_seq, "stats": stats or {}})
            self._declare_bye(last_seq, stats or {})

        self.guarded("writing BYE", record)

    def commit(self) -> int:
        """fsync what was added; returns the seq through which everything is durable (after
        BYE: every seq up to its last, the missing ones recorded as gaps). Safe to run on
        another thread while ``add`` appends: what was added before it began is covered.
        A failed fsync raises StorageError and abandons the writer: a later fsync could
        succeed without the failed pages ever reaching the disk."""
        acknowledgeable = self.acknowledgeable
        self.guarded("syncing blocks to disk", self._sync)
        return acknowledgeable

    def _sync(self) -> None:
        if not self.opened:
            return  # nothing stored yet: nothing on disk to sync
        journal, audio_fd = self._files()
        os.fsync(audio_fd)
        journal.sync()

    def _files(self) -> tuple[Journal, int]:
        """The journal and the audio file's descriptor, opening them for a stream's first write."""
        if not self.opened:
            self._open()
        if self.journal is None or self._audio_fd is None:
            raise StorageError("the stream's work files are closed")
        return self.journal, self._audio_fd

    @property
    def audio_fd(self) -> int:
        """The work audio file (``audio.f32``), open until the files are released."""
        return self._files()[1]

    @property
    def acknowledgeable(self) -> int:
        """The seq through which everything added so far is stored or a recorded gap."""
        return self.through if self.last_seq is None else self.last_seq

    def guarded(self, what: str, work: Callable[[], T]) -> T:
        """``work()``, its OSErrors turned into StorageError; one fails the writer for good."""
        if self.failed is not None:
            raise StorageError(self.failed)
        if self.finalised:
            raise StorageError(f"the stream's files are already released ({what})")
        try:
            with storage(what):
                return work()
        except StorageError as exc:
            self.failed = exc.reason
            log.error("storage failure on %s/%s: %s", self.info.session, self.info.stream, exc.reason)
            raise

    # --- state ----------------------------------------------------------------------------

    def _stored(self, seq: int) -> bool:
        return seq <= self.through or seq in self._above

    def _stored_quality(self, seq: int) -> Quality:
        """The quality a stored seq's audio is at (full unless it arrived degraded)."""
        return self._degraded[seq][0] if seq in self._degraded else Quality.FLOAT32

    def _mark(self, seq: int, start: int, end_sample: int, quality: Quality, replaced: bool) -> None:
        if quality == Quality.FLOAT32:
            self._degraded.pop(seq, None)
        else:
            self._degraded[seq] = (quality, start, end_sample)
        if replaced:
            return
        self.end_sample = max(self.end_sample, end_sample)
        self.max_seq = max(self.max_seq, seq)
        samples = self._samples
        if samples and samples[-1][1] == start:  # most blocks: right after the last stored audio
            samples[-1] = (samples[-1][0], end_sample)
        else:
            merge_range(samples, start, end_sample, touch=0)
        if seq == self.through + 1:  # most blocks: the next seq
            self.through = seq
        else:
            self._above.add(seq)
        self._advance()

    def _declare_dropped(self, first: int, last: int) -> None:
        merge_range(self._dropped, first, last, touch=1)
        self._advance()

    def _declare_bye(self, last_seq: int, stats: dict[str, Any]) -> None:
        self.last_seq = last_seq
        self.sender_stats = stats

    def drop_range_at(self, seq: int) -> tuple[int, int] | None:
        """The declared drop that holds ``seq``, if one does."""
        return range_holding(self._dropped, seq)

    def _advance(self) -> None:
        while True:
            nxt = self.through + 1
            if nxt in self._above:
                self._above.discard(nxt)
                self.through = nxt
            elif (declared := self.drop_range_at(nxt)) is not None:
                self.through = declared[1]  # a whole declared range at once, however long
            else:
                return

    def _replay(self, record: dict[str, Any]) -> None:
        kind = record.get("k")
        if kind == "block":
            seq, start, end = record_span(record)
            self._mark(seq, start, end, Quality(record["quality"]), replaced=self._stored(seq))
        elif kind == "dropped":
            self._declare_dropped(record["first"], record["last"])
        elif kind == "bye":
            self._declare_bye(record["last_seq"], record.get("stats", {}))
        elif kind == "duplicates":
            self.duplicates += record["n"]

    def _record_damage(self, records: list[dict[str, Any]], damage: list[Damage]) -> None:
        """Name the seqs each damaged stretch held: those missing between the block records
        on either side of it (a record may be out of seq order, so this is the best bound)."""
        seqs = [record_span(r)[0] if r.get("k") == "block" else None for r in records]
        for stretch in damage:
            before = [s for s in seqs[:stretch.before] if s is not None]
            after = [s for s in seqs[stretch.before:] if s is not None]
            low = before[-1] + 1 if before else 0
            high = after[0] - 1 if after else max(self.max_seq, low)
            lost = [s for s in range(low, high + 1) if not self._stored(s) and self.drop_range_at(s) is None]
            self.damage.append({"journal_bytes": [stretch.start, stretch.end],
                                "first_seq": lost[0] if lost else None, "last_seq": lost[-1] if lost else None,
                                "blocks_lost": len(lost)})
            log.error("%s/%s: journal damaged at bytes %d..%d; skipped it, blocks lost: %s",
                      self.info.session, self.info.stream, stretch.start, stretch.end,
                      f"{lost[0]}..{lost[-1]}" if lost else "none")

    def damaged(self, seq: int) -> bool:
        return any(d["first_seq"] is not None and d["first_seq"] <= seq <= d["last_seq"] for d in self.damage)

    def check_resume(self, info: StreamInfo, take: str | None) -> None:
        """A HELLO taking over this open writer must be the same stream (and take)."""
        check_same_stream({**info_json(self.info), "take": self.take},
                          {**info_json(info), "take": take})

    # --- finishing ------------------------------------------------------------------------

    def finalise(self, ended: str) -> dict[str, Any]:
        """Write the public files; see ``server.finalise.finalise``."""
        if not self.opened:  # a stream with no block: its (empty) files are still written
            self.guarded("opening the stream's work files", self._open)
        return finalise(self, ended)

    def close(self) -> None:
        """Release files without finalising (the work folder stays for a later resume)."""
        if not self.finalised:
            try:
                self._sync()
            finally:
                self.abandon()

    def abandon(self) -> None:
        """Release the files without writing anything more (after a storage error, the journal
        cut back to its last sync: records after it may never have reached the disk)."""
        self.finalised = True
        if self.journal is not None:
            self.journal.abandon(rollback=self.failed is not None)
        if self._audio_fd is not None:
            fd, self._audio_fd = self._audio_fd, None
            os.close(fd)

