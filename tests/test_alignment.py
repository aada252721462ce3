"""Alignment proven from the dataset: MIDI rendered through ``sendlearn render`` (render,
capture, websocket, receiver, writer), then read back from disk the way a user would.

Ground truth is worked out here by hand from the tempo and meter map this file writes, never
with the project's Timeline: what the dataset says must agree with the audio and with
arithmetic a reader can check.
"""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pyarrow.compute as pc
import pytest

import midi_files
from helpers import read_stream
from sendlearn.cli.main import main

TPB = 384  # not a divisor of the dataset's 960: notes.mid ticks are scaled by 2.5
# The conductor, in ticks: (tick, µs per quarter) and (tick, numerator, denominator).
# 4/4 at 120 bpm; 160 bpm from beat 3 of bar 2 (mid-bar); 3/4 from bar 3; 6/8 at 100 bpm from bar 5.
TEMPOS = [(0, 500_000), (2304, 375_000), (5376, 600_000)]
METERS = [(0, 4, 4), (3072, 3, 4), (5376, 6, 8)]
END_TICK = 7680  # end of bar 6
CHANGES = [2304, 3072, 5376]  # a note starts on every change


def note_ticks() -> list[tuple[int, int]]:
    """(tick, note) of every note: odd spacings put onsets anywhere inside blocks, and a note
    sits on each tempo/meter change. Each lasts 41 ticks; the next starts >= 130 ticks later,
    so every onset follows exact silence (hard_attack stops on the note-off sample)."""
    ticks, tick, index = [], 5, 0
    while tick < END_TICK - 200:
        ticks.append(tick)
        tick += 131 + (index * 29) % 61
        index += 1
    ticks = sorted(set(ticks) | set(CHANGES))
    spaced = [t for i, t in enumerate(ticks) if i == 0 or t - ticks[i - 1] >= 60]  # keep a gap before each
    return [(t, 40 + (i * 7) % 45) for i, t in enumerate(spaced)]


def write_midi(path: Path) -> Path:
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    part = []
    for index, (tick, note) in enumerate(note_ticks()):
        part.append((tick, mido.Message("note_on", note=note, velocity=40 + index % 80)))
        part.append((tick + 41, mido.Message("note_off", note=note, velocity=0)))
    part.append((END_TICK, mido.MetaMessage("end_of_track")))
    midi.tracks += [midi_files.timed_track(midi_files.conductor(TEMPOS, METERS)), midi_files.timed_track(part)]
    midi.save(str(path))
    return path


# --- the truth, by hand ---------------------------------------------------------------------


def seconds_at(tick: Fraction | int) -> Fraction:
    """Exact time of ``tick`` on this file's tempo map."""
    return midi_files.seconds_at(tick, TEMPOS, TPB)


def tick_at(seconds: Fraction) -> Fraction:
    """Inverse of ``seconds_at``: the tempo segment that holds ``seconds``, then inside it."""
    start, tempo = [(t, v) for t, v in TEMPOS if seconds_at(t) <= seconds][-1]
    return start + (seconds - seconds_at(start)) * 1_000_000 * TPB / tempo


def sample_at(tick: int, rate: int) -> int:
    return math.floor(seconds_at(tick) * rate)


