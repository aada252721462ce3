"""One writer per stream: blocks in, a dataset on disk out (docs/dataset.md).

While a stream is open its state lives in ``<stream>/.work/``: ``audio.f32`` (interleaved
float32, each block written at its own sample position, so out-of-order, duplicate and
backfilled blocks all land in place) and ``journal`` (one checksummed record per accepted
block). ``commit`` fsyncs both: that is what "durable" means, and only then is a seq ACKed.
``finalise`` turns the work files into the public files, each written aside and renamed.
A writer re-opened on the same folder (a receiver restart) recovers its state from them.
"""

from __future__ import annotations

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

from .layout import WORK, stream_dir, write_aside, write_json
from .tables import StoredBlock, blocks_table, events_table, notes_midi, params_table, write_parquet

AUDIO_CHUNK_FRAMES = 1 << 16
SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command; soundfile has no wrapper for it


class StreamMismatch(ValueError):
    """A HELLO that disagrees with what is on disk for its stream."""


class StreamWriter:
    def __init__(self, data_dir: Path, info: StreamInfo, meta: dict[str, Any] | None = None) -> None:
        self.info = info
        self.meta = meta or {}
        self.dir = stream_dir(data_dir, info.session, info.stream)
        self.work = self.dir / WORK
        self.work.mkdir(parents=True, exist_ok=True)
        self._check_info()
        self.meta = json.loads((self.work / "info.json").read_text()).get("meta", {})
        self.journal, records = Journal.open(self.work / "journal")
        self._audio_fd = os.open(self.work / "audio.f32", os.O_RDWR | os.O_CREAT, 0o644)
        self.through = -1  # every seq <= through is stored or a declared drop
        self._above: set[int] = set()  # stored seqs beyond the watermark
        self._dropped: list[tuple[int, int]] = []
        self.last_seq: int | None = None  # from BYE
        self.sender_stats: dict[str, Any] = {}
        self.end_sample = 0
        self.blocks = self.duplicates = self.backfills = self.events = 0
        for record in records:
            self._replay(record)
        self.finalised = False

    # --- accepting ------------------------------------------------------------------------

    def add(self, received: BlocksReceived) -> list[int]:
        """Store a BLOCK message's blocks. Duplicates by seq are ignored; backfill replaces audio.
        Returns the seqs of a backfill message, to be acknowledged as backfilled once durable."""
        for first, last in received.dropped:
            self.journal.append({"k": "dropped", "first": first, "last": last})
            self._declare_dropped(first, last)
        for block in received.blocks:
            seen = self._stored(block.seq)
            if seen and not (received.backfill and block.audio is not None):
                self.duplicates += 1
                continue
            if block.audio is not None:
                frame_bytes = self.info.channels * 4
                os.pwrite(self._audio_fd, np.ascontiguousarray(block.audio.T).tobytes(),
                          block.start_sample * frame_bytes)
            self.journal.append(_block_record(block, received.quality, seen and received.backfill))
            self._mark(block.seq, block.end_sample, len(block.midi), backfill=seen)
        return [block.seq for block in received.blocks] if received.backfill else []

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None) -> None:
        self.journal.append({"k": "bye", "last_seq": last_seq, "stats": stats or {}})
        self._declare_bye(last_seq, stats or {})

    def commit(self) -> int:
        """fsync what was added; returns the seq through which everything is durable."""
        os.fsync(self._audio_fd)
        self.journal.sync()
        return self.through

    # --- state ----------------------------------------------------------------------------

    def _stored(self, seq: int) -> bool:
        return seq <= self.through or seq in self._above

    def _mark(self, seq: int, end_sample: int, events: int, backfill: bool) -> None:
        if backfill:
            self.backfills += 1
            return
        self.blocks += 1
        self.events += events
        self.end_sample = max(self.end_sample, end_sample)
        self._above.add(seq)
        self._advance()

    def _declare_dropped(self, first: int, last: int) -> None:
        self._dropped.append((first, last))
        self._advance()

    def _declare_bye(self, last_seq: int, stats: dict[str, Any]) -> None:
        self.last_seq = last_seq
        self.sender_stats = stats

    def _is_dropped(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self._dropped)

    def _advance(self) -> None:
        while True:
            nxt = self.through + 1
            if nxt in self._above:
                self._above.discard(nxt)
            elif not self._is_dropped(nxt):
                return
            self.through = nxt
        # dropped ranges wholly behind the watermark are no longer needed to move it

    def _replay(self, record: dict[str, Any]) -> None:
        kind = record.get("k")
        if kind == "block":
            entry = entry_from_wire(record["entry"])
            self._mark(entry.seq, entry.start_sample + entry.frames, len(entry.midi),
                       backfill=record["backfill"] or self._stored(entry.seq))
        elif kind == "dropped":
            self._declare_dropped(record["first"], record["last"])
        elif kind == "bye":
            self._declare_bye(record["last_seq"], record.get("stats", {}))

    def _check_info(self) -> None:
        path = self.work / "info.json"
        mine = {**_info_json(self.info), "meta": self.meta}
        if path.exists():
            theirs = json.loads(path.read_text())
            if not self.meta:
                mine["meta"] = theirs.get("meta", {})  # a resumed sender need not say it again
            for key in ("sample_rate", "channels"):
                if theirs.get(key) != mine[key]:
                    raise StreamMismatch(
                        f"{key} is {mine[key]} but the stream on disk has {theirs.get(key)}")
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
                if not record["backfill"] or latest[entry.seq].quality == quality:
                    continue  # a duplicate, or the same audio again (a resumed sender's backfill)
                backfills.append({"seq": entry.seq, "from": latest[entry.seq].quality.name,
                                  "to": quality.name, "at": record["at"]})
                latest[entry.seq] = StoredBlock(entry, quality, True)
            else:
                latest[entry.seq] = StoredBlock(entry, quality, False)
        return [latest[seq] for seq in sorted(latest)], _runs_of(backfills)

    def _gaps(self, stored: list[StoredBlock]) -> list[dict[str, Any]]:
        by_seq = {s.entry.seq: s.entry for s in stored}
        last = self.last_seq if self.last_seq is not None else (max(by_seq) if by_seq else -1)
        gaps = []
        seq = 0
        while seq <= last:
            if seq in by_seq:
                seq += 1
                continue
            first = seq
            while seq <= last and seq not in by_seq:
                seq += 1
            before = by_seq.get(first - 1)
            after = by_seq.get(seq)
            dropped = all(self._is_dropped(s) for s in range(first, seq))
            gaps.append({
                "first_seq": first, "last_seq": seq - 1,
                "start_sample": before.start_sample + before.frames if before else 0,
                "end_sample": after.start_sample if after else None,
                "reason": "dropped by the sender's audio thread" if dropped else "never arrived",
            })
        return gaps

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
