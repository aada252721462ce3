"""A stream's public files, written from its work files (docs/dataset.md).

Each file is written aside and renamed into place, ``stream.json`` last; the work folder is
removed only after that, when the stream is complete. Audio goes to a float32 WAV when any
block arrived at full quality, else to FLAC at the best integer depth that arrived — or, for
more than 8 channels (FLAC's limit), to a WAV at that depth.
"""

from __future__ import annotations

import errno
import hashlib
import operator
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile

from sendlearn import __version__
from sendlearn.capture import Quality
from sendlearn.capture.quality import FLAC_MAX_CHANNELS
from sendlearn.capture.ranges import runs
from sendlearn.capture.tempo import settle_blocks
from sendlearn.dataset.schema import AudioFile, Backfill, Damage, Gap, QualityRun, StreamSummary
from sendlearn.files.records import read_records
from sendlearn.store.identity import info_json
from sendlearn.store.layout import write_aside, write_json
from sendlearn.store.record import BlockRecord, check_version, read_block
from sendlearn.store.tables import StoredBlock, blocks_table, events_table, notes_midi, params_table, write_parquet

if TYPE_CHECKING:
    from sendlearn.store.writer import StreamWriter

AUDIO_CHUNK_FRAMES = 1 << 16
SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command; soundfile has no wrapper for it
PUBLIC_FILES = ("events.parquet", "blocks.parquet", "params.parquet", "notes.mid")


def finalise(writer: StreamWriter, ended: str) -> dict[str, Any]:
    """Write the public files from what ``writer`` stored; returns stream.json's content.

    ``ended`` says how the stream ended ("bye", "connection lost", "receiver stopped").
    The work folder is removed once the stream is complete (BYE seen), and kept otherwise
    so a reconnecting sender can resume it. Raises StorageError (the writer abandoned).
    """
    writer.commit()
    return writer.guarded("writing the dataset files", lambda: _finalise(writer, ended))


def _finalise(writer: StreamWriter, ended: str) -> dict[str, Any]:
    folder, info = writer.dir, writer.info
    remove_stale_temporaries(folder)
    kept = writer.kept_records
    stored, backfill_log = _load(_journal_headers(writer.work / "journal") if kept is None else kept)
    stored = _settle_tempo(stored, writer.sender_stats)
    complete = writer.last_seq is not None
    # the audio file is copied and hashed on a second thread (file I/O, libsndfile and sha256 let
    # go of the GIL) while this one builds the tables; leaving the block waits for it either way
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlearn-finalise-audio") as audio_thread:
        audio = audio_thread.submit(_write_audio_and_hash, writer, stored)
        write_aside(folder / "events.parquet", lambda p: write_parquet(events_table(stored), p))
        write_aside(folder / "blocks.parquet", lambda p: write_parquet(blocks_table(stored), p))
        write_aside(folder / "params.parquet", lambda p: write_parquet(params_table(stored), p))
        write_aside(folder / "notes.mid", lambda p: notes_midi(stored, info.sample_rate).save(p))
        tables = {name: _sha256(folder / name) for name in PUBLIC_FILES}
        audio_name, subtype, audio_sha256 = audio.result()
    summary = StreamSummary(
        **info_json(info),
        audio=AudioFile(audio_name, subtype, writer.end_sample, writer.end_sample / info.sample_rate),
        blocks=len(stored),
        events=sum(len(s.entry.midi) for s in stored),
        params=sum(len(s.entry.params) for s in stored),
        first_seq=stored[0].entry.seq if stored else None,
        last_seq=writer.last_seq if writer.last_seq is not None else (stored[-1].entry.seq if stored else None),
        complete=complete,
        ended=ended,
        take=writer.take,
        gaps=tuple(map(Gap.from_json, _gaps(writer, stored))),
        damage=tuple(map(Damage.from_json, writer.damage)),
        duplicates_ignored=writer.duplicates,
        history=tuple(map(QualityRun.from_json, _quality_runs(stored))),
        backfills=tuple(map(Backfill.from_json, backfill_log)),
        meta=writer.meta,
        sender=writer.sender_stats,
        checksums={audio_name: audio_sha256, **tables},
        finalised_at=time.time(),
        receiver=f"sendlearn {__version__}",
    ).to_json()
    write_json(folder / "stream.json", summary)
    writer.close()
    if complete:
        shutil.rmtree(writer.work, ignore_errors=True)
    return summary


