"""The whole offline chain (instruments, pedalboard effects, automation, capture, receiver,
writer) at three block sizes gives the same stream but for its block tables: audio bit for bit,
every event, automation row, note and playhead on the same sample.

Real renders through ``sendlearn render --block-size N`` into a data dir per size, read back
through ``sendlearn.dataset``.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import mido
import numpy as np
import pyarrow as pa
import pytest

from midi_files import conductor, seconds_at, timed_track
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset

RATE = 48000

BLOCK_SIZES = (64, 512, 1000)
INVARIANCE_TPB = 480
# 120 bpm, 150 from tick 1001 and 95 from tick 3333 (inside a block at every size); 4/4, 3/4 from
# bar 2, 7/8 from bar 3
INVARIANCE_TEMPOS = [(0, 500_000), (1001, 400_000), (3333, 631_579)]
INVARIANCE_METERS = [(0, 4, 4), (1920, 3, 4), (3360, 7, 8)]
# (sample, param, value) by hand: a point at t s on floor(t * 48000); delay.mix's beat 3 (tick 1440) is
# 1001 ticks at 120 bpm and 439 at 150 bpm = 6761/4800 s = sample 67610
AUTOMATION_ROWS = {
    "keys": [(0, "g.gain_db", 0.0), (0, "reverb.room_size", 0.3), (0, "delay.mix", 0.3), (59256, "g.gain_db", -6.0),
             (67610, "delay.mix", 0.1), (81600, "reverb.room_size", 0.8), (120000, "g.gain_db", 3.0)],
    "lead": [],
    "bass": [(0, "cutoff", 0.2), (48000, "cutoff", 0.2), (48000, "cutoff", 0.8), (144000, "cutoff", 0.3)],
}

INVARIANCE_SESSION = f"""name = "inv"
sample_rate = {RATE}
block_size = 512

[[track]]
name = "keys"
midi = "in.mid"
instrument = {{ faust = "poly_saw", voices = 8 }}
effects = [ {{ pedalboard = "Gain", id = "g", gain_db = 0.0 }}, {{ pedalboard = "Compressor", threshold_db = -18, ratio = 3 }},
            {{ pedalboard = "Chorus" }}, {{ pedalboard = "Delay", delay_seconds = 0.05, feedback = 0.3, mix = 0.3 }},
            {{ pedalboard = "Reverb", room_size = 0.3 }} ]
automation = [ {{ param = "g.gain_db", points = [[0.0, 0.0], [1.2345, 0.0], [1.2345, -6.0], [2.5, -6.0], [2.5, 3.0]] }},
               {{ param = "reverb.room_size", points = [[0.0, 0.3], [1.7, 0.3], [1.7, 0.8]] }},
               {{ param = "delay.mix", unit = "beats", points = [[3, 0.3], [3, 0.1]] }} ]

[[track]]
name = "lead"
midi = "in.mid"
instrument = {{ faust = "hard_attack", voices = 8 }}

