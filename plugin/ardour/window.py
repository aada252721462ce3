"""The bridge's processor for an Ardour render: one JACK client's periods, split by channel into
one stream per route, and cut to the rendered range.

The live bridge (plugin/live/bridge.py) drives one processor with every period it captures,
stopped ones included. ``SessionWindow`` stands in for it: it counts every period (so the
bridge's clock keeps JACK's frames), and hands a stream only the periods Ardour rolled through
from ``start`` on, trimmed to ``frames``: stream sample 0 is the range's first sample. Where the
transport frame says the range began is Ardour's own word (the JACK transport frame it rolls
with), checked on the first rolling period: a roll that did not begin at ``start`` fails.
A slice's automation points (plugin/ardour/automation.py, in stream samples) go with the block
holding their sample, at their offset in it; a point in a gap is lost with the gap's samples.

The playhead is Ardour's tempo map at each period's first sample (``playheads``, asked before
the roll: plugin/ardour/tempo_map.py), since Ardour 7.3 publishes over JACK only the tempo and
meter where the roll began. Without a map (tests/test_ardour_window.py drives a window by hand)
a period keeps the playhead it came with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sendlearn.capture import Playhead
from sendlearn.plugin.processor import CaptureProcessor, MidiInput


@dataclass
class Slice:
    processor: CaptureProcessor
    first: int  # its channels in the bridge's inputs: [first, first + count)
    count: int
    midi: bool = False  # the bridge's MIDI input is this stream's (a MIDI track's output)
    events: int = 0  # MIDI events handed to it
    params: list[tuple[int, str, float]] = field(default_factory=list)  # (stream sample, param, value), sorted
    fed: int = 0  # stream samples handed on so far (blocks and gaps): where the next block starts
    next_param: int = 0  # params[:next_param] are handed on (or lost in a gap)

    def params_in(self, frames: int) -> list[tuple[int, str, float]]:
        """The params of the next ``frames`` samples, at their offsets in that block."""
        end = self.next_param
        while end < len(self.params) and self.params[end][0] < self.fed + frames:
            end += 1
        taken = [(sample - self.fed, param, value) for sample, param, value in self.params[self.next_param:end]]
        self.next_param = end
        self.fed += frames
        return taken


class SessionWindow:
    """What the bridge sees as its processor (realtime, as it requires); ``done`` is set once the
    range is captured, ``problem`` says why a render cannot be trusted."""

    def __init__(self, slices: list[Slice], rate: int, start: int, frames: int,
                 playheads: dict[int, Playhead] | None = None) -> None:
        self.slices = slices
        self.playheads = playheads  # Ardour's map by session sample, one a period from ``start``
        self.rate, self.start, self.frames = rate, start, frames
        self.realtime = True  # the bridge flips it off for freewheeling periods
        self.position = 0  # every frame the bridge gave us: its clock
        self.taken = 0  # frames of the range handed to the streams
        self.gaps = 0  # frames of the range lost before capture (recorded as gaps in each stream)
        self.done = threading.Event()
        self.problem: str | None = None
        self.closed = False

    def process(self, audio: np.ndarray, midi: Iterable[MidiInput] = (), playhead: Playhead | None = None) -> None:
        frames = audio.shape[1]
        self.position += frames
        playing = playhead is not None and playhead.playing
        if self.done.is_set() or not playing:
            if self.taken and not self.done.is_set() and not playing:
                self._fail(f"Ardour stopped at {self.taken} of {self.frames} samples")
            return
        assert playhead is not None
        if self.taken == 0:
            at = round(playhead.seconds * self.rate)
            if at != self.start:
                self._fail(f"Ardour rolled from sample {at}, not from the start {self.start}")
                return
        if self.playheads is not None:
            mapped = self.playheads.get(self.start + self.taken)
            if mapped is None:  # periods fall on the map's grid from the start: never guess between
                self._fail(f"no playhead of Ardour's map at sample {self.start + self.taken}")
                return
            playhead = mapped
        keep = min(frames, self.frames - self.taken)
        events = [e for e in midi if _offset(e) < keep]  # an event past the range's end is not in the range
        parts = [audio[part.first:part.first + part.count, :keep].copy() for part in self.slices]  # the ring is reused
        self._forward(parts, events, playhead)
        self.taken += keep
        if self.taken >= self.frames:
            self.done.set()

    def _forward(self, parts: list[np.ndarray], events: list[MidiInput], playhead: Playhead) -> None:
        for part, block in zip(self.slices, parts, strict=True):
            if part.midi:
                part.events += len(events)
            part.processor.process(block, events if part.midi else (), playhead, part.params_in(block.shape[1]))

    def skip(self, blocks: int, frames: int) -> None:
        """Periods lost before capture: inside the range they are a gap in every stream."""
        self.position += frames
        if self.taken and not self.done.is_set():
            lost = min(frames, self.frames - self.taken)
            for part in self.slices:
                part.processor.skip(blocks, lost)
                part.params_in(lost)  # a point in a gap is lost with its samples
            self.taken += lost
            self.gaps += lost
            if self.taken >= self.frames:
                self.done.set()

    def _fail(self, reason: str) -> None:
        if self.problem is None:
            self.problem = reason
        self.done.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for part in self.slices:
                part.processor.close()


def _offset(event: MidiInput) -> int:
    return event[0] if isinstance(event, tuple) else event.offset
