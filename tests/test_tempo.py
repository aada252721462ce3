"""The playhead a JACK transport period becomes (plugin/live/tempo.py), period by period, against a
timebase master's own arithmetic (jackplay.Master): the master's tempo unit decided from whole beats
and bars (never from ticks within a period), provisional blocks until then, a meter change decided
again, nonsense stored as no master; a master that misses periods leaves its song's tempo and meter
in place, and its position carried on to one tick."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jackplay import PERIOD, RATE, TICKS, Master
from sendlearn.capture.tempo import DENOMINATOR, QUARTER, settle, settle_blocks, to_quarter_notes
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


def roll(reader: PlayheadReader, master: Master, start: int, beats: float) -> int:
    """Feed ``reader`` ``beats`` of the master's beats (of 1/den) rolled from ``start``; return the
    next period's frame."""
    periods = int(beats * 60.0 / master.beat_rate * RATE / PERIOD) + 1
    for k in range(periods):
        reader.read(published(master, start + k * PERIOD), k * PERIOD, PERIOD)
    return start + periods * PERIOD


@pytest.mark.parametrize("master", [Master(137.0, (7, 8)), Master(200.0, (6, 8), quarter_notes=True),
                                    Master(90.0, (3, 4))], ids=["jack-7/8", "ardour-6/8", "jack-3/4"])
def test_periods_a_late_master_missed_keep_its_tempo_meter_and_position(master: Master) -> None:
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    num, den = master.meter
    start = roll(reader, master, START, 3)  # three beats rolled: its unit decided
    first = reader.read(published(master, start))
    assert (first.bpm, first.ts_num, first.ts_den) == (master.quarter_bpm, num, den)
    for k in range(1, 400):  # a second of periods without a position
        frame = start + k * PERIOD
        held = reader.read(missed(frame))
        bar, beat, tick = master.bbt(frame)
        assert (held.bpm, held.ts_num, held.ts_den, held.playing) == (master.quarter_bpm, num, den, True), k
        assert beats_of(held.bar, held.beat, num) == pytest.approx(beats_of(bar, beat + tick / TICKS, num),
                                                                   abs=1.0001 / TICKS), k  # JACK's tick resolution
        assert held.ppq == pytest.approx(beats_of(held.bar, held.beat, num) * 4 / den, abs=1e-9)
    assert reader.held == 399
    back = reader.read(published(master, start + 400 * PERIOD))  # the master is on time again: its own position
    bar, beat, tick = master.bbt(start + 400 * PERIOD)
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


class ArdourMaster:
    """What a real Ardour 7.3 publishes (libs/backends/jack/jack_session.cc): ``beats_per_minute``
    in quarter notes (the tempo's note type), beats of 1/den, and ticks of 1/1920 quarter note
    whatever the meter, with ``ticks_per_beat`` 1920: in 6/8 a beat's ticks run 0…959."""

    def __init__(self, quarters_per_minute: float, meter: tuple[int, int]) -> None:
        self.qpm, self.meter = quarters_per_minute, meter

    def at(self, frame: int, state: int = ROLLING) -> Transport:
        num, den = self.meter
        quarters = frame / RATE * self.qpm / 60.0
        ticks = int(quarters * 1920)  # Temporal ticks: 1920 per quarter note
        per_beat = 1920 * 4 // den
        beat_index, tick = divmod(ticks, per_beat)
        bar, beat = divmod(beat_index, num)
        return Transport(state, POSITION_BBT, frame, bar + 1, beat + 1, tick, float(num), float(den), 1920.0,
                         self.qpm)