def _settle_tempo(stored: list[StoredBlock], figures: dict[str, Any]) -> list[StoredBlock]:
    """Blocks a live capture stored before it knew its timebase master's tempo unit (stored as the
    master published them: ``tempo_provisional``) put in quarter notes, as every other block is
    (capture/tempo.py). The journal keeps what was published, so finalising again settles again
    from the same source: never twice over."""
    if not figures.get("tempo_provisional") or not stored:
        return stored
    heads = [s.entry.playhead for s in stored]
    settled = settle_blocks([s.entry.start_sample for s in stored], [h.bpm for h in heads],
                            [h.ts_num for h in heads], [h.ts_den for h in heads], [h.bar for h in heads],
                            [h.beat for h in heads], [h.ppq for h in heads], figures)
    return [s if (bpm, beat, ppq) == (h.bpm, h.beat, h.ppq) else
            s._replace(entry=s.entry._replace(playhead=replace(h, bpm=bpm, beat=beat, ppq=ppq)))
            for s, h, bpm, beat, ppq in zip(stored, heads, settled.bpm, settled.beat, settled.ppq, strict=True)]


def remove_stale_temporaries(folder: Path) -> None:
    """Files a crash left while being written aside (write_aside's ``.NAME.*.tmp``)."""
    for name in ("audio.wav", "audio.flac", *PUBLIC_FILES, "stream.json"):
        for stale in folder.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _journal_headers(journal: Path) -> Iterator[tuple[BlockRecord, Quality, float]]:
    """(header, quality, at) of each block record in ``journal``, in its order."""
    records, _ = read_records(journal)  # skips a damaged record, as the writer did when it opened
    for record in records:
        if record.get("k") != "block":
            continue
        check_version(record, journal.parent)
        yield read_block(record), Quality(record["quality"]), record["at"]


def _load(headers: Iterable[tuple[BlockRecord, Quality, float]]) -> tuple[list[StoredBlock], list[dict[str, Any]]]:
    """The stored block of each seq (the best quality that arrived) and the backfills, from the
    journal's block records: read back from disk, or kept by the writer that appended them all."""
    if isinstance(headers, list):  # the writer's kept records: most often every seq once, in order
        seqs = [entry.seq for entry, _, _ in headers]
        if all(map(operator.lt, seqs, seqs[1:])):  # then none was stored twice: no backfill to pick
            return [StoredBlock(entry, quality, False) for entry, quality, _ in headers], []
    latest: dict[int, StoredBlock] = {}
    backfills: list[dict[str, Any]] = []
    for entry, quality, at in headers:
        if entry.seq in latest:
            if quality >= latest[entry.seq].quality:
                continue  # add() stores a seq again only when its audio is better
            backfills.append({"seq": entry.seq, "from": latest[entry.seq].quality.name,
                              "to": quality.name, "at": at})
            latest[entry.seq] = StoredBlock(entry, quality, True)
        else:
            latest[entry.seq] = StoredBlock(entry, quality, False)
    return [latest[seq] for seq in sorted(latest)], _runs_of(backfills)


def _gaps(writer: StreamWriter, stored: list[StoredBlock]) -> list[dict[str, Any]]:
    """Runs of seqs up to the last that are not stored, from the stored ones (no walk over
    every seq: a BYE may name a seq far past the last that arrived)."""
    entries = [s.entry for s in stored]
    last = writer.last_seq if writer.last_seq is not None else (entries[-1].seq if entries else -1)
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
                "reason": _gap_reason(writer, first, end),
            })
        before = after
    return gaps


