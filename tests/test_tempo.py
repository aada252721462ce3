"""The playhead a JACK transport period becomes (plugin/live/tempo.py), period by period, against a
timebase master's own arithmetic (jackplay.Master): a master that misses periods leaves its
song's tempo and meter in place, and its position carried on to one tick."""

from __future__ import annotations

import pytest

from jackplay import PERIOD, RATE, TICKS, Master
from sendlearn.plugin.live.tempo import HOLD_SECONDS, POSITION_BBT, ROLLING, Meter, PlayheadReader, Transport

START = 5 * RATE  # the transport frame the master's first position is published for


def published(master: Master, frame: int) -> Transport:
    bar, beat, tick = master.bbt(frame)
    num, den = master.meter
    return Transport(ROLLING, POSITION_BBT, frame, bar, beat, tick, float(num), float(den), TICKS,
                     master.published_bpm)


def missed(frame: int) -> Transport:
    """A period the master's callback ran too late for: JACK holds no BBT."""
    return Transport(ROLLING, 0, frame, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)


def beats_of(bar: int, beat: float, num: int) -> float:
    return (bar - 1) * num + beat - 1


@pytest.mark.parametrize("master", [Master(137.0, (7, 8)), Master(200.0, (6, 8), quarter_notes=True),
                                    Master(90.0, (3, 4))], ids=["jack-7/8", "ardour-6/8", "jack-3/4"])
def test_periods_a_late_master_missed_keep_its_tempo_meter_and_position(master: Master) -> None:
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    num, den = master.meter
    first = reader.read(published(master, START), published(master, START + PERIOD))  # measures its unit
    assert (first.bpm, first.ts_num, first.ts_den) == (master.quarter_bpm, num, den)
    for k in range(1, 400):  # a second of periods without a position
        frame = START + k * PERIOD
        held = reader.read(missed(frame))
        bar, beat, tick = master.bbt(frame)
        assert (held.bpm, held.ts_num, held.ts_den, held.playing) == (master.quarter_bpm, num, den, True), k
        assert beats_of(held.bar, held.beat, num) == pytest.approx(beats_of(bar, beat + tick / TICKS, num),
                                                                   abs=1.0001 / TICKS), k  # JACK's tick resolution
        assert held.ppq == pytest.approx(beats_of(held.bar, held.beat, num) * 4 / den, abs=1e-9)
    assert reader.held == 399
    back = reader.read(published(master, START + 400 * PERIOD))  # the master is on time again: its own position
    bar, beat, tick = master.bbt(START + 400 * PERIOD)
    assert (back.bar, back.beat) == (bar, pytest.approx(beat + tick / TICKS, abs=1e-12))


def test_a_master_gone_or_a_locate_back_falls_back_to_the_manual_tempo() -> None:
    master = Master(137.0, (7, 8))
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    reader.read(published(master, START))
    gone = reader.read(missed(START + int(HOLD_SECONDS * RATE) + PERIOD))
    assert (gone.bpm, gone.ts_num, gone.ts_den) == (120.0, 4, 4)
    located = reader.read(missed(START - RATE))
    assert (located.bpm, located.ts_num, located.ts_den) == (120.0, 4, 4)
    assert reader.held == 0


def test_without_a_master_the_manual_tempo_holds_from_frame_zero() -> None:
    reader = PlayheadReader(RATE, 90.0, Meter(3, 4))
    head = reader.read(missed(RATE * 2))  # 2 s at 90 bpm: 3 beats, bar 2 beat 1
    assert (head.bpm, head.ts_num, head.ts_den, head.bar, head.beat) == (90.0, 3, 4, 2, 1.0)
    assert reader.held == 0
