"""The dataset's tables (docs/dataset.md): schemas, and building them from a stream's blocks.

A "row source" here is the list of accepted BlockEntry values of one stream, in seq order,
each with the quality its audio was finally stored at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mido
import pyarrow as pa
import pyarrow.parquet as pq

from sendlearn.capture import midi_channel, midi_kind
from sendlearn.transport import BlockEntry, Quality

TICKS_PER_BEAT = 960

EVENTS_SCHEMA = pa.schema([
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("block_seq", pa.int64(), nullable=False),
    pa.field("offset", pa.int32(), nullable=False),
    pa.field("data", pa.binary(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("channel", pa.int8()),
    pa.field("timing_error_samples", pa.int32()),
])
BLOCKS_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("playing", pa.bool_(), nullable=False),
    pa.field("recording", pa.bool_(), nullable=False),
    pa.field("looping", pa.bool_(), nullable=False),
    pa.field("seconds", pa.float64(), nullable=False),
    pa.field("bpm", pa.float64(), nullable=False),
    pa.field("ts_num", pa.int16(), nullable=False),
    pa.field("ts_den", pa.int16(), nullable=False),
    pa.field("ppq", pa.float64(), nullable=False),
    pa.field("bar", pa.int32(), nullable=False),
    pa.field("beat", pa.float64(), nullable=False),
    pa.field("quality", pa.string(), nullable=False),
    pa.field("backfilled", pa.bool_(), nullable=False),
    pa.field("digest", pa.uint64(), nullable=False),
])
PARAMS_SCHEMA = pa.schema([
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("block_seq", pa.int64(), nullable=False),
    pa.field("param", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])


@dataclass(frozen=True, slots=True)
class StoredBlock:
    entry: BlockEntry
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
    return pa.table(cols, schema=EVENTS_SCHEMA)


def blocks_table(blocks: list[StoredBlock]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in BLOCKS_SCHEMA.names}
    for stored in blocks:
        e, p = stored.entry, stored.entry.playhead
        for name, value in (("seq", e.seq), ("sample", e.start_sample), ("frames", e.frames),
                            ("playing", p.playing), ("recording", p.recording), ("looping", p.looping),
                            ("seconds", p.seconds), ("bpm", p.bpm), ("ts_num", p.ts_num), ("ts_den", p.ts_den),
                            ("ppq", p.ppq), ("bar", p.bar), ("beat", p.beat), ("quality", stored.quality.name),
                            ("backfilled", stored.backfilled), ("digest", e.digest)):
            cols[name].append(value)
    return pa.table(cols, schema=BLOCKS_SCHEMA)


def params_table(blocks: list[StoredBlock]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in PARAMS_SCHEMA.names}
    for stored in blocks:
        for change in stored.entry.params:
            cols["sample"].append(stored.entry.start_sample + change.offset)
            cols["block_seq"].append(stored.entry.seq)
            cols["param"].append(change.param)
            cols["value"].append(float(change.value))
    return pa.table(cols, schema=PARAMS_SCHEMA)


def write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=65536)


def notes_midi(blocks: list[StoredBlock], sample_rate: int) -> mido.MidiFile:
    """A type-1 MIDI file of the stream: track 0 the tempo/meter map, track 1 the events.

    Ticks come from the playhead (``ppq`` at each block start, advanced at the block's bpm)
    while the transport plays; a stream that never plays is timed by seconds at 120 bpm.
    """
    playing = bool(blocks) and all(b.entry.playhead.playing for b in blocks)
    conductor, notes = mido.MidiTrack(), mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name="tempo map", time=0))
    changes: list[tuple[int, mido.MetaMessage]] = []
    events: list[tuple[int, int, mido.Message]] = []
    last_tempo = last_meter = None
    order = 0
    for stored in blocks:
        e, p = stored.entry, stored.entry.playhead
        bpm = p.bpm if playing else 120.0
        ppq = p.ppq if playing else e.start_sample / sample_rate * 2.0
        tick0 = round(ppq * TICKS_PER_BEAT)
        if playing and p.bpm != last_tempo:
            changes.append((tick0, mido.MetaMessage("set_tempo", tempo=round(60_000_000 / p.bpm))))
            last_tempo = p.bpm
        if playing and (p.ts_num, p.ts_den) != last_meter:
            changes.append((tick0, mido.MetaMessage("time_signature", numerator=p.ts_num, denominator=p.ts_den)))
            last_meter = (p.ts_num, p.ts_den)
        for event in e.midi:
            if event.data[0] in (0xF7,) or event.data[0] > 0xF0:
                continue  # system common/real-time messages have no place in a standard MIDI file
            tick = round((ppq + event.offset / sample_rate * bpm / 60.0) * TICKS_PER_BEAT)
            events.append((tick, order, mido.Message.from_bytes(event.data)))
            order += 1
    if not playing:
        changes.append((0, mido.MetaMessage("set_tempo", tempo=500_000)))
    _append_delta(conductor, [(t, m) for t, m in sorted(changes, key=lambda c: c[0])])
    _append_delta(notes, [(t, m) for t, _, m in sorted(events, key=lambda x: (x[0], x[1]))])
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks += [conductor, notes]
    return midi


def _append_delta(track: mido.MidiTrack, timed: list[tuple[int, mido.Message | mido.MetaMessage]]) -> None:
    now = 0
    for tick, message in timed:
        track.append(message.copy(time=max(0, tick - now)))
        now = max(now, tick)
    track.append(mido.MetaMessage("end_of_track", time=0))