def _gap_reason(writer: StreamWriter, first: int, last: int) -> str:
    declared = writer.drop_range_at(first)
    if declared is not None and declared[1] >= last:
        return "dropped by the sender's audio thread"
    if writer.damaged(first):
        return "damaged on the receiver's disk (journal)"
    return "never arrived"


def audio_format(qualities: set[Quality], channels: int) -> tuple[str, str, str]:
    """(file name, format, subtype) for a stream whose blocks were stored at ``qualities``."""
    if Quality.FLOAT32 in qualities or not qualities - {Quality.NONE}:
        return "audio.wav", "WAV", "FLOAT"
    subtype = "PCM_24" if Quality.PCM24 in qualities else "PCM_16"
    if channels > FLAC_MAX_CHANNELS:
        return "audio.wav", "WAV", subtype  # FLAC holds at most 8 channels: the same depth in a WAV
    return "audio.flac", "FLAC", subtype


def _write_audio_and_hash(writer: StreamWriter, stored: list[StoredBlock]) -> tuple[str, str, str]:
    """(file name, subtype, sha256) of the stream's audio file, written."""
    name, subtype = _write_audio(writer, stored)
    return name, subtype, _sha256(writer.dir / name)


def _write_audio(writer: StreamWriter, stored: list[StoredBlock]) -> tuple[str, str]:
    name, fmt, subtype = audio_format({s.quality for s in stored}, writer.info.channels)
    channels, frames, fd = writer.info.channels, writer.end_sample, writer.audio_fd
    os.ftruncate(fd, frames * channels * 4)  # unwritten tails read as silence

    def write(tmp: Path) -> None:
        with soundfile.SoundFile(tmp, "w", writer.info.sample_rate, channels, subtype, format=fmt) as out:
            if fmt == "WAV":  # no PEAK chunk: it holds a timestamp, and equal data must give equal files
                soundfile._snd.sf_command(out._file, SFC_SET_ADD_PEAK_CHUNK, soundfile._ffi.NULL, 0)
            for start in range(0, frames, AUDIO_CHUNK_FRAMES):
                n = min(AUDIO_CHUNK_FRAMES, frames - start)
                raw = os.pread(fd, n * channels * 4, start * channels * 4)
                out.write(np.frombuffer(raw, dtype="<f4").reshape(n, channels))

    try:
        write_aside(writer.dir / name, write)
    except soundfile.SoundFileError as exc:  # libsndfile says only "System error." of a full disk
        raise _audio_write_error(writer.dir, frames * channels * 4, exc) from exc
    for other in ("audio.wav", "audio.flac"):
        if other != name:
            (writer.dir / other).unlink(missing_ok=True)
    return name, subtype


def _audio_write_error(folder: Path, samples_bytes: int, exc: Exception) -> OSError:
    """An OSError (``storage`` names it) for libsndfile's failure to write the audio file: the
    disk is full when it has less room than the samples take (float32; an upper bound for the
    PCM and FLAC files), otherwise libsndfile's own words."""
    disk = os.statvfs(folder)
    free = disk.f_bavail * disk.f_frsize
    if free < samples_bytes:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: the audio file needs up to "
                                     f"{samples_bytes} bytes, {free} are free in {folder}")
    return OSError(errno.EIO, f"libsndfile could not write the audio file in {folder}: {exc}")


def _quality_runs(stored: list[StoredBlock]) -> list[dict[str, Any]]:
    """Runs of consecutive seqs stored at one quality."""
    return [{"first_seq": first.entry.seq, "last_seq": last.entry.seq, "quality": first.quality.name}
            for first, last in runs(stored, lambda s: s.entry.seq, lambda s: s.quality)]


def _runs_of(backfills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of consecutive seqs backfilled from one quality to another: when the first and the last was."""
    return [{"first_seq": first["seq"], "last_seq": last["seq"], "from": first["from"], "to": first["to"],
             "at": first["at"], "until": last["at"]}
            for first, last in runs(backfills, lambda b: b["seq"], lambda b: (b["from"], b["to"]))]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
