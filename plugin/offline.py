"""The offline host: a session's tracks rendered, then captured block by block.

For each stream: the timeline (from the track's MIDI file) gives every event's sample; the
instrument renders the whole stream in one call (DawDreamer restarts at t = 0 each render,
so there is no block-by-block rendering); then the audio is cut into ``block_size`` blocks
and fed through a ``CaptureProcessor`` with the events that fall in each block at their
exact offsets, the playhead at the block's first sample and the automation breakpoints.

Every event of the file is captured (CC, pitch bend, aftertouch, sysex), whether or not
the instrument hears it. A render that comes out silent, non-finite, or with a length the
timeline does not predict is a failed ``TrackResult``: its stream is never opened, so no
block of it is written as good data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sendlearn.capture import StreamInfo

from .instrument import Instrument
from .processor import CaptureProcessor
from .render import RenderError, apply_effects, apply_gain, automation_curve, onset_lag, render_stream
from .session import Automation, Session, Track, gm_stream_name
from .timeline import TimedEvent, Timeline

SILENCE = 1e-6  # peak below -120 dBFS: the instrument made no sound

OpenStream = Callable[[StreamInfo], CaptureProcessor]
Progress = Callable[[str, int, int], None]


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


@dataclass(frozen=True, slots=True)
class _Part:
    """One stream of a track: a gm track has one per MIDI channel, others exactly one."""

    stream: str
    events: tuple[TimedEvent, ...]


def render_session(session: Session, open_stream: OpenStream, *, progress: Progress | None = None) -> list[TrackResult]:
    """Render every track of ``session`` and capture it through ``open_stream(info)``'s processor.

    One stream is captured (on a second thread) while the next one renders: DawDreamer lets go
    of the GIL while it renders, so the two overlap on two cores. Results keep session order.
    """
    pending: list[TrackResult | Future[TrackResult]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlearn-capture") as capture:
        for track in session.tracks:
            try:
                timeline = Timeline(track.midi, session.sample_rate)
            except (OSError, EOFError, ValueError, KeyError) as exc:  # mido's ways of saying "not a MIDI file"
                pending.append(_failed(track, track.name, 0, session.sample_rate, 0,
                                       f"cannot read {track.midi}: {exc}"))
                continue
            for part in stream_parts(track, timeline):
                rendered = _render_part(session, track, timeline, part)
                if isinstance(rendered, TrackResult):
                    pending.append(rendered)
                else:
                    pending.append(capture.submit(_capture_part, rendered, open_stream, progress))
        return [p.result() if isinstance(p, Future) else p for p in pending]


def stream_parts(track: Track, timeline: Timeline) -> list[_Part]:
    """The streams a track makes. ``gm``: one per channel that plays notes, each with that
    channel's messages plus every system message (sysex is for the whole device)."""
    if track.instrument.kind != "gm":
        return [_Part(track.name, tuple(timeline.events))]
    channels = sorted({e.channel for e in timeline.events if e.channel is not None and e.data[0] & 0xF0 == 0x90})
    return [
        _Part(gm_stream_name(track.name, ch), tuple(e for e in timeline.events if e.channel in (ch, None)))
        for ch in channels
    ]


@dataclass(frozen=True, slots=True)
class _Rendered:
    """A stream's audio, rendered and checked, waiting to be captured."""

    session: Session
    track: Track
    timeline: Timeline
    part: _Part
    audio: np.ndarray
    params: dict[str, list[tuple[int, float]]]
    lag: int | None


def _render_part(session: Session, track: Track, timeline: Timeline, part: _Part) -> _Rendered | TrackResult:
    frames, rate, size = timeline.length, session.sample_rate, session.block_size
    instrument: Instrument = track.instrument
    try:
        params = automation_points(track.automation, timeline, frames)
        curves = {name: automation_curve(points, frames) for name, points in params.items()}
        audio = render_stream(instrument, part.events, frames, rate, timeline=timeline,
                              block_size=size, automation=curves)
        if audio.shape[1] == frames:
            audio = apply_gain(apply_effects(audio, rate, [(e.name, dict(e.options)) for e in track.effects]),
                               track.gain_db)
    except (RenderError, ValueError, TypeError) as exc:
        return _failed(track, part.stream, frames, rate, len(part.events), f"render failed: {exc}")
    problem = check_render(audio, frames)
    if problem is not None:
        return _failed(track, part.stream, frames, rate, len(part.events), problem)
    lag = None if instrument.exact else onset_lag(audio, part.events)
    return _Rendered(session, track, timeline, part, audio, params, lag)


