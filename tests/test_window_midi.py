"""A Standard MIDI File per window, ``midi_notes`` and a top-level ``mfcc`` in every export (issue 22,
parts 2 and 4), on real renders (tests/export_session.py): the files read back by mido, pretty_midi and
symusic, each through its own tempo map, against the notes ``sendlearn.dataset`` pairs."""

from __future__ import annotations

import contextlib
import io
import json
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pytest

from dataset_session import METERS, TEMPOS, TPB
from export_session import make_data, truth
from sendlearn.cli.main import main
from sendlearn.dataset.window_midi import TICKS_PER_QUARTER, window_midi
from sendlearn.dataset.windows import Window


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("window-midi"))


def clipped_notes(window: Window, stream: str) -> np.ndarray:
    """(N, 4) pitch, velocity, start, end of the notes the reader pairs, clipped to the window."""
    notes = window.notes(stream)
    start = np.clip(notes["start"].to_numpy(), 0, window.frames)
    end = np.clip(notes["end"].to_numpy(), 0, window.frames)
    return np.stack([notes["pitch"].to_numpy(), notes["velocity"].to_numpy(), start, end], axis=1).astype(np.int64)


def one_tick(window: Window, stream: str) -> float:
    """Samples in one tick at the window's slowest tempo."""
    slowest = min(b for _, _, b in window_midi(window, stream).clock.segments)
    return window.sample_rate * 60.0 / slowest / TICKS_PER_QUARTER


def quarters_at(seconds: Fraction) -> Fraction:
    """Quarter notes of the band session's conductor at ``seconds``."""
    at = Fraction(0)
    for (tick, tempo), (next_tick, _) in zip(TEMPOS, [*TEMPOS[1:], (None, 0)], strict=True):
        length = None if next_tick is None else Fraction(next_tick - tick, TPB) * Fraction(tempo, 10**6)
        if length is None or seconds <= at + length:
            return Fraction(tick, TPB) + (seconds - at) / Fraction(tempo, 10**6)
        at += length
    raise AssertionError


def library_notes(data: bytes, rate: int) -> dict[str, list[tuple[int, float, float]]]:
    """(pitch, start, end) in samples, each library converting ticks through the file's own tempo map."""
    import pretty_midi
    import symusic

    out: dict[str, list[tuple[int, float, float]]] = {}
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    out["pretty_midi"] = [(n.pitch, n.start * rate, n.end * rate) for i in pm.instruments for n in i.notes]
    score = symusic.Score.from_midi(data).to("second")
    out["symusic"] = [(n.pitch, n.start * rate, (n.start + n.duration) * rate) for t in score.tracks for n in t.notes]
    midi = mido.MidiFile(file=io.BytesIO(data))
    seconds, tempo, open_notes, notes = 0.0, 500_000, {}, []
    for message in mido.merge_tracks(midi.tracks):  # mido's own tick -> second, tempo by tempo
        seconds += mido.tick2second(message.time, midi.ticks_per_beat, tempo)
        if message.type == "set_tempo":
            tempo = message.tempo
        elif message.type == "note_on" and message.velocity:
            open_notes[(message.channel, message.note)] = seconds
        elif message.type in ("note_on", "note_off"):
            notes.append((message.note, open_notes.pop((message.channel, message.note)) * rate, seconds * rate))
    out["mido"] = notes
    return out


def test_every_window_file_reads_in_mido_pretty_midi_and_symusic_as_the_windows_notes(data_dir: Path) -> None:
    checked = 0
    for (session, stream, _), (window, _) in truth(data_dir).items():
        midi = window_midi(window, stream)
        expected = sorted((p, s, e) for p, _, s, e in clipped_notes(window, stream).tolist())
        assert np.array_equal(midi.notes, clipped_notes(window, stream))
        parsed = mido.MidiFile(file=io.BytesIO(midi.data))
        assert (parsed.type, parsed.ticks_per_beat, len(parsed.tracks)) == (1, 960, 2)
        tick = one_tick(window, stream)
        for library, notes in library_notes(midi.data, window.sample_rate).items():
            got = sorted(notes)
            assert [p for p, _, _ in got] == [p for p, _, _ in expected], (library, session, stream, window.index)
            for (_, start, end), (_, truth_start, truth_end) in zip(got, expected, strict=True):
                assert abs(start - truth_start) <= tick + 1 and abs(end - truth_end) <= tick + 1, library
        checked += len(expected)
    assert checked > 100


