"""``sendlearn render`` of an Ardour 7.3 session whose tempo and meter change after the start
(issue 23): every block's playhead is Ardour's map at its first sample, before and after the
change. Ardour 7.3 publishes over JACK only the tempo and meter where the roll began (fixed in
7.5), so a playhead read from JACK keeps 200 in 4/4 after the change; this one must not.

The truth here is worked out in the test from the map as it was set (200 quarter notes a minute
in 4/4 from the start, 150 in 7/8 from quarter note 4, the first bar line after one bar), not
read back from Ardour. A missing Ardour fails (tests/ardour.py names the package), never a skip."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from ardour import Ardour, build_song

from sendlearn.cli.main import main
from sendlearn.dataset import Dataset

RATE = 48000
BEFORE, AFTER = (200.0, 4, 4), (150.0, 7, 8)
CHANGE_QUARTERS = 4  # one 4/4 bar at 200: 1.2 s
CHANGE = round(CHANGE_QUARTERS * 60 / BEFORE[0] * RATE)  # 57600


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def change(daw: Ardour) -> None:
        daw.set_tempo_map([(*BEFORE, 0), (*AFTER, CHANGE_QUARTERS)])

    return build_song(tmp_path_factory.mktemp("ardour-tempo-map"), rate=RATE, notes=12, prepare=change)


def expected(sample: int) -> tuple[float, int, int, int, float, float]:
    """(bpm, ts_num, ts_den, bar, beat, ppq) of the map as set, at ``sample``."""
    if sample < CHANGE:
        quarters = sample / RATE * BEFORE[0] / 60
        return BEFORE[0], 4, 4, int(quarters // 4) + 1, 1 + quarters % 4, quarters
    quarters = CHANGE_QUARTERS + (sample - CHANGE) / RATE * AFTER[0] / 60
    eighths = (quarters - CHANGE_QUARTERS) * 2
    return AFTER[0], 7, 8, 2 + int(eighths // 7), 1 + eighths % 7, quarters


def test_every_blocks_playhead_is_ardours_map_after_a_tempo_and_meter_change(song: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", str(song), "--data-dir", str(tmp_path / "data"), "--json"])
    assert code == 0, (out.getvalue(), err.getvalue())
    summary = json.loads(out.getvalue())
    first, last = summary["streams"][0]["range"]
    assert first == 0 and last > CHANGE + RATE // 2, (first, last)  # half a second and more after the change
    data = Dataset(tmp_path / "data")
    heads = {}
    for stream in ("synth", "master"):
        blocks = data.stream("song", stream).blocks().to_pydict()
        heads[stream] = list(zip(blocks["bpm"], blocks["ts_num"], blocks["ts_den"], blocks["bar"], blocks["beat"],
                                 blocks["ppq"], strict=True))
        assert set(blocks["playing"]) == {True}
        after = [sample for sample in blocks["sample"] if sample >= CHANGE]
        assert len(after) >= RATE // 2 // 1024, len(after)
        for sample, (bpm, num, den, bar, beat, ppq) in zip(blocks["sample"], heads[stream], strict=True):
            want = expected(sample)
            assert (bpm, num, den, bar) == want[:4], (stream, sample, (bpm, num, den, bar, beat, ppq), want)
            # to a tick: Ardour counts BBT and position ticks in whole 1920ths of a quarter note
            assert beat == pytest.approx(want[4], abs=1.0001 * den / 4 / 1920), (stream, sample, beat, want)
            assert ppq == pytest.approx(want[5], abs=1.0001 / 1920), \
                (stream, sample, beat, ppq, want)
    assert heads["synth"] == heads["master"]  # one clock
    assert np.diff([h[5] for h in heads["synth"]]).min() > 0
