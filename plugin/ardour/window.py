"""The bridge's processor for an Ardour render: one JACK client's periods, split by channel into
one stream per route, and cut to the rendered range.

The live bridge (plugin/live/bridge.py) drives one processor with every period it captures,
stopped ones included. ``SessionWindow`` stands in for it: it counts every period (so the
bridge's clock keeps JACK's frames), and hands a stream only the periods Ardour rolled through
from ``start`` on, trimmed to ``frames``: stream sample 0 is the range's first sample. Where the
transport frame says the range began is Ardour's own word (the JACK transport frame it rolls
with), checked on the first rolling period: a roll that did not begin at ``start`` fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sendlearn.capture import Playhead
from sendlearn.plugin.processor import CaptureProcessor, MidiInput


@dataclass
class Slice:
    processor: CaptureProcessor
    first: int  # its channels in the bridge's inputs: [first, first + count)
    count: int


class SessionWindow:
    """What the bridge sees as its processor (realtime, as it requires); ``done`` is set once the
    range is captured, ``problem`` says why a render cannot be trusted."""

    def __init__(self, slices: list[Slice], rate: int, start: int, frames: int) -> None:
        self.slices = slices
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
        keep = min(frames, self.frames - self.taken)
        list(midi)  # this slice captures audio; MIDI per track is not yet captured
        for part in self.slices:
            block = np.ascontiguousarray(audio[part.first:part.first + part.count, :keep])
            part.processor.process(block, (), playhead)
        self.taken += keep
        if self.taken >= self.frames:
            self.done.set()

    def skip(self, blocks: int, frames: int) -> None:
        """Periods lost before capture: inside the range they are a gap in every stream."""
        self.position += frames
        if self.taken and not self.done.is_set():
            lost = min(frames, self.frames - self.taken)
            for part in self.slices:
                part.processor.skip(blocks, lost)
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
