"""``sendlearn.dataset``'s reader against the files read directly (soundfile, pyarrow) and the
truth worked out by hand from the session's conductor (tests/dataset_session.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile

from dataset_session import RATE, TRACKS, notes, render_session, sample_at
from sendlearn.dataset import BLOCKS_SCHEMA, EVENTS_SCHEMA, PARAMS_SCHEMA, Dataset
from sendlearn.dataset.notes import note_table


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_session(tmp_path_factory.getbasetemp() / "band")


def direct(data_dir: Path, stream: str, name: str) -> pa.Table:
    return pq.read_table(data_dir / "sessions" / "band" / stream / name)


def test_sessions_streams_and_their_facts(data_dir: Path) -> None:
    data = Dataset(data_dir)
    assert data.sessions() == ["band"]
    assert data.streams("band") == sorted(TRACKS)
    for name in TRACKS:
        stream = data.stream("band", name)
        info = soundfile.info(str(stream.audio_path))
        assert (stream.sample_rate, stream.channels, stream.frames) == (RATE, info.channels, info.frames)
        assert stream.state == "complete" and stream.block_size == 512
    assert data.session_frames("band") == max(soundfile.info(str(s.audio_path)).frames for s in data)
    with pytest.raises(KeyError):
        data.stream("band", "nope")


def test_audio_slices_are_the_file_bit_for_bit(data_dir: Path) -> None:
    data = Dataset(data_dir)
    for name in TRACKS:
        stream = data.stream("band", name)
        whole, _ = soundfile.read(str(stream.audio_path), dtype="float32", always_2d=True)
        whole = whole.T
        for start, stop in [(0, 1), (511, 513), (12345, 99999), (0, stream.frames), (stream.frames - 7, stream.frames)]:
            got = stream.audio(start, stop)
            assert got.dtype == np.float32 and got.shape == (stream.channels, stop - start)
            assert got.tobytes() == np.ascontiguousarray(whole[:, start:stop]).tobytes()
        past = stream.audio(stream.frames - 10, stream.frames + 20)  # past the end: zeros, and not valid
        assert past[:, :10].tobytes() == np.ascontiguousarray(whole[:, -10:]).tobytes()
        assert not past[:, 10:].any()
        assert stream.valid(stream.frames - 10, stream.frames + 20).tolist() == [True] * 10 + [False] * 20
        assert stream.valid().all()  # rendered offline: every block at full quality, no gap


def test_tables_in_a_range_are_the_files_rows(data_dir: Path) -> None:
    data = Dataset(data_dir)
    for name in TRACKS:
        stream = data.stream("band", name)
        for file, read, schema in (("events.parquet", stream.events, EVENTS_SCHEMA),
                                   ("blocks.parquet", stream.blocks, BLOCKS_SCHEMA),
                                   ("params.parquet", stream.params, PARAMS_SCHEMA)):
            table = direct(data_dir, name, file)
            assert read().equals(table) and read().schema.equals(schema)
            for start, stop in [(0, 72000), (100000, 250000), (144000, 240000)]:
                inside = table.filter(pc.and_(pc.greater_equal(table["sample"], start),
                                              pc.less(table["sample"], stop)))
                assert read(start, stop).equals(inside)
        ons = [s for s, k in zip(stream.events()["sample"].to_pylist(), stream.events()["kind"].to_pylist(),
                                 strict=True) if k == "note_on"]
        assert ons == [sample_at(on) for on, _, _, _ in notes(name)]  # every note-on on the tempo map's sample
    assert set(data.stream("band", "loud").params()["param"].to_pylist()) == {"cutoff"}


def test_notes_are_the_midi_files_notes(data_dir: Path) -> None:
    data = Dataset(data_dir)
    for name in TRACKS:
        got = data.stream("band", name).notes().to_pylist()
        truth = [{"start": sample_at(on), "end": sample_at(off), "pitch": p, "velocity": v, "channel": 0}
                 for on, off, p, v in notes(name)]
        assert got == truth
        window = data.stream("band", name).notes(144000, 240000)  # nothing sounds in the rest
        assert len(window) == 0


def test_playhead_follows_the_tempo_and_meter_map(data_dir: Path) -> None:
    lead = Dataset(data_dir).stream("band", "lead")
    for row in lead.blocks().to_pylist()[::37]:  # at block starts it is the block's playhead, exactly
        p = lead.playhead(row["sample"])
        assert (p.seconds, p.ppq, p.bpm, p.ts_num, p.ts_den, p.bar, p.beat) == (
            row["seconds"], row["ppq"], row["bpm"], row["ts_num"], row["ts_den"], row["bar"], row["beat"])
    # by hand: 120 bpm to 1.5 s (ppq 3), then 150 bpm; 4/4 bar 1, 3/4 bars 2-3, 6/8 from bar 4 (ppq 10)
    for seconds, ppq, bpm, meter, bar, beat in [(1.0, 2.0, 120.0, (4, 4), 1, 3.0), (4.0, 9.25, 150.0, (3, 4), 3, 3.25),
                                                (7.0, 16.75, 150.0, (6, 8), 6, 2.5)]:
        p = lead.playhead(round(seconds * RATE))
        assert p.ppq == pytest.approx(ppq, abs=1e-6) and p.bpm == pytest.approx(bpm, rel=1e-9)
        assert ((p.ts_num, p.ts_den), p.bar) == (meter, bar) and p.beat == pytest.approx(beat, abs=1e-6)
        assert p.seconds == pytest.approx(seconds, abs=1e-9) and p.playing


def test_validity_mask_marks_gaps_and_degraded_audio(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "band" / "lead"
    shutil.copytree(data_dir / "sessions" / "band" / "lead", folder)
    blocks = pq.read_table(folder / "blocks.parquet").to_pylist()
    for row in blocks:  # plant: seq 10-12 never arrived, 20 stored mono half-rate, 30 without audio
        row["quality"] = {20: "REDUCED", 30: "NONE"}.get(row["seq"], row["quality"])
    blocks = [row for row in blocks if not 10 <= row["seq"] <= 12]
    pq.write_table(pa.Table.from_pylist(blocks, schema=BLOCKS_SCHEMA), folder / "blocks.parquet")
    stream = Dataset(tmp_path).stream("band", "lead")
    bad = {s for seq in (10, 11, 12, 20, 30) for s in range(seq * 512, seq * 512 + 512)}
    assert np.flatnonzero(~stream.valid()).tolist() == sorted(bad)
    assert stream.valid(5000, 6000).tolist() == [s not in bad for s in range(5000, 6000)]


def test_notes_apply_the_sustain_pedal_and_retriggers() -> None:
    on, off = lambda p, v=100: bytes([0x90, p, v]), lambda p: bytes([0x80, p, 0])  # noqa: E731
    pedal = lambda down: bytes([0xB0, 64, 127 if down else 0])  # noqa: E731
    events = [(0, on(60)), (10, pedal(True)), (20, off(60)), (30, on(62)), (40, on(62, 0)), (50, pedal(False)),
              (60, on(64)), (70, on(64, 90)), (80, off(64)), (90, on(65))]
    table = note_table([s for s, _ in events], [d for _, d in events], end=200)
    assert [(r["pitch"], r["start"], r["end"], r["velocity"]) for r in table.to_pylist()] == [
        (60, 0, 50, 100), (62, 30, 50, 100), (64, 60, 70, 100), (64, 70, 80, 90), (65, 90, 200, 100)]


def test_the_writer_writes_the_readers_schemas(data_dir: Path) -> None:
    """One definition serves both ends (store/tables.py imports it); the files on disk carry it."""
    for stream in Dataset(data_dir).streams("band"):
        folder = data_dir / "sessions" / "band" / stream
        for name, schema in (("events", EVENTS_SCHEMA), ("blocks", BLOCKS_SCHEMA), ("params", PARAMS_SCHEMA)):
            assert pq.read_schema(folder / f"{name}.parquet").remove_metadata().equals(schema), (stream, name)