def test_ardour_in_6_8_is_decided_quarter_from_its_beats_not_its_ticks() -> None:
    """Issue 26: Ardour 7.3 in 6/8 at 100 quarter notes a minute. One period of tick motion says
    "beats of 1/8" (ticks 0…959 of 1920 per beat); its beats and bars (a bar in 1.8 s) say
    quarter notes. Stored: 100, the beat within the bar to a tick, ppq in quarter notes."""
    ardour = ArdourMaster(100.0, (6, 8))
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    heads = [reader.read(ardour.at(k * PERIOD), k * PERIOD, PERIOD) for k in range(int(3 * RATE / PERIOD))]
    assert reader.unit == QUARTER and reader.figures()["tempo_unit"] == QUARTER
    decided = reader.decisions[0][0] // PERIOD
    assert decided * PERIOD / RATE <= 0.6 + 2 * PERIOD / RATE  # two eighth-note boundaries: at most 0.6 s
    assert reader.figures()["tempo_unit_at"] == decided * PERIOD
    assert all(h.bpm == 100.0 for h in heads)
    assert reader.provisional == decided  # before it: stored as published, noted
    figures = reader.figures()
    assert figures["tempo_provisional_spans"] == [[0, decided * PERIOD]]
    assert figures["tempo_units"] == [[decided * PERIOD, QUARTER, QUARTER]]  # its ticks count quarter notes
    # settled as finalise settles them, the provisional blocks are right too
    settled = settle_blocks([k * PERIOD for k in range(len(heads))], [h.bpm for h in heads], [h.ts_num for h in heads],
                            [h.ts_den for h in heads], [h.bar for h in heads], [h.beat for h in heads],
                            [h.ppq for h in heads], figures)
    heads = [h if k >= decided else replace(h, bpm=settled.bpm[k], beat=settled.beat[k], ppq=settled.ppq[k])
             for k, h in enumerate(heads)]
    for k, head in enumerate(heads):
        record = ardour.at(k * PERIOD)
        assert (head.ts_num, head.ts_den, head.bar) == (6, 8, record.bar), k
        assert head.beat == pytest.approx(record.beat + record.tick / 960.0, abs=1e-9), k  # to a tick
        assert head.ppq == pytest.approx(k * PERIOD / RATE * 100.0 / 60.0, abs=1.0 / 1920), k
    # one bar is 1.8 s: bar 2 starts 1.8 s in
    assert heads[int(1.8 * RATE / PERIOD) + 1].bar == 2 and heads[int(1.8 * RATE / PERIOD) - 1].bar == 1


@pytest.mark.parametrize("master", [Master(137.0, (7, 8)), Master(200.0, (6, 8), quarter_notes=True),
                                    Master(100.0, (2, 2)), Master(45.0, (5, 2), quarter_notes=True),
                                    Master(300.0, (7, 16))],
                         ids=["jack-7/8", "quarter-6/8", "jack-2/2", "quarter-5/2", "jack-7/16"])
def test_the_unit_is_decided_from_beats_whichever_convention(master: Master) -> None:
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    after = roll(reader, master, START, 2.2)
    assert reader.unit == (QUARTER if master.quarter_notes else DENOMINATOR)
    head = reader.read(published(master, after))
    assert head.bpm == pytest.approx(master.quarter_bpm)
    figures = reader.figures()
    provisional_blocks = figures["tempo_provisional"]
    assert provisional_blocks > 0 and figures["tempo_provisional_spans"] == [[0, provisional_blocks * PERIOD]]
    # finalise settles the provisional blocks: what they stored, in the unit decided after them
    (start, end, unit, ticks), = settle(figures["tempo_provisional_spans"], figures["tempo_units"])
    assert (start, end, unit, ticks) == (0, provisional_blocks * PERIOD, reader.unit, "beat")  # TICKS per beat
    assert to_quarter_notes(master.published_bpm, master.meter[1], unit) == pytest.approx(master.quarter_bpm)


def test_in_x_4_nothing_is_provisional_and_nothing_needs_deciding() -> None:
    master = Master(90.0, (3, 4))
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    roll(reader, master, START, 4)
    assert reader.provisional == 0 and reader.unit is None and reader.figures()["tempo_unit"] is None


def test_stopped_a_master_stays_provisional() -> None:
    master = Master(200.0, (6, 8), quarter_notes=True)
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    for k in range(200):
        record = published(master, START)._replace(state=0)
        head = reader.read(record, k * PERIOD, PERIOD)
        assert head.bpm == master.published_bpm and not head.playing  # as published
    assert reader.unit is None and reader.provisional == 200
    assert reader.figures()["tempo_provisional_spans"] == [[0, 200 * PERIOD]]


