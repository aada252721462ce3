"""Real renders (DawDreamer, amsynth, FluidSynth), no mocks: alignment is proven from the audio."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import dawdreamer
import mido
import numpy as np
import pytest

from midi_files import conductor, timed_track
from sendlearn.capture import Block, StreamInfo
from sendlearn.plugin.offline.dawdreamer import note_spans
from sendlearn.plugin.offline.render import TrackResult, render_session
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.instrument import bundled_instruments, list_instruments, parse_instrument
from sendlearn.plugin.session.reader import Session, session_from_midi
from sendlearn.plugin.session.timeline import Timeline

AMSYNTH = Path("/usr/lib/vst/amsynth_vst.so")
SYSEX = bytes([0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7])


def alignment_file(path: Path) -> Path:
    """~3 s: 4/4 at 120, then 7/8 at 133.33 bpm from tick 1700 (mid-bar), then 5/4 at 97 bpm.
    Notes are short and never overlap, so every onset follows exact silence; odd ticks put
    them anywhere inside blocks. Also CC, pitch bend, aftertouch, poly aftertouch and sysex."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo_map = timed_track(conductor([(0, 500_000), (1700, 450_000), (3033, 618_557)],
                                      [(0, 4, 4), (1700, 7, 8), (3033, 5, 4)]))
    part = mido.MidiTrack()
    tick, last = 7, 0
    for index in range(14):
        note = 48 + (index * 7) % 36
        part.append(mido.Message("note_on", note=note, velocity=64 + index * 4, time=tick - last))
        part.append(mido.Message("control_change", control=1, value=index, time=0))
        part.append(mido.Message("note_off", note=note, time=97))
        last = tick + 97
        tick += 211 + (index * 37) % 101
    part.append(mido.Message("pitchwheel", pitch=-4000, time=13))
    part.append(mido.Message("aftertouch", value=77, time=5))
    part.append(mido.Message("polytouch", note=60, value=33, time=5))
    part.append(mido.Message.from_bytes(SYSEX).copy(time=5))
    midi.tracks += [tempo_map, part]
    midi.save(str(path))
    return path


class Capture:
    """``open_stream`` for render_session: real processors, drained after the render."""

    def __init__(self) -> None:
        self.processors: dict[str, CaptureProcessor] = {}

    def __call__(self, info: StreamInfo) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=False, capacity=1 << 20)
        self.processors[info.stream] = processor
        return processor

    def blocks(self, stream: str) -> list[Block]:
        handoff = self.processors[stream].handoff
        out = []
        while (block := handoff.take()) is not None:
            out.append(block)
        assert handoff.finished
        return out


def run(session: Session) -> tuple[list[TrackResult], dict[str, list[Block]]]:
    capture = Capture()
    results = render_session(session, capture)
    return results, {stream: capture.blocks(stream) for stream in capture.processors}


def audio_of(blocks: list[Block]) -> np.ndarray:
    return np.concatenate([b.audio for b in blocks], axis=1)


def events_of(blocks: list[Block]) -> list[tuple[int, bytes]]:
    return [(sample, event.data) for b in blocks for sample, event in b.absolute_events()]


def onsets(audio: np.ndarray, threshold: float = 0.02) -> list[int]:
    """First sample above ``threshold`` after exact silence."""
    x = np.abs(audio).max(axis=0)
    loud = x > threshold
    silent_before = np.concatenate(([True], x[:-1] == 0.0))
    return np.flatnonzero(loud & silent_before).tolist()


