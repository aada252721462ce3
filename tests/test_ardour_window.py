"""plugin/ardour/window.py without Ardour: a stream's automation points reach its capture
processor on the block holding their sample, at their offset in it, across the range's start
(periods before it are not the stream's), a period cut at the range's end, and a gap (its points
are lost with its samples); a lane begun before the range starts with its value there. The real
session is tests/test_ardour_automation.py."""

from __future__ import annotations

import numpy as np

from sendlearn.capture import Playhead
from sendlearn.plugin.ardour.automation import Lane, range_points
from sendlearn.plugin.ardour.window import SessionWindow, Slice
from sendlearn.plugin.processor import CaptureProcessor

RATE, PERIOD, START = 48000, 64, 100


def rolling(sample: int) -> Playhead:
    return Playhead(seconds=sample / RATE, playing=True)


def test_points_go_with_the_block_holding_their_sample_and_a_gap_loses_its_own() -> None:
    processor = CaptureProcessor("s", "synth", RATE, 1, realtime=False, capacity=64)
    points = [(0, "synth/gain", 1.0), (63, "synth/gain", 0.5), (64, "synth/A/B", -6.0), (64, "synth/gain", 0.25),
              (130, "synth/gain", 0.0), (200, "synth/A/B", 3.0), (249, "synth/gain", 1.0)]
    window = SessionWindow([Slice(processor, 0, 1, params=points)], RATE, START, frames=250)
    silence = np.zeros((1, PERIOD), dtype=np.float32)
    window.process(silence, playhead=Playhead())  # stopped: not the stream's
    window.process(silence, playhead=rolling(START))  # stream samples 0..63
    window.process(silence, playhead=rolling(START + PERIOD))  # 64..127
    window.skip(1, PERIOD)  # 128..191 lost: the point at 130 with them
    window.process(silence, playhead=rolling(START + 3 * PERIOD))  # 192..249, cut at the range's end
    window.close()
    assert window.done.is_set() and window.problem is None
    blocks = []
    while (block := processor.handoff.take()) is not None:
        blocks.append(block)
    assert [(b.start_sample, b.frames) for b in blocks] == [(0, 64), (64, 64), (192, 58)]
    assert [[(p.offset, p.param, p.value) for p in b.params] for b in blocks] == [
        [(0, "synth/gain", 1.0), (63, "synth/gain", 0.5)],
        [(0, "synth/A/B", -6.0), (0, "synth/gain", 0.25)],
        [(8, "synth/A/B", 3.0), (57, "synth/gain", 1.0)],
    ]


def test_a_lane_begun_before_the_range_starts_with_its_value_there() -> None:
    """Points before the range are not the stream's: a lane that has some, and none on the range's
    first sample, gets one row at stream sample 0 with Ardour's value there; a lane whose points
    all fall in the range, or one with a point on its first sample, does not."""
    lanes = [Lane("synth", "synth/gain", "exponential", ((100, 1.0), (900, 0.5)), 0.8),
             Lane("synth", "synth/A/B", "linear", ((500, -6.0), (700, 6.0)), -6.0),
             Lane("synth", "synth/A/C", "linear", ((200, 0.0), (300, 1.0), (400, 2.0)), 1.0)]
    assert range_points(lanes, 300, 800) == [(0, "synth/gain", 0.8), (0, "synth/A/C", 1.0), (100, "synth/A/C", 2.0),
                                             (200, "synth/A/B", -6.0), (400, "synth/A/B", 6.0)]
    assert range_points(lanes, 0, 800) == [(100, "synth/gain", 1.0), (200, "synth/A/C", 0.0), (300, "synth/A/C", 1.0),
                                           (400, "synth/A/C", 2.0), (500, "synth/A/B", -6.0), (700, "synth/A/B", 6.0)]


def test_a_lua_chunk_holding_a_comment_is_refused_before_it_reaches_ardour() -> None:
    """A chunk goes to ardour7-lua as one line, where a ``--`` comment would swallow the rest and
    the chunk would never end (a lane reader hung so, 60 s, before this check)."""
    from sendlearn.plugin.ardour.headless import _has_comment

    assert _has_comment("local x = 1 -- why\nprint(x)")
    assert _has_comment("print('a') --[[ block ]]")
    assert not _has_comment('print("a--b")\nprint(\'c--d\')')  # inside strings, e.g. a track named so
    assert not _has_comment("print('it\\'s -- fine')")
    assert not _has_comment("print(1 - -1)")