def test_a_meter_change_mid_song_is_decided_again() -> None:
    """Ardour-style: 4/4 at 120 quarters, then 6/8 from bar 3 (4 s in), then 7/8 from bar 5."""
    reader = PlayheadReader(RATE, 100.0, Meter(4, 4))
    sections = [(ArdourMaster(120.0, (4, 4)), 0), (ArdourMaster(120.0, (6, 8)), 4 * RATE),
                (ArdourMaster(120.0, (7, 8)), 4 * RATE + int(3.0 * RATE))]
    heads = []
    for k in range(int(10 * RATE / PERIOD)):
        frame = k * PERIOD
        ardour, begins = [s for s in sections if s[1] <= frame][-1]
        record = ardour.at(frame - begins)._replace(frame=frame)
        heads.append((frame, reader.read(record, frame, PERIOD)))
    assert [d[1] for d in reader.decisions] == [QUARTER, QUARTER]
    assert sections[1][1] < reader.decisions[0][0] < sections[1][1] + 0.5 * RATE + 2 * PERIOD
    assert sections[2][1] < reader.decisions[1][0] < sections[2][1] + 0.5 * RATE + 2 * PERIOD
    spans = reader.figures()["tempo_provisional_spans"]
    assert [s[0] for s in spans] == [sections[1][1], sections[2][1]]
    assert [s[1] for s in spans] == [d[0] for d in reader.decisions]
    assert all(head.bpm == 120.0 for _, head in heads)  # Ardour publishes quarters: as published is right
    assert [u[2:] for u in settle(spans, reader.figures()["tempo_units"])] == [(QUARTER, QUARTER)] * 2


NONSENSE = {"bpm 0": {"bpm": 0.0}, "bpm -5": {"bpm": -5.0}, "bpm nan": {"bpm": float("nan")},
            "beat_type 3": {"beat_type": 3.0}, "beat_type 0": {"beat_type": 0.0},
            "beats_per_bar 0": {"beats_per_bar": 0.0}, "ticks_per_beat 0": {"ticks_per_beat": 0.0},
            "beats_per_bar inf": {"beats_per_bar": float("inf")}, "bar 0": {"bar": 0}}


@pytest.mark.parametrize("fields", list(NONSENSE.values()), ids=list(NONSENSE))
def test_a_master_publishing_nonsense_is_stored_as_no_master_and_counted(fields: dict) -> None:
    master = Master(137.0, (7, 8))
    reader = PlayheadReader(RATE, 90.0, Meter(3, 4))
    after = roll(reader, master, START, 3)
    assert reader.unit == DENOMINATOR
    for k in range(50):
        frame = after + k * PERIOD
        head = reader.read(published(master, frame)._replace(**fields), 0, PERIOD)
        assert (head.bpm, head.ts_num, head.ts_den) == (90.0, 3, 4)  # the manual playhead: none of its own
    assert reader.invalid == 50
    back = reader.read(published(master, after + 50 * PERIOD))
    assert (back.bpm, back.ts_den) == (master.quarter_bpm, 8)  # sense again: the master's


def test_to_quarter_notes() -> None:
    assert to_quarter_notes(137.0, 8, DENOMINATOR) == 68.5
    assert to_quarter_notes(100.0, 8, QUARTER) == 100.0
    assert to_quarter_notes(100.0, 2, DENOMINATOR) == 200.0
    assert to_quarter_notes(100.0, 8, None) == 100.0
    with pytest.raises(ValueError):
        to_quarter_notes(100.0, 8, "eighths")
    assert settle([[0, 10], [50, 60], [90, 95]], [[10, QUARTER, QUARTER], [60, DENOMINATOR, "beat"]]) == \
        [(0, 10, QUARTER, QUARTER), (50, 60, DENOMINATOR, "beat"), (90, 95, DENOMINATOR, "beat")]
    assert settle([[0, 10]], []) == [(0, 10, None, "beat")]


def test_a_late_master_repeating_its_last_position_still_gets_decided() -> None:
    """On a loaded machine a late Python master leaves JACK publishing its previous position (the
    same frame) for a period: that is no locate, and the beats still decide the unit."""
    master = Master(137.0, (7, 8))
    reader = PlayheadReader(RATE, 120.0, Meter(4, 4))
    last = published(master, START)
    for k in range(int(1.2 * RATE / PERIOD)):
        record = published(master, START + k * PERIOD) if k % 3 else last  # every third period: stale
        last = record
        reader.read(record, k * PERIOD, PERIOD)
    assert reader.unit == DENOMINATOR