@pytest.fixture(scope="module")
def midi_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return alignment_file(tmp_path_factory.mktemp("midi") / "align.mid")


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("block_size", [64, 512, 1000])
def test_onsets_in_the_audio_match_the_captured_events(midi_file: Path, rate: int, block_size: int) -> None:
    session = session_from_midi(midi_file, "faust:hard_attack", sample_rate=rate, block_size=block_size)
    results, streams = run(session)
    assert [r.ok for r in results] == [True], results
    blocks = streams["align"]
    assert all(b.frames == block_size for b in blocks[:-1]) and blocks[-1].frames <= block_size
    assert [b.start_sample for b in blocks] == [i * block_size for i in range(len(blocks))]
    audio = audio_of(blocks)
    assert audio.shape[1] == results[0].frames == Timeline(midi_file, rate).length
    note_ons = [s for s, data in events_of(blocks) if data[0] & 0xF0 == 0x90 and data[2] > 0]
    note_offs = [s for s, data in events_of(blocks) if data[0] & 0xF0 == 0x80]
    assert len(note_ons) == 14
    assert onsets(audio) == note_ons  # 0 samples error for every note
    for on, off in zip(note_ons, note_offs, strict=True):  # and the sound stops on the note-off sample
        assert np.all(audio[:, on:off] != 0.0) and np.all(audio[:, off] == 0.0)


def test_note_ons_are_where_the_tempo_map_puts_them(midi_file: Path) -> None:
    # independent of Timeline: ticks of the note-ons and the tempo map, worked out here
    rate = 48000
    session = session_from_midi(midi_file, "faust:hard_attack", sample_rate=rate, block_size=512)
    _, streams = run(session)
    ticks, tick = [], 7
    for index in range(14):
        ticks.append(tick)
        tick += 211 + (index * 37) % 101

    def seconds(t: int) -> Fraction:  # exact: in floats, tick 2329 lands on 113304.99999 of 113305
        if t <= 1700:
            return Fraction(t, 480) * Fraction(1, 2)
        if t <= 3033:
            return Fraction(1700, 960) + Fraction(t - 1700, 480) * Fraction(45, 100)
        return Fraction(1700, 960) + Fraction(1333, 480) * Fraction(45, 100) + Fraction(t - 3033, 480) * Fraction(618557, 10**6)

    expected = [math.floor(seconds(t) * rate) for t in ticks]
    got = [s for s, data in events_of(streams["align"]) if data[0] == 0x90]
    assert got == expected


