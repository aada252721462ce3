"""pedalboard as a streaming host: recorded tracks through effect chains, read back from the dataset;
and the whole offline chain (instruments, effects, capture, receiver, writer) at three block sizes.

Real pedalboard effects, real renders through ``sendlearn render`` (CaptureProcessor ->
Sender -> loopback websocket -> receiver -> files), real files read back through
``sendlearn.dataset``. Signals are generated here, not stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import mido
import numpy as np
import pedalboard
import pyarrow as pa
import pytest
import soundfile

from helpers import read_stream
from midi_files import conductor, seconds_at, timed_track
from sendlearn.cli import main
from sendlearn.dataset import Dataset
from sendlearn.plugin.chain import measure_latency
from sendlearn.plugin.session import Effect, SessionError, load_session

RATE = 48000


def take(channels: int = 2, seconds: float = 1.0, seed: int = 7) -> np.ndarray:
    """A decaying noise-and-tone take, float32 (channels, frames)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-(t % 0.25) * 6)
    return np.stack([tone + 0.1 * rng.standard_normal(n) for _ in range(channels)]).astype(np.float32)


def write_take(folder: Path, audio: np.ndarray, name: str = "take.wav", subtype: str = "FLOAT") -> Path:
    path = folder / name
    soundfile.write(str(path), audio.T, RATE, subtype=subtype)
    return path


def session_file(folder: Path, track: str, *, block_size: int = 512, name: str = "rec") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nsample_rate = {RATE}\nblock_size = {block_size}\n\n[[track]]\n{track}')
    return path


