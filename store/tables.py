"""The dataset's tables (docs/dataset.md): schemas, and building them from a stream's blocks.

A "row source" here is the list of accepted block records (``store.record``) of one stream, in seq order,
each with the quality its audio was finally stored at.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import mido
import pyarrow as pa
import pyarrow.parquet as pq

from sendlearn.capture import Playhead, Quality, midi_channel, midi_kind
from sendlearn.capture.midi import delta_track
from sendlearn.dataset.schema import BLOCKS_SCHEMA, EVENTS_SCHEMA, PARAMS_SCHEMA, stamp
from sendlearn.store.columns import arrow_table
from sendlearn.store.record import BlockRecord

TICKS_PER_BEAT = 960

# The schemas are the reader's (sendlearn.dataset.schema): one definition for what is written and read.


class StoredBlock(NamedTuple):  # a named tuple: one per block, made at a fifth of a frozen dataclass's cost
    entry: BlockRecord
    quality: Quality
    backfilled: bool


def events_table(blocks: list[StoredBlock]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in EVENTS_SCHEMA.names}
    for stored in blocks:
        e = stored.entry
        for event in e.midi:
            cols["sample"].append(e.start_sample + event.offset)
            cols["block_seq"].append(e.seq)
            cols["offset"].append(event.offset)
            cols["data"].append(event.data)
            cols["kind"].append(midi_kind(event.data))
            cols["channel"].append(midi_channel(event.data))
            cols["timing_error_samples"].append(event.timing_error)
    return arrow_table(cols, EVENTS_SCHEMA)


def blocks_table(blocks: list[StoredBlock]) -> pa.Table:
    # column by column: one comprehension per column, not a dict append per cell (112k blocks in 20 minutes)
    entries = [stored.entry for stored in blocks]
    heads = [e.playhead for e in entries]
    cols: dict[str, list] = {
        "seq": [e.seq for e in entries], "sample": [e.start_sample for e in entries],
        "frames": [e.frames for e in entries], "playing": [p.playing for p in heads],
        "recording": [p.recording for p in heads], "looping": [p.looping for p in heads],
        "seconds": [p.seconds for p in heads], "bpm": [p.bpm for p in heads], "ts_num": [p.ts_num for p in heads],
        "ts_den": [p.ts_den for p in heads], "ppq": [p.ppq for p in heads], "bar": [p.bar for p in heads],
        "beat": [p.beat for p in heads], "quality": [stored.quality.name for stored in blocks],
        "backfilled": [stored.backfilled for stored in blocks], "digest": [e.digest for e in entries],
    }
    return arrow_table(cols, BLOCKS_SCHEMA)


def params_table(blocks: list[StoredBlock]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in PARAMS_SCHEMA.names}
    for stored in blocks:
        for change in stored.entry.params:
            cols["sample"].append(stored.entry.start_sample + change.offset)
            cols["block_seq"].append(stored.entry.seq)
            cols["param"].append(change.param)
            cols["value"].append(float(change.value))
    return arrow_table(cols, PARAMS_SCHEMA)


def write_parquet(table: pa.Table, path: Path) -> None:
    """``table`` at ``path``, its schema stamped with the dataset's format version."""
    pq.write_table(stamp(table), path, compression="zstd", row_group_size=65536)