def test_playhead_of_blocks_across_tempo_and_meter_change(midi_file: Path) -> None:
    rate, size = 48000, 512
    _, streams = run(session_from_midi(midi_file, "faust:hard_attack", sample_rate=rate, block_size=size))
    by_hand = []
    for block in streams["align"]:
        t = block.start_sample / rate
        # 0-1700 ticks: 4/4 at 120; then 7/8 (240-tick beats) at 133.33; from 3033: 5/4 at 97
        if t < 1700 / 480 * 0.5:
            tick = t * 960
            bar, beat, ts, bpm = 1 + int(tick // 1920), 1 + (tick % 1920) / 480, (4, 4), 120.0
        elif t < 1700 / 480 * 0.5 + 1333 / 480 * 0.45:
            into = (t - 1700 / 480 * 0.5) / 0.45 * 480
            bar, beat, ts, bpm = 2 + int(into // 1680), 1 + (into % 1680) / 240, (7, 8), 60 / 0.45
        else:
            into = (t - 1700 / 480 * 0.5 - 1333 / 480 * 0.45) / 0.618557 * 480
            # 4/4 changes mid-bar 1, so 7/8 starts bar 2; its 1333 ticks are less than one
            # 1680-tick bar, so 5/4 starts bar 3 (a partial bar still counts as one)
            bar, beat, ts, bpm = 3 + int(into // 2400), 1 + (into % 2400) / 480, (5, 4), 60 / 0.618557
        head = block.playhead
        by_hand.append((bar, ts, round(beat, 6), round(bpm, 4)))
        assert (head.bar, (head.ts_num, head.ts_den), round(head.beat, 6), round(head.bpm, 4)) == by_hand[-1]
    assert {b[1] for b in by_hand} == {(4, 4), (7, 8), (5, 4)}


def test_same_input_renders_bit_identical(midi_file: Path) -> None:
    session = session_from_midi(midi_file, "faust:poly_saw", sample_rate=44100, block_size=512)
    first, second = run(session)[1]["align"], run(session)[1]["align"]
    assert audio_of(first).tobytes() == audio_of(second).tobytes()
    assert [(b.start_sample, b.midi, b.params, b.playhead, b.digest) for b in first] == \
           [(b.start_sample, b.midi, b.params, b.playhead, b.digest) for b in second]


def test_every_event_is_captured_even_those_faust_cannot_hear(midi_file: Path) -> None:
    _, streams = run(session_from_midi(midi_file, "faust:poly_saw", sample_rate=48000, block_size=512))
    captured = events_of(streams["align"])
    timeline = Timeline(midi_file, 48000)
    assert captured == [(e.sample, e.data) for e in timeline.events]
    kinds = {b.midi[i].kind for b in streams["align"] for i in range(len(b.midi))}
    assert kinds == {"note_on", "note_off", "control_change", "pitchwheel", "aftertouch", "polytouch", "sysex"}
    assert (timeline.events[-1].sample, SYSEX) in captured


def test_amsynth_renders_and_its_events_are_captured(tmp_path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=57, velocity=100, time=100),
        mido.Message("pitchwheel", pitch=3000, time=200),
        mido.Message("note_off", note=57, time=200),
        mido.Message("note_on", note=64, velocity=100, time=10),
        mido.Message("note_off", note=64, time=400),
    ]))
    midi.save(str(tmp_path / "am.mid"))
    results, streams = run(session_from_midi(tmp_path / "am.mid", f"plugin:{AMSYNTH}", sample_rate=48000, block_size=256))
    assert results[0].ok and results[0].host == "dawdreamer", results
    audio = audio_of(streams["am"])
    assert np.abs(audio).max() > 0.01
    assert [d for _, d in events_of(streams["am"])] == [bytes(m.bin()) for m in midi.tracks[0] if not m.is_meta]
    first_on = events_of(streams["am"])[0][0]
    assert np.abs(audio[:, :first_on]).max() == 0.0  # nothing before the first note


def test_gm_renders_one_stream_per_channel(tmp_path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("program_change", channel=1, program=33, time=0)])
    for step in range(4):
        track += [
            mido.Message("note_on", channel=0, note=60 + step, velocity=100, time=0 if step == 0 else 120),
            mido.Message("note_on", channel=1, note=40, velocity=100, time=0),
            mido.Message("note_on", channel=9, note=36, velocity=110, time=0),
            mido.Message("note_off", channel=0, note=60 + step, time=120),
            mido.Message("note_off", channel=1, note=40, time=0),
            mido.Message("note_off", channel=9, note=36, time=0),
        ]
    midi.tracks.append(track)
    midi.save(str(tmp_path / "gm.mid"))
    results, streams = run(session_from_midi(tmp_path / "gm.mid", "gm", sample_rate=44100, block_size=512))
    assert [(r.stream, r.ok, r.host) for r in results] == [
        ("gm-ch1", True, "fluidsynth"), ("gm-ch2", True, "fluidsynth"), ("gm-ch10", True, "fluidsynth")]
    for result in results:
        audio = audio_of(streams[result.stream])
        assert audio.shape[1] == result.frames and np.abs(audio).max() > 0.01
        assert result.lag is not None and 0 <= result.lag < 300  # FluidSynth is late, never early
        channels = {data[0] & 0x0F for _, data in events_of(streams[result.stream])}
        assert channels == {int(result.stream.rsplit("ch", 1)[1]) - 1}


def test_silent_render_fails_and_writes_nothing(tmp_path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([mido.Message("control_change", control=7, value=100, time=960)]))
    midi.save(str(tmp_path / "quiet.mid"))
    capture = Capture()
    results = render_session(session_from_midi(tmp_path / "quiet.mid", "faust:poly_saw"), capture)
    assert results[0].ok is False and "silent" in results[0].reason
    assert capture.processors == {}  # never opened: no block of it reaches a writer


