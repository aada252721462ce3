"""pedalboard as a streaming host: recorded tracks through effect chains, read back from the dataset.

Real pedalboard effects, real renders through ``sendlearn render`` (CaptureProcessor ->
hand-off -> store sink -> files), real files read back through
``sendlearn.dataset``. Signals are generated here, not stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pedalboard
import pytest
import soundfile

from helpers import read_stream
from sendlearn.cli.main import main
from sendlearn.plugin.chain.effects import measure_latency
from sendlearn.plugin.session.reader import Effect, SessionError, load_session

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
    from sendlearn.plugin.chain.feed import effect_changes

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
