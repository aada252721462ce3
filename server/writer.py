"""One writer per stream: blocks in, a dataset on disk out (docs/dataset.md).

While a stream is open its state lives in ``<stream>/.work/``: ``audio.f32`` (interleaved
float32, each block written at its own sample position, so out-of-order, duplicate and
backfilled blocks all land in place) and ``journal`` (one checksummed record per accepted
block). ``commit`` fsyncs both: that is what "durable" means, and only then is a seq ACKed.
``finalise`` turns the work files into the public files, each written aside and renamed.
A writer re-opened on the same folder (a receiver restart) recovers its state from them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from sendlearn import __version__
from sendlearn.capture import Block, StreamInfo
from sendlearn.transport import BlockEntry, BlocksReceived, Quality
from sendlearn.transport.journal import Journal, read_records
from sendlearn.transport.messages import entry_from_wire, entry_to_wire

from .layout import WORK, fsync_dir, stream_dir, write_aside, write_json
from .tables import StoredBlock, blocks_table, events_table, notes_midi, params_table, write_parquet

AUDIO_CHUNK_FRAMES = 1 << 16
SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command; soundfile has no wrapper for it


MAX_SPAN = 1 << 24  # seqs a declared drop or a BYE may reach past what has arrived


class StreamMismatch(ValueError):
    """A HELLO that disagrees with what is on disk for its stream."""


class Refused(ValueError):
    """Blocks or a BYE the stream cannot take (the connection ends with INVALID_BLOCK)."""


class StreamWriter:
    def __init__(self, data_dir: Path, info: StreamInfo, meta: dict[str, Any] | None = None,
                 take: str | None = None) -> None:
        self.info = info
        self.meta = meta or {}
        self.take = take
        self.dir = stream_dir(data_dir, info.session, info.stream)
        self.work = self.dir / WORK
        self.work.mkdir(parents=True, exist_ok=True)
        self._check_info()
        recorded = json.loads((self.work / "info.json").read_text())
        self.meta, self.take = recorded.get("meta", {}), recorded.get("take")
        self.journal, records = Journal.open(self.work / "journal")
        self._audio_fd = os.open(self.work / "audio.f32", os.O_RDWR | os.O_CREAT, 0o644)
        self.through = -1  # every seq <= through is stored or a declared drop
        self._above: set[int] = set()  # stored seqs beyond the watermark
        self._dropped: list[tuple[int, int]] = []  # declared drops: sorted, disjoint
        self._degraded: dict[int, Quality] = {}  # stored seqs whose audio is below full quality
        self.max_seq = -1
        self._max_block = max(8 * info.block_size, 65536)  # frames a block may hold, for the bound in add()
        self.last_seq: int | None = None  # from BYE
        self.sender_stats: dict[str, Any] = {}
        self.end_sample = 0
        self.duplicates = 0
        for record in records:
            self._replay(record)
        self.finalised = False
        # what WELCOME will call durable must be durable: a crash may have left it only in the page cache
        self.commit()
        fsync_dir(self.work)

    # --- accepting ------------------------------------------------------------------------

    def add(self, received: BlocksReceived) -> list[int]:
        """Store a BLOCK message's blocks. A seq already stored is ignored unless this audio is
        of a better quality than what is stored, which then replaces it in place (backfill).
        Returns the seqs of a backfill message, to be acknowledged as backfilled once durable."""
        first_seq = min(b.seq for b in received.blocks)
        for first, last in received.dropped:
            if last >= first_seq or last - first > MAX_SPAN:
                raise Refused(f"dropped range {first}..{last} is not a bounded range before seq {first_seq}")
            self.journal.append({"k": "dropped", "first": first, "last": last})
            self._declare_dropped(first, last)
        duplicates = 0
        for block in received.blocks:
            if self.last_seq is not None and block.seq > self.last_seq:
                raise Refused(f"seq {block.seq} comes after BYE's last seq {self.last_seq}")
            if block.end_sample > (block.seq + 1) * self._max_block:
                # blocks sit where their seq says, give or take their sizes: a block claiming a
                # sample far past that would make the audio file that large
                raise Refused(f"block {block.seq} starts at sample {block.start_sample}, beyond "
                              f"{block.seq + 1} blocks of at most {self._max_block} frames")
            seen = self._stored(block.seq)
            stored_quality = self._degraded.get(block.seq, Quality.FLOAT32) if seen else None
            if seen and (block.audio is None or received.quality >= stored_quality):
                duplicates += 1  # nothing better than what is on disk
                continue
            if block.audio is not None:
                frame_bytes = self.info.channels * 4
                os.pwrite(self._audio_fd, np.ascontiguousarray(block.audio.T).tobytes(),
                          block.start_sample * frame_bytes)
            self.journal.append(_block_record(block, received.quality, seen))
            self._mark(block.seq, block.end_sample, received.quality, replaced=seen)
        if duplicates:
            self.journal.append({"k": "duplicates", "n": duplicates})
            self.duplicates += duplicates
        return [block.seq for block in received.blocks] if received.backfill else []

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None,
            dropped: tuple[tuple[int, int], ...] = ()) -> None:
        """The sender produced seqs up to ``last_seq``: what has not arrived is a gap from now on."""
        if last_seq < self.max_seq or last_seq - max(self.through, self.max_seq) > MAX_SPAN:
            raise Refused(f"BYE's last seq {last_seq} does not fit the stream (seq {self.max_seq} arrived)")
        for first, last in dropped:
            if not self.through < first <= last <= last_seq:
                raise Refused(f"BYE's dropped range {first}..{last} is outside the stream's open seqs")
            self.journal.append({"k": "dropped", "first": first, "last": last})
            self._declare_dropped(first, last)
        self.journal.append({"k": "bye", "last_seq": last_seq, "stats": stats or {}})
        self._declare_bye(last_seq, stats or {})

    def commit(self) -> int:
        """fsync what was added; returns the seq through which everything is durable (after
        BYE: every seq up to its last, the missing ones recorded as gaps). Safe to run on
        another thread while ``add`` appends: what was added before it began is covered."""
        acknowledgeable = self.acknowledgeable
        os.fsync(self._audio_fd)
        self.journal.sync()
        return acknowledgeable

    @property
    def acknowledgeable(self) -> int:
        """The seq through which everything added so far is stored or a recorded gap."""
        return self.through if self.last_seq is None else self.last_seq

    # --- state ----------------------------------------------------------------------------

    def _stored(self, seq: int) -> bool:
        return seq <= self.through or seq in self._above

    def _mark(self, seq: int, end_sample: int, quality: Quality, replaced: bool) -> None:
        if quality == Quality.FLOAT32:
            self._degraded.pop(seq, None)
        else:
            self._degraded[seq] = quality
        if replaced:
            return
        self.end_sample = max(self.end_sample, end_sample)
        self.max_seq = max(self.max_seq, seq)
        self._above.add(seq)
        self._advance()

    def _declare_dropped(self, first: int, last: int) -> None:
        ranges = sorted([*self._dropped, (first, last)])
        merged: list[tuple[int, int]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._dropped = merged
        self._advance()

    def _declare_bye(self, last_seq: int, stats: dict[str, Any]) -> None:
        self.last_seq = last_seq
        self.sender_stats = stats

    def _drop_range_at(self, seq: int) -> tuple[int, int] | None:
        index = bisect.bisect_right(self._dropped, (seq, float("inf"))) - 1
        if index >= 0 and self._dropped[index][0] <= seq <= self._dropped[index][1]:
            return self._dropped[index]
        return None

    def _advance(self) -> None:
        while True:
            nxt = self.through + 1
            if nxt in self._above:
                self._above.discard(nxt)
                self.through = nxt
            elif (declared := self._drop_range_at(nxt)) is not None:
                self.through = declared[1]  # a whole declared range at once, however long
            else:
                return

    def _replay(self, record: dict[str, Any]) -> None:
        kind = record.get("k")
        if kind == "block":
            entry = entry_from_wire(record["entry"])
            self._mark(entry.seq, entry.start_sample + entry.frames, Quality(record["quality"]),
                       replaced=self._stored(entry.seq))
        elif kind == "dropped":
            self._declare_dropped(record["first"], record["last"])
        elif kind == "bye":
            self._declare_bye(record["last_seq"], record.get("stats", {}))
        elif kind == "duplicates":
            self.duplicates += record["n"]

    def _check_info(self) -> None:
        path = self.work / "info.json"
        mine = {**_info_json(self.info), "meta": self.meta, "take": self.take}
        if path.exists():
            theirs = json.loads(path.read_text())
            if not self.meta:
                mine["meta"] = theirs.get("meta", {})  # a resumed sender need not say it again
            check_same_stream(theirs, mine)
            mine["take"] = theirs.get("take") or self.take
        write_json(path, mine)

    # --- finishing ------------------------------------------------------------------------

    def finalise(self, ended: str) -> dict[str, Any]:
        """Write the public files from what is stored; returns stream.json's content.

        ``ended`` says how the stream ended ("bye", "connection lost", "receiver stopped").
        The work folder is removed once the stream is complete (BYE seen), and kept otherwise
        so a reconnecting sender can resume it.
        """
        self.commit()
        self.journal.close()
        stored, backfill_log = self._load()
        complete = self.last_seq is not None
        gaps = self._gaps(stored)
        audio_name, subtype = self._write_audio(stored)
        write_aside(self.dir / "events.parquet", lambda p: write_parquet(events_table(stored), p))
        write_aside(self.dir / "blocks.parquet", lambda p: write_parquet(blocks_table(stored), p))
        write_aside(self.dir / "params.parquet", lambda p: write_parquet(params_table(stored), p))
        write_aside(self.dir / "notes.mid", lambda p: notes_midi(stored, self.info.sample_rate).save(p))
        summary = {
            **_info_json(self.info),
            "audio": {"file": audio_name, "subtype": subtype, "frames": self.end_sample,
                      "seconds": self.end_sample / self.info.sample_rate},
            "blocks": len(stored),
            "events": sum(len(s.entry.midi) for s in stored),
            "params": sum(len(s.entry.params) for s in stored),
            "first_seq": stored[0].entry.seq if stored else None,
            "last_seq": self.last_seq if self.last_seq is not None else (stored[-1].entry.seq if stored else None),
            "complete": complete,
            "ended": ended,
            "take": self.take,
            "gaps": gaps,
            "duplicates_ignored": self.duplicates,
            "quality": {"history": _quality_runs(stored), "backfills": backfill_log},
            "meta": self.meta,
            "sender": self.sender_stats,
            "checksums": {name: _sha256(self.dir / name)
                          for name in (audio_name, "events.parquet", "blocks.parquet", "params.parquet", "notes.mid")},
            "finalised_at": time.time(),
            "receiver": f"sendlearn {__version__}",
        }
        write_json(self.dir / "stream.json", summary)
        os.close(self._audio_fd)
        self.finalised = True
        if complete:
            shutil.rmtree(self.work, ignore_errors=True)
        return summary

    def close(self) -> None:
        """Release files without finalising (the work folder stays for a later resume)."""
        if not self.finalised:
            self.journal.close()
            os.close(self._audio_fd)
            self.finalised = True

    def _load(self) -> tuple[list[StoredBlock], list[dict[str, Any]]]:
        records, _ = read_records(self.work / "journal")
        latest: dict[int, StoredBlock] = {}
        backfills: list[dict[str, Any]] = []
        for record in records:
            if record.get("k") != "block":
                continue
            entry: BlockEntry = entry_from_wire(record["entry"])
            quality = Quality(record["quality"])
            if entry.seq in latest:
                if quality >= latest[entry.seq].quality:
                    continue  # add() stores a seq again only when its audio is better
                backfills.append({"seq": entry.seq, "from": latest[entry.seq].quality.name,
                                  "to": quality.name, "at": record["at"]})
                latest[entry.seq] = StoredBlock(entry, quality, True)
            else:
                latest[entry.seq] = StoredBlock(entry, quality, False)
        return [latest[seq] for seq in sorted(latest)], _runs_of(backfills)

    def _gaps(self, stored: list[StoredBlock]) -> list[dict[str, Any]]:
        """Runs of seqs up to the last that are not stored, from the stored ones (no walk over
        every seq: a BYE may name a seq far past the last that arrived)."""
        entries = [s.entry for s in stored]
        last = self.last_seq if self.last_seq is not None else (entries[-1].seq if entries else -1)
        gaps = []
        before = None
        for after in [*entries, None]:
            first = before.seq + 1 if before else 0
            end = after.seq - 1 if after else last
            if first <= end:
                gaps.append({
                    "first_seq": first, "last_seq": end,
                    "start_sample": before.start_sample + before.frames if before else 0,
                    "end_sample": after.start_sample if after else None,
                    "reason": self._gap_reason(first, end),
                })
            before = after
        return gaps

    def _gap_reason(self, first: int, last: int) -> str:
        declared = self._drop_range_at(first)
        if declared is not None and declared[1] >= last:
            return "dropped by the sender's audio thread"
        return "never arrived"

    def _write_audio(self, stored: list[StoredBlock]) -> tuple[str, str]:
        qualities = {s.quality for s in stored}
        if Quality.FLOAT32 in qualities or not qualities - {Quality.NONE}:
            name, fmt, subtype = "audio.wav", "WAV", "FLOAT"
        elif Quality.PCM24 in qualities:
            name, fmt, subtype = "audio.flac", "FLAC", "PCM_24"
        else:
            name, fmt, subtype = "audio.flac", "FLAC", "PCM_16"
        channels, frames = self.info.channels, self.end_sample
        os.ftruncate(self._audio_fd, frames * channels * 4)  # unwritten tails read as silence

        def write(tmp: Path) -> None:
            with soundfile.SoundFile(tmp, "w", self.info.sample_rate, channels, subtype, format=fmt) as out:
                if fmt == "WAV":  # no PEAK chunk: it holds a timestamp, and equal data must give equal files
                    soundfile._snd.sf_command(out._file, SFC_SET_ADD_PEAK_CHUNK, soundfile._ffi.NULL, 0)
                for start in range(0, frames, AUDIO_CHUNK_FRAMES):
                    n = min(AUDIO_CHUNK_FRAMES, frames - start)
                    raw = os.pread(self._audio_fd, n * channels * 4, start * channels * 4)
                    out.write(np.frombuffer(raw, dtype="<f4").reshape(n, channels))

        write_aside(self.dir / name, write)
        for other in ("audio.wav", "audio.flac"):
            if other != name:
                (self.dir / other).unlink(missing_ok=True)
        return name, subtype


def check_same_stream(on_disk: dict[str, Any], hello: dict[str, Any]) -> None:
    """A HELLO may resume a stream only with its rate, channels and take (when both name one)."""
    for key in ("sample_rate", "channels"):
        if on_disk.get(key) != hello[key]:
            raise StreamMismatch(f"{key} is {hello[key]} but the stream on disk has {on_disk.get(key)}")
    if on_disk.get("take") and hello.get("take") and on_disk["take"] != hello["take"]:
        raise StreamMismatch(
            f"another take ({on_disk['take']}) of {hello['session']}/{hello['stream']} is on disk; "
            "give this take its own session or stream id")


class CompletedStream:
    """A stream whose sender said BYE and whose files are written: it takes no more blocks and
    is never written again. A sender that reconnects (it missed the last ACK) is told it is all
    durable; one that sends a new take under the same ids is refused."""

    finalised = True

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        self.last_seq = summary["last_seq"] if summary["last_seq"] is not None else -1
        self.through = self.last_seq

    def add(self, received: BlocksReceived) -> list[int]:
        for block in received.blocks:
            if block.seq > self.last_seq:
                raise Refused(f"the stream is complete through seq {self.last_seq}; seq {block.seq} is new")
        return [block.seq for block in received.blocks] if received.backfill else []

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None, dropped: tuple = ()) -> None:
        if last_seq != self.last_seq:
            raise Refused(f"the stream is complete through seq {self.last_seq}, not {last_seq}")

    def commit(self) -> int:
        return self.last_seq

    @property
    def acknowledgeable(self) -> int:
        return self.last_seq

    def finalise(self, ended: str) -> dict[str, Any]:
        return self.summary

    def close(self) -> None:
        pass


def open_stream_writer(data_dir: Path, info: StreamInfo, meta: dict[str, Any] | None = None,
                       take: str | None = None) -> StreamWriter | CompletedStream:
    """The writer for a HELLO: the open stream's (resumed from disk), or a completed one's."""
    folder = stream_dir(data_dir, info.session, info.stream)
    summary_path = folder / "stream.json"
    if summary_path.exists() and not (folder / WORK).exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("complete"):
            check_same_stream(summary, {**_info_json(info), "take": take})
            if not take or not summary.get("take"):
                raise StreamMismatch(f"{info.session}/{info.stream} is complete on disk; "
                                     "give a new take its own session or stream id")
            return CompletedStream(summary)
    return StreamWriter(data_dir, info, meta, take)


def _block_record(block: Block, quality: Quality, backfill: bool) -> dict[str, Any]:
    entry = BlockEntry(block.seq, block.start_sample, block.frames, block.playhead, block.midi,
                       block.params, block.digest)
    return {"k": "block", "quality": int(quality), "backfill": backfill, "at": time.time(),
            "entry": entry_to_wire(entry)}


def _info_json(info: StreamInfo) -> dict[str, Any]:
    return {"session": info.session, "stream": info.stream, "track": info.track, "host": info.host,
            "sample_rate": info.sample_rate, "channels": info.channels, "block_size": info.block_size}


def _quality_runs(stored: list[StoredBlock]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for s in stored:
        if runs and runs[-1]["quality"] == s.quality.name and runs[-1]["last_seq"] == s.entry.seq - 1:
            runs[-1]["last_seq"] = s.entry.seq
        else:
            runs.append({"first_seq": s.entry.seq, "last_seq": s.entry.seq, "quality": s.quality.name})
    return runs


def _runs_of(backfills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for b in backfills:
        last = runs[-1] if runs else None
        if last and last["last_seq"] == b["seq"] - 1 and last["from"] == b["from"] and last["to"] == b["to"]:
            last["last_seq"], last["until"] = b["seq"], b["at"]
        else:
            runs.append({"first_seq": b["seq"], "last_seq": b["seq"], "from": b["from"], "to": b["to"],
                         "at": b["at"], "until": b["at"]})
    return runs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