def test_faust_automation_is_heard_and_reported(tmp_path: Path) -> None:
    from sendlearn.plugin.session.reader import Automation, Track

    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=48, velocity=100, time=0), mido.Message("note_off", note=48, time=1920)]))
    midi.save(str(tmp_path / "auto.mid"))
    base = session_from_midi(tmp_path / "auto.mid", "faust:poly_saw", sample_rate=48000, block_size=512)
    lane = Automation("cutoff", ((0.0, 0.0), (2.0, 1.0)), unit="beats")  # beat 2 = 1 s at 120 bpm
    track = base.tracks[0]
    automated = Session(base.name, 48000, 512, (Track(track.name, track.midi, track.instrument, automation=(lane,)),))
    dry, wet = run(base)[1]["auto"], run(automated)[1]["auto"]
    assert audio_of(dry).tobytes() != audio_of(wet).tobytes()
    changes = [(b.start_sample + p.offset, p.param, p.value) for b in wet for p in b.params]
    assert changes == [(0, "cutoff", 0.0), (48000, "cutoff", 1.0)]


def test_sustain_pedal_holds_faust_notes() -> None:
    def at(sample: int, *data: int):
        from sendlearn.plugin.session.timeline import TimedEvent
        return TimedEvent(0, sample, bytes(data), 0, sample)

    events = [at(0, 0xB0, 64, 127), at(10, 0x90, 60, 100), at(20, 0x80, 60, 0), at(30, 0x90, 62, 90),
              at(40, 0xB0, 64, 0), at(50, 0x80, 62, 0), at(60, 0x90, 64, 80)]
    assert note_spans(events, 100) == [(60, 100, 10, 40), (62, 90, 30, 50), (64, 80, 60, 100)]


def test_bundled_instruments_load_and_sound() -> None:
    assert {"poly_saw", "bass", "drums", "hard_attack"} <= set(bundled_instruments())
    assert ("gm" in dict(list_instruments())) and all(desc for _, desc in list_instruments())
    for name, path in bundled_instruments().items():
        engine = dawdreamer.RenderEngine(44100, 256)
        faust = engine.make_faust_processor("f")
        faust.num_voices = 4
        faust.set_dsp(str(path))
        faust.compile()
        faust.add_midi_note(38, 100, 0.01, 0.2)
        faust.add_midi_note(64, 100, 0.3, 0.2)
        engine.load_graph([(faust, [])])
        engine.render(0.6)
        assert np.abs(engine.get_audio()).max() > 0.05, name


def test_dawdreamer_render_length_facts() -> None:
    # plugin/offline/dawdreamer.py: render((N + 0.5) / sr) gives N frames; N / sr alone sometimes gives N - 1
    engine = dawdreamer.RenderEngine(44100, 512)
    engine.load_graph([(engine.make_oscillator_processor("o", 440.0), [])])
    for frames in (1, 511, 519733, 197471):
        engine.render((frames + 0.5) / 44100)
        assert engine.get_audio().shape[1] == frames


@pytest.mark.parametrize("spec", ["faust:nope", "faust:missing.dsp", "plugin:/nowhere.so", "soundfont:/x.sf2",
                                  "synth:foo", "", "faust:"])
def test_bad_instrument_specs_say_what_is_wrong(spec: str) -> None:
    with pytest.raises(ValueError, match=r"instrument|faust|plugin|soundfont|spec"):
        parse_instrument(spec)


def test_instrument_specs_parse() -> None:
    assert parse_instrument("faust:hard_attack").path == bundled_instruments()["hard_attack"]
    sf = parse_instrument("soundfont:/usr/share/sounds/sf2/TimGM6mb.sf2:33")
    assert (sf.kind, sf.program, sf.host) == ("soundfont", 33, "fluidsynth")
    assert parse_instrument("gm").kind == "gm" and parse_instrument(f"plugin:{AMSYNTH}").exact
