"""Feeding capture processors block by block: the offline hosts' common loop.

A ``BlockFeeder`` gives one processor its blocks with the MIDI events and parameter changes
that fall in each, at their offsets, and the playhead at each block's first sample.
``feed_through_chain`` is the plug-in chain of a DAW track: the input is captured (when the
track keeps a dry stream), runs through the ``AlignedChain`` block by block (split at
every automation point), and the chain's output, aligned to the input, is captured as the
wet stream on the same block grid. ``track_chain`` makes that chain for a track's effects
and lanes; the automation helpers turn lanes into samples (points, per-sample curves).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sendlearn.capture import ConsumerFailed, Playhead
from sendlearn.plugin.chain.effects import AlignedChain, ChainError, Change, EffectChain, Latency, measure_latency
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.timeline import TimedEvent, Timeline
from sendlearn.plugin.session.tracks import Automation, Effect

SILENCE = 1e-6  # peak below -120 dBFS: the instrument made no sound
MAX_LEVEL = 16.0  # +24 dBFS: a float render beyond it is a blown-up instrument, not music

Progress = Callable[[str, int, int], None]  # (stream, frames done, frames in all)
CHAIN_ERRORS = (ChainError, ValueError, TypeError)  # an effect chain that cannot be built
CAPTURE_ERRORS = (ConsumerFailed, ChainError, RuntimeError, ValueError)  # the consumer gave up, or the chain did


@dataclass(frozen=True, slots=True)
class TrackResult:
    """What became of one stream. ``lag`` is FluidSynth's measured onset lag in frames
    (audio after events); None for sample-exact hosts."""

    track: str
    stream: str
    host: str
    seconds: float
    frames: int
    events: int
    blocks: int
    ok: bool
    reason: str | None = None
    lag: int | None = None


class BlockFeeder:
    """One stream's capture: each ``feed(audio)`` is the next block, starting where the last ended."""

    def __init__(self, processor: CaptureProcessor, events: Sequence[TimedEvent], changes: Sequence[Change],
                 timeline: Timeline, done: Callable[[int], None] | None = None,
                 playheads: dict[int, Playhead] | None = None) -> None:
        self.processor = processor
        self.playheads = playheads  # shared by two feeders on one grid, or worked out ahead: taken once
        self.events = events
        self.changes = changes  # (sample, param, value), sorted by sample
        self.timeline = timeline
        self.done = done
        self.blocks = 0
        self._e = self._c = 0

    def feed(self, audio: np.ndarray) -> None:
        start = self.processor.position
        end = start + audio.shape[1]
        midi = []
        while self._e < len(self.events) and self.events[self._e].sample < end:
            midi.append((self.events[self._e].sample - start, self.events[self._e].data))
            self._e += 1
        params = []
        while self._c < len(self.changes) and self.changes[self._c][0] < end:
            params.append((self.changes[self._c][0] - start, self.changes[self._c][1], self.changes[self._c][2]))
            self._c += 1
        if self.playheads is None:
            playhead = self.timeline.playhead_at(start)
        elif (shared := self.playheads.pop(start, None)) is not None:
            playhead = shared
        else:  # the first of the two to get here
            playhead = self.playheads[start] = self.timeline.playhead_at(start)
        self.processor.process(audio, midi, playhead, params)
        self.blocks += 1
        if self.done is not None:
            self.done(end)

    def check_all_fed(self) -> None:
        if self._e != len(self.events):  # the stream's length covers its last event: a bug, not bad input
            raise AssertionError(f"{len(self.events) - self._e} events fall after the stream's "
                                 f"{self.processor.position} frames")


def feed_through_chain(audio: np.ndarray, chain: AlignedChain, chain_changes: Sequence[Change], block_size: int,
                       wet: BlockFeeder, *, dry: BlockFeeder | None = None, gain_db: float = 0.0) -> None:
    """Stream ``audio`` through ``chain`` in ``block_size`` blocks; ``chain_changes`` (sample,
    "id.param", value) each move their parameter from their sample on. ``dry`` captures the
    input, ``wet`` the aligned output (after ``gain_db``), both on the same block grid."""
    frames = audio.shape[1]
    c = 0
    wet_at = 0
    for start in range(0, frames, block_size):
        end = min(start + block_size, frames)
        block = audio[:, start:end]
        if dry is not None:
            dry.feed(block)
        if chain.empty:  # no effects: the block itself (after gain) is the wet block
            wet.feed(apply_gain(block, gain_db))
            wet_at = end
            continue
        moves = []
        while c < len(chain_changes) and chain_changes[c][0] < end:
            moves.append((chain_changes[c][0] - start, chain_changes[c][1], chain_changes[c][2]))
            c += 1
        chain.push(block, moves)
        while wet_at < frames and chain.ready >= min(block_size, frames - wet_at):
            size = min(block_size, frames - wet_at)
            wet.feed(apply_gain(chain.take(size), gain_db))
            wet_at += size
    chain.finish()
    while wet_at < frames:
        size = min(block_size, frames - wet_at)
        wet.feed(apply_gain(chain.take(size), gain_db))
        wet_at += size