def _capture_part(rendered: _Rendered, open_stream: OpenStream, progress: Progress | None) -> TrackResult:
    session, track, timeline, part, audio, params, lag = (
        rendered.session, rendered.track, rendered.timeline, rendered.part, rendered.audio, rendered.params,
        rendered.lag)
    frames, rate, size = timeline.length, session.sample_rate, session.block_size
    instrument = track.instrument
    meta = () if lag is None else (("onset_lag_frames", lag),)  # FluidSynth: measured, never exact
    info = StreamInfo(session.name, part.stream, rate, audio.shape[0], size, track=track.name, host=instrument.host,
                      meta=meta)
    processor = open_stream(info)
    changes = sorted(
        ((sample, name, value) for name, points in params.items() for sample, value in points),
        key=lambda c: c[0],
    )
    try:
        blocks = feed_blocks(processor, audio, part.events, changes, timeline, size,
                             lambda done: progress(part.stream, done, frames) if progress else None)
    except RuntimeError as exc:  # the consumer gave up (HandOff.fail): this stream is not whole
        return _failed(track, part.stream, frames, rate, len(part.events), f"capture failed: {exc}")
    finally:
        processor.close()
    return TrackResult(track.name, part.stream, instrument.host, frames / rate, frames, len(part.events),
                       blocks, True, None, lag)


def feed_blocks(
    processor: CaptureProcessor, audio: np.ndarray, events: Sequence[TimedEvent],
    changes: Sequence[tuple[int, str, float]], timeline: Timeline, block_size: int,
    done: Callable[[int], None] | None = None,
) -> int:
    """Feed ``audio`` in ``block_size`` blocks (the last may be shorter) with the events and
    parameter changes that fall in each, at their offsets; return the number of blocks."""
    frames = audio.shape[1]
    e = c = blocks = 0
    for start in range(0, frames, block_size):
        end = min(start + block_size, frames)
        midi = []
        while e < len(events) and events[e].sample < end:
            midi.append((events[e].sample - start, events[e].data))
            e += 1
        params = []
        while c < len(changes) and changes[c][0] < end:
            params.append((changes[c][0] - start, changes[c][1], changes[c][2]))
            c += 1
        processor.process(audio[:, start:end], midi, timeline.playhead_at(start), params)
        blocks += 1
        if done is not None:
            done(end)
    if e != len(events):  # the timeline's length covers its last event: this is a bug, not bad input
        raise AssertionError(f"{len(events) - e} events fall after the stream's {frames} frames")
    return blocks


def automation_points(lanes: Sequence[Automation], timeline: Timeline, frames: int) -> dict[str, list[tuple[int, float]]]:
    """Each lane's points as (sample, value), in the stream; a point past the end is dropped
    and the value the line reaches at the last sample takes its place."""
    out: dict[str, list[tuple[int, float]]] = {}
    for lane in lanes:
        points = []
        for time, value in lane.points:
            seconds = Fraction(time) if lane.unit == "seconds" else timeline.seconds_at_beats(Fraction(time))
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


def check_render(audio: np.ndarray, frames: int) -> str | None:
    """Why ``audio`` is not good data, or None."""
    if audio.ndim != 2 or audio.shape[0] < 1:
        return f"render returned an array of shape {audio.shape}"
    if audio.shape[1] != frames:
        return f"render is {audio.shape[1]} frames long, the timeline says {frames}"
    if not np.isfinite(audio).all():
        return "render holds NaN or infinite samples"
    if float(np.max(np.abs(audio), initial=0.0)) < SILENCE:
        return "render is silent"
    return None


def _failed(track: Track, stream: str, frames: int, rate: int, events: int, reason: str) -> TrackResult:
    return TrackResult(track.name, stream, track.instrument.host, frames / rate, frames, events, 0, False, reason)