def bar_beat(tick: Fraction) -> tuple[int, Fraction, tuple[int, int], float]:
    """(bar, beat, meter, bpm) at ``tick``; every meter change here falls on a bar line."""
    bar = 1
    for (start, num, den), (end, _, _) in zip(METERS, METERS[1:] + [(math.inf, 0, 0)], strict=True):
        per_bar = TPB * 4 * num // den
        if tick < end:
            into = tick - start
            bars = math.floor(into / per_bar)
            beat = 1 + (into - bars * per_bar) / (TPB * 4 // den)
            tempo = [v for t, v in TEMPOS if t <= tick][-1]
            return bar + bars, beat, (num, den), 60_000_000 / tempo
        bar += (end - start) // per_bar
    raise AssertionError("unreachable")


# --- rendering through the CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def midi_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_midi(tmp_path_factory.mktemp("midi") / "tempo_meter.mid")


@pytest.fixture(scope="module")
def render(midi_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """``render(rate, block_size, tag)`` -> the stream read back; each distinct call renders once."""
    done: dict[tuple[int, int, str], dict] = {}

    def run(rate: int, block_size: int, tag: str = "") -> dict:
        key = (rate, block_size, tag)
        if key not in done:
            data_dir = tmp_path_factory.mktemp(f"data{rate}_{block_size}{tag.replace(' ', '_')}")
            code = main(["render", str(midi_file), "--data-dir", str(data_dir), "--instrument", "faust:hard_attack",
                         "--sample-rate", str(rate), "--block-size", str(block_size), "--json"])
            assert code == 0
            done[key] = read_stream(data_dir, "tempo_meter", "tempo_meter")
        return done[key]

    return run


def onsets(audio: np.ndarray, threshold: float = 0.02) -> list[int]:
    """Samples where the audio jumps above ``threshold`` straight out of exact silence."""
    level = np.abs(audio).max(axis=0)
    silent_before = np.concatenate(([True], level[:-1] == 0.0))
    return np.flatnonzero((level > threshold) & silent_before).tolist()


def column(table, name: str, kind: str | None = None) -> list:
    if kind is not None:
        table = table.filter(pc.equal(table["kind"], kind))
    return table[name].to_pylist()


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("block_size", [64, 512, 1000])
def test_onsets_in_the_written_audio_are_the_note_on_samples(render, rate: int, block_size: int) -> None:
    stream = render(rate, block_size)
    audio, events = stream["audio"], stream["events"]
    assert stream["rate"] == rate and stream["info"]["block_size"] == block_size
    truth = [sample_at(tick, rate) for tick, _ in note_ticks()]
    assert audio.shape[1] == sample_at(END_TICK, rate) + 1  # the stream covers the last tick
    note_ons = column(events, "sample", "note_on")
    note_offs = column(events, "sample", "note_off")
    assert note_ons == truth  # events.parquet puts every note where the tempo map does
    assert onsets(audio) == note_ons  # and the audio starts on exactly those samples: 0 error
    for on, off in zip(note_ons, note_offs, strict=True):  # sounding from note-on to note-off, then silent
        assert np.all(audio[:, on:off] != 0.0) and np.all(audio[:, off] == 0.0)
    assert column(events, "timing_error_samples") == [None] * len(events)  # offline: exact, no estimate
    blocks = stream["blocks"]
    assert column(blocks, "frames")[:-1] == [block_size] * (len(blocks) - 1)
    assert column(blocks, "sample") == list(range(0, audio.shape[1], block_size))


def test_playhead_in_blocks_parquet_follows_the_tempo_and_meter_map(render) -> None:
    rate, size = 44100, 512
    blocks = render(rate, size)["blocks"].to_pylist()
    for row in blocks:
        tick = tick_at(Fraction(row["sample"], rate))
        bar, beat, meter, bpm = bar_beat(tick)
        assert (row["bar"], (row["ts_num"], row["ts_den"])) == (bar, meter), row
        assert row["beat"] == pytest.approx(float(beat), abs=1e-9)
        assert row["bpm"] == pytest.approx(bpm, rel=1e-12)
        assert row["ppq"] == pytest.approx(float(tick / TPB), abs=1e-9)
        assert row["seconds"] == pytest.approx(row["sample"] / rate, abs=1e-12)
        assert row["playing"] is True

    def first_block_at(tick: int) -> dict:  # the first block starting on or after ``tick``
        return next(r for r in blocks if r["sample"] >= sample_at(tick, rate))

    # known places, stated plainly: the tempo change mid-bar 2, 3/4 from bar 3, 6/8 from bar 5
    assert (first_block_at(0)["bar"], first_block_at(0)["beat"], first_block_at(0)["bpm"]) == (1, 1.0, 120.0)
    after_tempo = first_block_at(2304)
    assert (after_tempo["bar"], after_tempo["bpm"], after_tempo["ts_num"]) == (2, 160.0, 4)
    assert 3.0 <= after_tempo["beat"] < 3.1
    bar3 = first_block_at(3072)
    assert (bar3["bar"], bar3["ts_num"], bar3["ts_den"], bar3["bpm"]) == (3, 3, 4, 160.0)
    bar5 = first_block_at(5376)
    assert (bar5["bar"], bar5["ts_num"], bar5["ts_den"], bar5["bpm"]) == (5, 6, 8, 100.0)
    bar6 = first_block_at(5376 + 1152)  # a 6/8 bar is 1152 ticks; beats count eighths
    assert bar6["bar"] == 6 and 1.0 <= bar6["beat"] < 1.1
    assert blocks[-1]["bar"] == 6 and blocks[-1]["beat"] > 6.0


def test_same_input_renders_identical_datasets(render) -> None:
    first, second = render(48000, 512), render(48000, 512, "again")
    assert first["audio"].tobytes() == second["audio"].tobytes()  # every sample, bit for bit
    for name in ("events", "blocks", "params"):
        assert first[name].equals(second[name]), name
    checksums = [json.loads((s["folder"] / "stream.json").read_text())["checksums"] for s in (first, second)]
    assert checksums[0] == checksums[1]  # every file, audio.wav's header included, byte for byte


def test_same_input_writes_byte_identical_audio_files(render) -> None:
    first = render(48000, 512)
    time.sleep(1.05)  # a PEAK chunk would hold a whole-second timestamp: make sure a second passes
    second = render(48000, 512, "a second later")
    files = [(s["folder"] / "audio.wav").read_bytes() for s in (first, second)]
    assert files[0] == files[1]


@pytest.mark.parametrize("rate, block_size", [(44100, 1000), (48000, 64)])
def test_notes_mid_gives_back_the_source_notes(render, midi_file: Path, rate: int, block_size: int) -> None:
    source = [(tick, note) for tick, note in note_ticks()]
    written = render(rate, block_size)["midi"]
    assert written.ticks_per_beat == 960
    ons, tick = [], 0
    for msg in written.tracks[1]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            ons.append((tick, msg.note))
    assert [note for _, note in ons] == [note for _, note in source]
    for (got, _), (src, _) in zip(ons, source, strict=True):
        assert abs(got - src * 960 / TPB) <= 1, (got, src)
    meta = [m for m in written.tracks[0] if m.type in ("set_tempo", "time_signature")]
    assert [m.tempo for m in meta if m.type == "set_tempo"] == [t for _, t in TEMPOS]
    assert [(m.numerator, m.denominator) for m in meta if m.type == "time_signature"] == [(n, d) for _, n, d in METERS]


def test_notes_mid_ticks_for_a_note_just_after_a_tempo_change_inside_a_block(tmp_path: Path) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                                       mido.MetaMessage("set_tempo", tempo=250_000, time=1920)]))
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=100, time=1930),
                                       mido.Message("note_off", note=60, time=200)]))
    midi.save(str(tmp_path / "change.mid"))
    assert main(["render", str(tmp_path / "change.mid"), "--data-dir", str(tmp_path / "data"), "--block-size", "4096",
                 "--instrument", "faust:hard_attack", "--json"]) == 0
    written = read_stream(tmp_path / "data", "change", "change")["midi"]
    ticks, tick = {}, 0
    for track in written.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            ticks.setdefault(msg.type, []).append(tick)
    assert ticks["note_on"] == [3860]  # 1930 ticks at 480 tpb, 10 ticks after the change
    assert ticks["set_tempo"] == [0, 3840]