def render(path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(["render", str(path), "--data-dir", str(data_dir), "--json", "--replace"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report["failures"]
    return report


ZERO_LATENCY = """name = "fx"
audio = "take.wav"
effects = [ { pedalboard = "Gain", gain_db = -2.0 }, { pedalboard = "Compressor", threshold_db = -18, ratio = 3 },
            { pedalboard = "Chorus" }, { pedalboard = "LadderFilter", cutoff_hz = 2000 },
            { pedalboard = "Delay", delay_seconds = 0.05, feedback = 0.3 }, { pedalboard = "Reverb", room_size = 0.5 } ]
"""


def one_shot() -> pedalboard.Pedalboard:
    return pedalboard.Pedalboard([
        pedalboard.Gain(gain_db=-2.0), pedalboard.Compressor(threshold_db=-18, ratio=3), pedalboard.Chorus(),
        pedalboard.LadderFilter(cutoff_hz=2000), pedalboard.Delay(delay_seconds=0.05, feedback=0.3),
        pedalboard.Reverb(room_size=0.5)])


@pytest.mark.parametrize("block_size", [64, 512, 1000, "whole"])
def test_streamed_wet_equals_one_shot_chain_at_any_block_size(tmp_path: Path, block_size: int | str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    audio = take()
    write_take(tmp_path, audio)
    size = audio.shape[1] if block_size == "whole" else block_size
    render(session_file(tmp_path, ZERO_LATENCY, block_size=size), tmp_path / "data", capsys)
    wet = read_stream(tmp_path / "data", "rec", "fx-wet")
    expected = one_shot()(audio, RATE)  # reset=True, the whole take in one call
    assert wet["audio"].shape == audio.shape
    assert np.array_equal(wet["audio"], expected)  # bit for bit
    assert len(wet["blocks"]) == -(-audio.shape[1] // size)
    assert wet["info"]["meta"]["latency_samples"] == 0


def test_dry_stream_is_the_recording_bit_for_bit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = take(channels=1, seconds=0.7)
    pcm = write_take(tmp_path, audio, "take16.wav", "PCM_16")
    write_take(tmp_path, take(channels=2, seconds=0.5, seed=3), "take32.wav")
    path = tmp_path / "rec.toml"
    path.write_text(f'name = "rec"\nsample_rate = {RATE}\nblock_size = 300\n'
                    '[[track]]\nname = "a"\naudio = "take16.wav"\neffects = [ { pedalboard = "Reverb" } ]\n'
                    '[[track]]\nname = "b"\naudio = "take32.wav"\n')
    report = render(path, tmp_path / "data", capsys)
    assert [s["stream"] for s in report["streams"]] == ["a-dry", "a-wet", "b-dry", "b-wet"]
    for stream, file in (("a-dry", pcm), ("b-dry", tmp_path / "take32.wav"), ("b-wet", tmp_path / "take32.wav")):
        recorded, _ = soundfile.read(str(file), dtype="float32", always_2d=True)
        assert np.array_equal(read_stream(tmp_path / "data", "rec", stream)["audio"], recorded.T), stream
    dry, wet = (read_stream(tmp_path / "data", "rec", s) for s in ("a-dry", "a-wet"))
    assert dry["info"]["host"] == "recording" and wet["info"]["host"] == "pedalboard"
    assert dry["blocks"].column("sample").to_pylist() == wet["blocks"].column("sample").to_pylist()
    assert not np.array_equal(wet["audio"], dry["audio"])


@pytest.mark.parametrize("at", [0.5, 0.3001])  # on a block boundary (24000 = 46.875 blocks: no) and inside one
def test_an_automated_gain_step_lands_on_its_sample(tmp_path: Path, at: float,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    audio = take(seconds=1.0)
    write_take(tmp_path, audio)
    track = ('name = "gtr"\naudio = "take.wav"\nbpm = 90\nmeter = "6/8"\n'
             'effects = [ { pedalboard = "Gain", id = "g", gain_db = 0.0 }, { pedalboard = "Gain", gain_db = 0.0 } ]\n'
             f'automation = [ {{ param = "g.gain_db", points = [[0.0, 0.0], [{at}, 0.0], [{at}, -6.0]] }} ]\n')
    render(session_file(tmp_path, track), tmp_path / "data", capsys)
    step = int(at * RATE) if at == 0.5 else 14404  # floor(0.3001 * 48000) = floor(14404.8)
    wet = read_stream(tmp_path / "data", "rec", "gtr-wet")
    ratio = wet["audio"] / audio
    assert np.array_equal(wet["audio"][:, :step], audio[:, :step])  # 0 dB: untouched up to the step
    assert np.allclose(ratio[:, step:], 10 ** (-6 / 20), rtol=1e-6)  # -6 dB from the step's sample on
    assert not np.isclose(ratio[0, step - 1], 10 ** (-6 / 20))
    params = wet["params"].to_pylist()
    assert [(p["sample"], p["param"], p["value"]) for p in params] == [(0, "g.gain_db", 0.0), (step, "g.gain_db", -6.0)]
    assert params[1]["block_seq"] == step // 512
    assert read_stream(tmp_path / "data", "rec", "gtr-dry")["params"].num_rows == 0
    first = wet["blocks"].to_pylist()[0]
    assert (first["ts_num"], first["ts_den"]) == (6, 8)  # the bpm/meter keys are the clock
    assert first["bpm"] == pytest.approx(90.0, abs=1e-4)  # a whole number of µs per quarter, as in a MIDI file


def xcorr_peak(a: np.ndarray, b: np.ndarray, span: int = 4000) -> int:
    """The lag at which ``b`` best matches ``a`` (positive: ``b`` is late)."""
    size = 1 << int(np.ceil(np.log2(a.shape[0] + b.shape[0])))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.r_[np.arange(0, span), np.arange(-span, 0)]
    return int(lags[np.argmax(np.abs(np.r_[corr[:span], corr[-span:]]))])


WET_DELAY = '{ pedalboard = "Delay", delay_seconds = 0.01, feedback = 0.0, mix = 1.0 }'


@pytest.mark.parametrize(("effect", "shift"), [
    ('{ pedalboard = "Resample", target_sample_rate = 8000 }', 0),  # pedalboard drops what it reports: right
    ('{ pedalboard = "MP3Compressor", vbr_quality = 2 }', 0),
    (WET_DELAY, 479),  # reports nothing, withholds nothing: only the impulse shows the delay
])
def test_a_chain_with_latency_ends_aligned(tmp_path: Path, effect: str, shift: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    audio = take(channels=1, seconds=2.0)
    write_take(tmp_path, audio)
    render(session_file(tmp_path, f'name = "v"\naudio = "take.wav"\neffects = [ {effect} ]\n'),
           tmp_path / "data", capsys)
    dry, wet = (read_stream(tmp_path / "data", "rec", s) for s in ("v-dry", "v-wet"))
    meta = wet["info"]["meta"]
    assert meta["latency_samples"] > 0 and meta["latency_compensation_samples"] == shift
    assert meta["latency_samples"] == meta["latency_withheld_by_host"] + shift
    assert wet["audio"].shape == dry["audio"].shape
    assert xcorr_peak(dry["audio"][0], wet["audio"][0]) == 0
    assert np.abs(wet["audio"][0, -RATE // 4:]).max() > 0.05  # the end came out too (flushed), not silence


def test_uncompensated_the_delay_would_be_late() -> None:
    audio = take(channels=1, seconds=2.0)
    late = pedalboard.Pedalboard([pedalboard.Delay(delay_seconds=0.01, feedback=0.0, mix=1.0)])(audio, RATE)
    assert xcorr_peak(audio[0], late[0]) == 479


def test_a_latency_that_cannot_be_measured_is_recorded_as_such() -> None:
    latency = measure_latency([Effect("Gain"), Effect("PitchShift")], RATE, 1, 512)  # streamed, it returns silence
    assert latency.samples is None and latency.shift == 0 and latency.withheld > 0


def test_measured_latency_of_effects_without_any_is_zero() -> None:
    for effect in (Effect("Reverb"), Effect("Delay", (("delay_seconds", 0.1), ("mix", 0.5))), Effect("Chorus")):
        assert measure_latency([effect], RATE, 2, 512).samples == 0, effect


def test_effects_after_an_instrument_are_automated_on_their_sample(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=100, time=0),
                                       mido.Message("note_off", note=60, time=1900)]))
    midi.save(str(tmp_path / "n.mid"))
    track = ('name = "keys"\nmidi = "n.mid"\ninstrument = "faust:poly_saw"\n'
             'effects = [ { pedalboard = "Gain" }, { pedalboard = "Gain" } ]\n'
             'automation = [ { param = "gain#2.gain_db", points = [[0.0, 0.0], [0.25, 0.0], [0.25, -12.0]] } ]\n')
    render(session_file(tmp_path, track), tmp_path / "data", capsys)
    keys = read_stream(tmp_path / "data", "rec", "keys")
    rows = [(p["sample"], p["param"], p["value"]) for p in keys["params"].to_pylist()]
    assert rows == [(0, "gain#2.gain_db", 0.0), (12000, "gain#2.gain_db", -12.0)]
    level = np.abs(keys["audio"][0])
    assert level[11000:12000].max() > 3 * level[12000:13000].max()


def test_session_keys_for_recordings_and_effects(tmp_path: Path) -> None:
    write_take(tmp_path, take(seconds=0.2))
    path = session_file(tmp_path, 'name = "g"\naudio = "take.wav"\neffects = [ { pedalboard = "Gain" }, '
                        '{ pedalboard = "Reverb", id = "verb" }, { pedalboard = "Gain" } ]\n')
    track = load_session(path).tracks[0]
    assert track.recorded and track.instrument is None and (track.bpm, track.meter) == (120.0, (4, 4))
    assert [e.id for e in track.effects] == ["gain", "verb", "gain#2"]

    def problem(text: str) -> SessionError:
        with pytest.raises(SessionError) as caught:
            load_session(session_file(tmp_path, text))
        return caught.value

    base = 'name = "g"\naudio = "take.wav"\n'
    assert problem(base + 'instrument = "faust:poly_saw"\n').key == "track[0].instrument"
    assert problem(base + 'bpm = 0.5\n').key == "track[0].bpm"
    assert problem(base + 'meter = "4/3"\n').key == "track[0].meter"
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack())
    midi.save(str(tmp_path / "c.mid"))
    assert "conductor" in problem(base + 'midi = "c.mid"\nbpm = 100\n').problem
    fx = base + 'effects = [ { pedalboard = "Gain", id = "g" } ]\n'
    assert "no parameter" in problem(fx + 'automation = [ { param = "g.gain", points = [[0, 1]] } ]\n').problem
    refused = problem(base + 'effects = [ { pedalboard = "Reverb", id = "r" } ]\n'
                      'automation = [ { param = "r.room_size", points = [[0, 0.5], [1, 2.0]] } ]\n')
    assert refused.key == "track[0].automation[0].points[1]"
    assert "a recording has no instrument" in problem(base + 'automation = [ { param = "cutoff", points = [[0, 1]] } ]\n').problem
    assert "another effect" in problem(base + 'effects = [ { pedalboard = "Gain", id = "x" }, '
                                       '{ pedalboard = "Reverb", id = "x" } ]\n').problem
    assert "44100 Hz" not in str(problem(base.replace("take.wav", "nothere.wav")))
    soundfile.write(str(tmp_path / "t44.wav"), np.zeros(100, np.float32) + 0.1, 44100)
    assert "recordings are not resampled" in problem('name = "g"\naudio = "t44.wav"\n').problem
    assert "another track" in problem(base + '[[track]]\nname = "g-wet"\naudio = "take.wav"\n').problem


def test_effect_changes_are_points_steps_and_per_block_ramps() -> None:
    from sendlearn.plugin.feed import effect_changes

    points = {"g.gain_db": [(0, 0.0), (1000, 0.0), (1000, -6.0), (2000, -6.0), (2600, 0.0)]}
    changes = effect_changes(points, 512)
    assert changes == [(0, "g.gain_db", 0.0), (1000, "g.gain_db", -6.0), (2000, "g.gain_db", -6.0),
                       (2048, "g.gain_db", -6.0 + 6.0 * 48 / 600), (2560, "g.gain_db", -6.0 + 6.0 * 560 / 600),
                       (2600, "g.gain_db", 0.0)]


def test_a_recording_takes_its_clock_and_events_from_a_midi_conductor(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_take(tmp_path, take(channels=1, seconds=3.0))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)  # 120 bpm 4/4, then 3/4 at 90 bpm from beat 4 (2.0 s, bar 2)
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        mido.Message("note_on", note=64, velocity=90, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=1920),
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.Message("note_off", note=64, time=0),
        mido.Message("control_change", control=1, value=5, time=480 * 40),  # past the take's end: not captured
    ]))
    midi.save(str(tmp_path / "click.mid"))
    render(session_file(tmp_path, 'name = "gtr"\naudio = "take.wav"\nmidi = "click.mid"\n'
                        'effects = [ { pedalboard = "Reverb" } ]\n'
                        'automation = [ { param = "reverb.wet_level", unit = "beats", points = [[4, 0.33], [4, 0.0]] } ]\n'),
           tmp_path / "data", capsys)
    for stream in ("gtr-dry", "gtr-wet"):
        written = read_stream(tmp_path / "data", "rec", stream)
        assert [(e["sample"], e["kind"]) for e in written["events"].to_pylist()] == [(0, "note_on"), (96000, "note_off")]
        blocks = written["blocks"].to_pylist()
        assert {(round(b["bpm"], 3), b["ts_num"]) for b in blocks} == {(120.0, 4), (90.0, 3)}
        assert (blocks[-1]["ts_num"], blocks[-1]["bar"]) == (3, 2)
    params = read_stream(tmp_path / "data", "rec", "gtr-wet")["params"].to_pylist()
    assert [(p["sample"], p["value"]) for p in params] == [(0, pytest.approx(0.33)), (96000, 0.0)]  # beat 4 = 2.0 s


# --- the whole offline chain at three block sizes ------------------------------------------------

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