def conductor(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    track, tick, tempos, meters = mido.MidiFile(file=io.BytesIO(data)).tracks[0], 0, [], []
    for message in track:
        tick += message.time
        if message.type == "set_tempo":
            tempos.append((tick, message.tempo))
        elif message.type == "time_signature":
            meters.append((tick, message.numerator, message.denominator))
    return tempos, meters


def test_tempo_and_meter_at_tick_0_and_every_change_inside_the_window_at_its_tick(data_dir: Path) -> None:
    from sendlearn.dataset import Dataset

    dataset = Dataset(data_dir)
    seen_inside = 0
    for window in dataset.windows("band"):
        begin = quarters_at(Fraction(window.start_sample, window.sample_rate))
        end = quarters_at(Fraction(window.stop_sample, window.sample_rate))

        def at(tick: int) -> int:
            return round((Fraction(tick, TPB) - begin) * TICKS_PER_QUARTER)  # noqa: B023

        tempos = [(0, [t for k, t in TEMPOS if Fraction(k, TPB) <= begin][-1])]
        tempos += [(at(k), t) for k, t in TEMPOS if begin < Fraction(k, TPB) < end]
        meters = [(0, *[(n, d) for k, n, d in METERS if Fraction(k, TPB) <= begin][-1])]
        meters += [(at(k), n, d) for k, n, d in METERS if begin < Fraction(k, TPB) < end]
        for stream in window.streams:
            assert conductor(window_midi(window, stream).data) == (tempos, meters), (window.index, stream)
        seen_inside += len(tempos) + len(meters) - 2
    # window 0: 150 bpm from 1.5 s (tick 2880 of 960) and 3/4 from bar 2 (tick 3840); window 1: 3/4 at tick 960
    first = next(iter(dataset.windows("band")))
    assert conductor(window_midi(first, "lead").data) == ([(0, 500_000), (2880, 400_000)], [(0, 4, 4), (3840, 3, 4)])
    assert seen_inside >= 4


def test_state_in_force_at_the_start_and_notes_across_the_edges(data_dir: Path) -> None:
    from sendlearn.dataset import Dataset

    dataset = Dataset(data_dir)
    for window in list(dataset.windows("pcm"))[1:]:
        for stream in window.streams:
            before = dataset.stream("pcm", stream).events(None, window.start_sample)
            last: dict[tuple[int, int], bytes] = {}
            for data in before["data"].to_pylist():  # the events in order: the last of each kind wins
                if data[0] & 0xF0 == 0xB0:
                    last[(data[0], data[1])] = data
                elif data[0] & 0xF0 in (0xC0, 0xD0, 0xE0):
                    last[(data[0], -1)] = data
            assert last
            messages = mido.MidiFile(file=io.BytesIO(window_midi(window, stream).data)).tracks[1]
            at_zero = []
            for message in messages:
                if message.time:
                    break
                if not message.is_meta:
                    at_zero.append(message)
            state = [bytes(m.bytes()) for m in at_zero if m.type in ("control_change", "pitchwheel", "program_change",
                                                                   "aftertouch")]
            assert sorted(state) == sorted(last.values())
            # the state comes before the first note-on of tick 0
            kinds = [m.type for m in at_zero]
            assert "note_on" not in kinds or kinds.index("note_on") > max(i for i, k in enumerate(kinds) if k != "note_on"
                                                                        and k != "note_off")
            # no system message (sysex) is written
            assert not any(m.type == "sysex" for m in messages)
    # the lead's note from 1.4 s to 1.6 s sounds across window 1's start (1.5 s): struck again at tick 0
    window = list(dataset.windows("band"))[1]
    notes = clipped_notes(window, "lead")
    carried = [n for n in notes.tolist() if n[2] == 0]
    assert carried and carried[0][0] == 72 and carried[0][1] == 100
    first = mido.MidiFile(file=io.BytesIO(window_midi(window, "lead").data)).tracks[1]
    ons = [(m.time, m.note, m.velocity) for m in first if m.type == "note_on"]
    assert ons[0] == (0, 72, 100)


def run_export(fmt: str, data_dir: Path, out: Path, *flags: str) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", fmt, "--data-dir", str(data_dir), "--out", str(out), "--json", *flags]) == 0
    return json.loads(stdout.getvalue())


def test_every_format_carries_midi_file_and_parquet_and_pytorch_midi_notes_and_mfcc(data_dir: Path,
                                                                                    tmp_path: Path) -> None:
    import datasets
    import h5py
    import torch
    import webdataset
    from tfrecord_lite import tf_record_iterator

    from sendlearn.dataset.export.hdf5 import read_sample

    expected = {k: v for k, v in truth(data_dir).items() if k[0] == "pcm"}
    for fmt in ("parquet", "pytorch", "webdataset", "hdf5", "tfrecord"):
        run_export(fmt, data_dir, tmp_path / fmt, "--session", "pcm")
    # pytorch: the seed's snippet, as docs/export.md writes it
    path = next((tmp_path / "pytorch").glob("*.pt"))
    midi_sequences = [s['midi_notes'] for s in torch.load(path, weights_only=True)["samples"]]
    samples = torch.load(path, weights_only=True)["samples"]
    assert len(midi_sequences) == len(samples) == len(expected)
    for item, notes in zip(samples, midi_sequences, strict=True):
        window, stream = expected[(item["session"], item["stream"], item["window"])]
        assert notes.dtype == torch.int64 and notes.shape[1] == 4 and len(notes) > 10
        assert np.array_equal(notes.numpy(), clipped_notes(window, stream))
        assert item["midi_file"] == window_midi(window, stream).data
        assert torch.equal(item["mfcc"], item["features"]["mfcc"])
        assert np.array_equal(item["mfcc"].numpy(), window.features(stream)["mfcc"])
    # parquet, read by datasets
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "parquet" / "data" / "*.parquet"), split="train")
    ds = ds.remove_columns("audio")
    assert len(ds) == len(expected)
    for row in ds:
        window, stream = expected[(row["session"], row["stream"], row["window"])]
        assert np.array_equal(np.asarray(row["midi_notes"], dtype=np.int64), clipped_notes(window, stream))
        assert row["midi_file"] == window_midi(window, stream).data
        assert np.array_equal(np.asarray(row["mfcc"], dtype=np.float32), window.features(stream)["mfcc"])
    # the others carry the file
    for item in webdataset.WebDataset(sorted(str(p) for p in (tmp_path / "webdataset").glob("*/shard-*.tar")),
                                      shardshuffle=False):
        meta = json.loads(item["json"])
        window, stream = expected[(meta["session"], meta["stream"], meta["window"])]
        assert item["mid"] == window_midi(window, stream).data
        assert meta["midi_notes"] == clipped_notes(window, stream).tolist()
    with h5py.File(tmp_path / "hdf5" / "windows.h5", "r") as f:
        for key in f["samples"]:
            got = read_sample(f["samples"][key])
            window, stream = expected[(got["session"], got["stream"], got["window"])]
            assert got["midi_file"] == window_midi(window, stream).data
            assert np.array_equal(got["midi_notes"], clipped_notes(window, stream))
    for example in tf_record_iterator(str(next((tmp_path / "tfrecord").glob("*.tfrecord")))):
        key = (example["session"][0].decode(), example["stream"][0].decode(), int(example["window"][0]))
        window, stream = expected[key]
        assert example["midi_file"][0] == window_midi(window, stream).data
        assert np.array_equal(np.asarray(example["midi_notes"]).reshape(-1, 4), clipped_notes(window, stream))