[[track]]
name = "bass"
midi = "in.mid"
instrument = {{ faust = "bass", voices = 4 }}
automation = [ {{ param = "cutoff", points = [[0.0, 0.2], [1.0, 0.2], [1.0, 0.8], [3.0, 0.3]] }} ]
"""


def invariance_midi(path: Path) -> Path:
    """~4.4 s: notes at odd ticks (every third ended by a velocity-0 note-on), a CC after each, the
    sustain pedal down over several, pitch bend, aftertouch, poly aftertouch, sysex, a program change."""
    part: list = []
    tick, index = 3, 0
    while tick < 4200:
        note = 40 + (index * 7) % 40
        off = (mido.Message("note_on", note=note, velocity=0) if index % 3 == 0 else
               mido.Message("note_off", note=note))
        part += [(tick, mido.Message("note_on", note=note, velocity=30 + (index * 17) % 97)),
                 (tick + 97 + index % 50, off), (tick + 11, mido.Message("control_change", control=1, value=index))]
        tick += 131 + (index * 37) % 101
        index += 1
    part += [(700, mido.Message("control_change", control=64, value=127)),
             (1500, mido.Message("control_change", control=64, value=0)),
             (2222, mido.Message("pitchwheel", pitch=-4000)), (2300, mido.Message("aftertouch", value=77)),
             (2301, mido.Message("polytouch", note=60, value=33)),
             (2500, mido.Message.from_bytes([0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7])),
             (2600, mido.Message("program_change", program=5)), (4400, mido.MetaMessage("end_of_track"))]
    midi = mido.MidiFile(type=1, ticks_per_beat=INVARIANCE_TPB)
    midi.tracks += [timed_track(conductor(INVARIANCE_TEMPOS, INVARIANCE_METERS)), timed_track(part)]
    midi.save(str(path))
    return path


@pytest.fixture(scope="module")
def at_block_sizes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Dataset]:
    """The session rendered by ``sendlearn render --block-size N`` into a data dir per size, read
    back through ``sendlearn.dataset``."""
    root = tmp_path_factory.mktemp("invariance")
    invariance_midi(root / "in.mid")
    (root / "inv.toml").write_text(INVARIANCE_SESSION)
    datasets = {}
    for size in BLOCK_SIZES:
        data_dir = root / f"data{size}"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["render", str(root / "inv.toml"), "--data-dir", str(data_dir), "--block-size", str(size),
                         "--json"]) == 0
        datasets[size] = Dataset(data_dir)
    return datasets


def without_block_columns(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in ("block_seq", "offset") if c in table.column_names])


PLAYHEAD = ("playing", "recording", "looping", "seconds", "bpm", "ts_num", "ts_den", "ppq", "bar", "beat")


@pytest.mark.parametrize("name", ["keys", "lead", "bass"])
def test_the_offline_chain_writes_the_same_stream_at_any_block_size(at_block_sizes: dict[int, Dataset],
                                                                    name: str) -> None:
    """Faust instruments in DawDreamer, a pedalboard chain with automation steps (keys), capture,
    websocket, receiver, writer: at 64, 512 and 1000 frames a block the same data, but for the
    block tables, which differ just as the block size says."""
    streams = {size: at_block_sizes[size].stream("inv", name) for size in BLOCK_SIZES}
    first = streams[BLOCK_SIZES[0]]
    frames = first.frames
    assert frames == math.floor(seconds_at(4400, INVARIANCE_TEMPOS, INVARIANCE_TPB) * RATE) + 1  # the end of track's sample
    events = without_block_columns(first.events())
    assert events.num_rows > 60 and set(events["kind"].to_pylist()) >= {
        "note_on", "note_off", "control_change", "pitchwheel", "aftertouch", "polytouch", "sysex", "program_change"}
    for size, stream in streams.items():
        assert (stream.frames, stream.sample_rate, stream.channels, stream.block_size) == (frames, RATE, 2, size)
        assert stream.info["complete"] and stream.info["gaps"] == [] and stream.info["meta"] == first.info["meta"]
        audio = stream.audio()
        assert np.array_equal(audio, first.audio())  # bit for bit, instrument automation included
        assert stream.info["checksums"]["audio.wav"] == first.info["checksums"]["audio.wav"]  # the file too
        assert np.abs(audio).max() > 0.01

        # every MIDI message on the same absolute sample, the same bytes; its block is the size's
        assert without_block_columns(stream.events()).equals(events), size
        table = stream.events()
        assert table["block_seq"].to_pylist() == [s // size for s in table["sample"].to_pylist()]
        assert table["offset"].to_pylist() == [s % size for s in table["sample"].to_pylist()]
        # every automation row (the effects' steps, the instrument's points) on its own sample
        assert [(r["sample"], r["param"], r["value"]) for r in stream.params().to_pylist()] == AUTOMATION_ROWS[name]
        assert without_block_columns(stream.params()).equals(without_block_columns(first.params())), size
        assert stream.params()["block_seq"].to_pylist() == [s // size for s in stream.params()["sample"].to_pylist()]
        assert stream.notes().equals(first.notes()), size
        assert [list(track) for track in stream.midi().tracks] == [list(track) for track in first.midi().tracks]
        assert stream.info["checksums"]["notes.mid"] == first.info["checksums"]["notes.mid"]

        # the block tables: ceil(frames / size) blocks of size frames, the last one shorter
        blocks = stream.blocks().to_pydict()
        count = -(-frames // size)
        assert len(blocks["seq"]) == count == stream.info["blocks"]
        assert blocks["seq"] == list(range(count))
        assert blocks["sample"] == list(range(0, frames, size))
        assert blocks["frames"] == [size] * (count - 1) + [frames - (count - 1) * size]

    # the playhead: the same at a block start two grids share, and at every sample in between
    # as the reader places it (to float rounding)
    rows = {size: {r["sample"]: r for r in streams[size].blocks().to_pylist()} for size in BLOCK_SIZES}
    for a, b in ((64, 512), (64, 1000), (512, 1000)):
        shared = sorted(rows[a].keys() & rows[b].keys())
        assert len(shared) == len(range(0, frames, math.lcm(a, b)))
        for sample in shared:
            assert [rows[a][sample][k] for k in PLAYHEAD] == [rows[b][sample][k] for k in PLAYHEAD], sample
    tempo_changes = [math.floor(seconds_at(t, INVARIANCE_TEMPOS, INVARIANCE_TPB) * RATE)
                     for t, _ in INVARIANCE_TEMPOS]
    for sample in sorted(set(range(0, frames, 997)) | set(events["sample"].to_pylist()) | set(tempo_changes)):
        heads = [streams[size].playhead(sample) for size in BLOCK_SIZES]
        for head in heads[1:]:
            assert (head.bar, head.ts_num, head.ts_den, head.bpm, head.playing) == (
                heads[0].bar, heads[0].ts_num, heads[0].ts_den, heads[0].bpm, heads[0].playing), sample
            assert (head.seconds, head.ppq, head.beat) == pytest.approx(
                (heads[0].seconds, heads[0].ppq, heads[0].beat), abs=1e-9), sample