def notes_midi(blocks: list[StoredBlock], sample_rate: int) -> mido.MidiFile:
    """A type-1 MIDI file of the stream: track 0 the tempo/meter map, track 1 the events.

    Ticks come from the playhead while the transport plays: each block's ``ppq`` at its first
    sample, advanced at its ``bpm``. A tempo change that falls inside a block is found from the
    two blocks' playheads (where the old and new tempo meet the next block's ``ppq``) and the
    block's later events are timed at the new tempo; a meter change is put on its bar line. A
    stream that never plays is timed by seconds at 120 bpm.
    """
    playing = bool(blocks) and all(b.entry.playhead.playing for b in blocks)
    changes: list[tuple[int, mido.MetaMessage]] = []
    events: list[tuple[int, int, bytes]] = []
    order = 0
    last_meter = None
    split: float  # where in a block its tempo changes (frames)
    for index, stored in enumerate(blocks):
        e, p = stored.entry, stored.entry.playhead
        if not playing:
            ppq0, bpm, split, bpm_after = e.start_sample / sample_rate * 2.0, 120.0, e.frames, 120.0
        else:
            ppq0, bpm = p.ppq, p.bpm
            after = blocks[index + 1].entry.playhead if index + 1 < len(blocks) else None
            split, bpm_after = _tempo_change(e.frames, sample_rate, p, after)
            if index == 0:
                changes.append((round(ppq0 * TICKS_PER_BEAT), _tempo(bpm)))
            if bpm_after != bpm:
                changes.append((round(_ppq(ppq0, bpm, split, sample_rate) * TICKS_PER_BEAT), _tempo(bpm_after)))
            if (p.ts_num, p.ts_den) != last_meter:
                bar_start = p.ppq - (p.beat - 1.0) * 4.0 / p.ts_den
                changes.append((max(0, round(bar_start * TICKS_PER_BEAT)), mido.MetaMessage(
                    "time_signature", numerator=p.ts_num, denominator=p.ts_den)))
                last_meter = (p.ts_num, p.ts_den)
        for event in e.midi:
            if event.data[0] > 0xF0:
                continue  # system common/real-time messages have no place in a standard MIDI file
            if event.offset < split:
                ppq = _ppq(ppq0, bpm, event.offset, sample_rate)
            else:
                ppq = _ppq(_ppq(ppq0, bpm, split, sample_rate), bpm_after, event.offset - split, sample_rate)
            events.append((round(ppq * TICKS_PER_BEAT), order, event.data))
            order += 1
    if not playing:
        changes.append((0, _tempo(120.0)))
    conductor = mido.MidiTrack([mido.MetaMessage("track_name", name="tempo map", time=0)])
    conductor += delta_track(sorted(changes, key=lambda c: c[0]))
    notes = _notes_track(sorted(events, key=lambda x: (x[0], x[1])))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks += [conductor, notes]
    return midi


def _notes_track(events: list[tuple[int, int, bytes]]) -> mido.MidiTrack:
    """``delta_track`` of the events, each message made once with its delta time (a copy per
    message, as ``delta_track`` makes to keep its caller's messages, is most of notes.mid's cost)."""
    track = mido.MidiTrack()
    now = 0
    for tick, _, data in events:
        track.append(mido.Message.from_bytes(data, time=max(0, tick - now)))
        now = max(now, tick)
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _ppq(ppq: float, bpm: float, frames: float, sample_rate: int) -> float:
    return ppq + frames / sample_rate * bpm / 60.0


def _tempo(bpm: float) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=round(60_000_000 / bpm))


def _tempo_change(frames: int, sample_rate: int, now: Playhead, after: Playhead | None) -> tuple[float, float]:
    """Where inside a block of ``frames`` the tempo becomes the next block's, and that tempo.

    The block starts at ``now.ppq`` at ``now.bpm`` and the next one at ``after.ppq``: the change
    is at the ``x`` where ``now.ppq + x·bpm/60/sr + (frames − x)·bpm_after/60/sr = after.ppq``.
    A jump in ``ppq`` (a locate, a loop) does not fit inside the block: then the change is at
    the next block's start.
    """
    if after is None or after.bpm == now.bpm:
        return float(frames), now.bpm
    span = after.ppq - now.ppq - frames / sample_rate * after.bpm / 60.0
    x = span * 60.0 * sample_rate / (now.bpm - after.bpm)
    if -0.5 <= x <= frames + 0.5:
        return min(max(x, 0.0), float(frames)), after.bpm
    return float(frames), after.bpm
