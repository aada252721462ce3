"""The timeline against values computed by hand from the MIDI file, not with its own code."""

from __future__ import annotations

from fractions import Fraction

import mido
import pytest

from midi_files import conductor, timed_track
from sendlearn.plugin.session.timeline import Timeline

TPB = 480


def changing_file() -> mido.MidiFile:
    """4/4 at 120 bpm for 2 bars (tick 0-3840), then 3/4 at 90 bpm from tick 3840 for 2 bars
    (tick 3840-6720), then 6/8 at 150 bpm from tick 6720; notes and a CC on a second track."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    tempo_map = timed_track(conductor([(0, 500_000), (3840, 666_667), (6720, 400_000)],
                                      [(0, 4, 4), (3840, 3, 4), (6720, 6, 8)]))
    part = mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=100, time=0),
        mido.Message("note_off", note=60, time=3840),      # tick 3840, on the tempo change
        mido.Message("control_change", control=1, value=5, time=1000),  # tick 4840
        mido.Message("note_on", note=62, velocity=90, time=2880),       # tick 7720
        mido.MetaMessage("end_of_track", time=720),          # tick 8440
    ])
    midi.tracks += [tempo_map, part]
    return midi


def seconds_by_hand(tick: int) -> Fraction:
    if tick <= 3840:
        return Fraction(tick, TPB) * Fraction(500_000, 10**6)
    if tick <= 6720:
        return Fraction(3840, TPB) / 2 + Fraction(tick - 3840, TPB) * Fraction(666_667, 10**6)
    return 4 + Fraction(2880, TPB) * Fraction(666_667, 10**6) + Fraction(tick - 6720, TPB) * Fraction(400_000, 10**6)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_events_land_on_the_samples_computed_by_hand(rate: int) -> None:
    timeline = Timeline(changing_file(), rate)
    expected = [(0, 0x90), (3840, 0x80), (4840, 0xB0), (7720, 0x90)]
    assert [(e.tick, e.data[0]) for e in timeline.events] == expected
    for event in timeline.events:
        assert event.sample == (seconds_by_hand(event.tick) * rate).__floor__()
    # tick 3840 at 120 bpm: exactly 4 s; the 3/4 section lasts 6 quarters of 0.666667 s
    assert timeline.events[1].sample == 4 * rate
    assert timeline.length == (seconds_by_hand(8440) * rate).__floor__() + 1


@pytest.mark.parametrize(
    # tick, bar, beat, ts, bpm -- bars counted by hand: 2 bars of 4/4 (3840 ticks), 2 bars of
    # 3/4 (1440 ticks each), then 6/8 bars of 1440 ticks with 240-tick eighth-note beats
    ("tick", "bar", "beat", "ts", "bpm"),
    [
        (0, 1, 1.0, (4, 4), 120.0),
        (480, 1, 2.0, (4, 4), 120.0),
        (2160, 2, 1.5, (4, 4), 120.0),
        (3840, 3, 1.0, (3, 4), 60e6 / 666_667),
        (3840 + 1440 + 960, 4, 3.0, (3, 4), 60e6 / 666_667),
        (6720, 5, 1.0, (6, 8), 150.0),
        (6720 + 240 * 5, 5, 6.0, (6, 8), 150.0),
        (6720 + 1440 + 120, 6, 1.5, (6, 8), 150.0),
    ],
)
def test_playhead_at_known_ticks(tick: int, bar: int, beat: float, ts: tuple[int, int], bpm: float) -> None:
    rate = 48000
    timeline = Timeline(changing_file(), rate)
    # the block starting on the sample of `tick`: its time is within one sample after the tick
    sample = (seconds_by_hand(tick) * rate).__ceil__()
    head = timeline.playhead_at(sample)
    assert head.playing and head.bar == bar and (head.ts_num, head.ts_den) == ts
    assert head.bpm == pytest.approx(bpm)
    one_sample_in_beats = bpm / 60 / rate * (ts[1] / 4) * 1.0001
    assert beat <= head.beat <= beat + one_sample_in_beats
    assert head.seconds == sample / rate
    assert tick / TPB <= head.ppq <= tick / TPB + bpm / 60 / rate * 1.0001


def test_meter_change_mid_bar_starts_a_new_bar() -> None:
    midi = mido.MidiFile(ticks_per_beat=TPB)
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        mido.MetaMessage("time_signature", numerator=5, denominator=8, time=2 * 1920 + 960),  # mid bar 3
        mido.Message("note_on", note=60, velocity=1, time=600),
    ]))
    timeline = Timeline(midi, 48000)
    bar, beat = timeline.bar_beat_at_tick(2 * 1920 + 960)
    assert (bar, beat) == (4, 1)
    assert timeline.bar_beat_at_tick(2 * 1920 + 960 + 600) == (4, 3.5)  # 600 ticks = 2.5 eighths
    assert timeline.bar_beat_at_tick(2 * 1920 + 960 + 1200) == (5, 1)  # a 5/8 bar is 1200 ticks


def test_long_file_does_not_drift() -> None:
    # an hour of 16th notes at an awkward tempo: the last event is still exact
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=476_191, time=0)])
    for _ in range(30_000):
        track.append(mido.Message("note_on", note=60, velocity=64, time=24))
    midi.tracks.append(track)
    timeline = Timeline(midi, 44100)
    last = timeline.events[-1]
    assert last.sample == (Fraction(last.tick, 96) * Fraction(476_191, 10**6) * 44100).__floor__()
    assert [e.sample for e in timeline.events] == sorted(e.sample for e in timeline.events)


def test_the_per_block_float_path_agrees_with_the_exact_one() -> None:
    """playhead_at answers in float64 and falls back to fractions near bar lines and meter
    changes; both must give the same bar and meter, and positions within 1e-9."""
    import mido as _mido

    midi = _mido.MidiFile(ticks_per_beat=96)
    track = _mido.MidiTrack()
    midi.tracks.append(track)
    for tempo, num, den in [(500_000, 4, 4), (433_333, 7, 8), (612_345, 3, 4), (250_000, 5, 16), (999_999, 4, 4)]:
        track.append(_mido.MetaMessage("set_tempo", tempo=tempo, time=0))
        track.append(_mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
        track.append(_mido.Message("note_on", note=60, time=371))
    for rate in (44100, 48000):
        timeline = Timeline(midi, rate)
        for block in (64, 500, 512, 1000):
            for sample in range(0, timeline.length, block):
                fast, exact = timeline.playhead_at(sample), timeline._exact_playhead(sample)
                assert (fast.bar, fast.ts_num, fast.ts_den, fast.bpm) == (exact.bar, exact.ts_num, exact.ts_den,
                                                                          exact.bpm), sample
                assert abs(fast.ppq - exact.ppq) < 1e-9 and abs(fast.beat - exact.beat) < 1e-9