def track_chain(effects: Sequence[Effect], lanes: Sequence[Automation], timeline: Timeline, frames: int,
                channels: int, block_size: int) -> tuple[list[Change], Latency, AlignedChain]:
    """A track's effect chain, ready to stream: the effects' parameter changes from ``lanes``
    (``effect_changes``), the chain's measured latency, and the chain aligned by it. Raises one
    of ``CHAIN_ERRORS`` when the chain cannot be built."""
    rate = timeline.sample_rate
    moves = effect_changes(automation_points(lanes, timeline, frames), block_size)
    initial = initial_values(moves)
    latency = measure_latency(effects, rate, channels, block_size, initial)
    return moves, latency, AlignedChain(EffectChain(effects, rate, initial), latency, channels, block_size)


def automation_points(lanes: Sequence[Automation], timeline: Timeline, frames: int) -> dict[str, list[tuple[int, float]]]:
    """Each lane's points as (sample, value), in the stream; a point past the end is dropped
    and the value the line reaches at the last sample takes its place. A time in seconds is
    taken as the decimal number written (0.3 s is 3/10 s, not the float nearest to it)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for lane in lanes:
        points = []
        for time, value in lane.points:
            exact = Fraction(repr(time))
            seconds = exact if lane.unit == "seconds" else timeline.seconds_at_beats(exact)
            points.append((math.floor(seconds * timeline.sample_rate), float(value)))
        inside = [p for p in points if p[0] < frames]
        if len(inside) < len(points):
            last = float(automation_curve(points, frames)[-1])
            if not inside or inside[-1][0] != frames - 1:
                inside.append((frames - 1, last))
        if inside[0][0] > 0:
            inside.insert(0, (0, inside[0][1]))  # the value holds from the start
        out[lane.param] = inside
    return out


def effect_changes(points: dict[str, list[tuple[int, float]]], block_size: int) -> list[Change]:
    """What an effect's parameters are set to, and from which sample: every point (of several
    on one sample, the last: a step), and along a line between two points the value the
    line has at each block start in between (a chain's parameter moves per block)."""
    changes: list[Change] = []
    for param, lane in points.items():
        by_sample: dict[int, float] = {}
        for (s0, v0), (s1, v1) in zip(lane, lane[1:], strict=False):
            by_sample[s0] = v0
            if v0 != v1 and s1 > s0:
                for s in range((s0 // block_size + 1) * block_size, s1, block_size):
                    by_sample[s] = v0 + (v1 - v0) * (s - s0) / (s1 - s0)
        by_sample[lane[-1][0]] = lane[-1][1]
        changes += [(s, param, v) for s, v in sorted(by_sample.items())]
    changes.sort(key=lambda c: c[0])  # stable: lanes keep the session's order on one sample
    return changes


def initial_values(changes: Sequence[Change]) -> dict[str, float]:
    """Each automated parameter's value on sample 0 (the first change of a lane is on 0)."""
    return {param: value for sample, param, value in changes if sample == 0}


def automation_curve(points: Sequence[tuple[int, float]], frames: int) -> np.ndarray:
    """Per-sample values: linear between points, held before the first and after the last."""
    samples = np.array([p[0] for p in points], dtype=np.float64)
    values = np.array([p[1] for p in points], dtype=np.float64)
    return np.interp(np.arange(frames, dtype=np.float64), samples, values).astype(np.float32)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """``audio`` at ``gain_db``; at 0 dB the very array, so dry audio stays bit-identical."""
    if gain_db == 0.0:
        return audio
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def check_render(audio: np.ndarray, frames: int) -> str | None:
    """Why ``audio`` is not good data, or None. A non-finite sample, or one beyond
    ``MAX_LEVEL``, is named by channel, sample and value: an instrument blew up there
    (the caller's failure names the input and the stream)."""
    if audio.ndim != 2 or audio.shape[0] < 1:
        return f"render returned an array of shape {audio.shape}"
    if audio.shape[1] != frames:
        return f"render is {audio.shape[1]} frames long, the timeline says {frames}"
    if audio.size == 0:
        return "render is silent"
    # two passes without temporaries (a 20-minute stream is 460 MB): a NaN makes both NaN, an
    # infinity makes one of them infinite; only a bad render pays for finding where
    low, high = float(np.min(audio)), float(np.max(audio))
    if not (np.isfinite(low) and np.isfinite(high)) or max(-low, high) > MAX_LEVEL:
        bad = ~np.isfinite(audio)
        if not bad.any():
            bad = np.abs(audio) > MAX_LEVEL
        flat = int(np.argmax(bad.any(axis=0)))
        channel = int(np.argmax(bad[:, flat]))
        count = int(np.count_nonzero(bad.any(axis=0)))
        more = f" (and {count - 1} more samples)" if count > 1 else ""
        return (f"render holds a sample that is not finite or beyond ±{MAX_LEVEL:g} (+24 dBFS): "
                f"sample {flat} (channel {channel}) is {float(audio[channel, flat]):.6g}{more}")
    if max(-low, high) < SILENCE:
        return "render is silent"
    return None
