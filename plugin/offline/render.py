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

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin.chain.feed import (
    CAPTURE_ERRORS,
    CHAIN_ERRORS,
    SILENCE,
    BlockFeeder,
    Progress,
    TrackResult,
    automation_curve,
    automation_points,
    check_render,
    feed_through_chain,
    track_chain,
)
from sendlearn.plugin.offline.dawdreamer import RenderError, render_stream, stream_facts
from sendlearn.plugin.offline.fluidsynth import onset_lag
from sendlearn.plugin.processor import CaptureProcessor, OpenStream
from sendlearn.plugin.session.timeline import MIDI_ERRORS, TimedEvent, Timeline
from sendlearn.plugin.session.tracks import Session, Track, dry_stream_name, gm_stream_name, wet_stream_name

__all__ = ["SILENCE", "OpenStream", "Progress", "TrackResult", "automation_points", "check_render", "feed_blocks",
           "render_session", "session_streams", "stream_parts"]


@dataclass(frozen=True, slots=True)
class _Part:
    """One stream of a track: a gm track has one per MIDI channel, others exactly one."""

    stream: str
    events: tuple[TimedEvent, ...]


def render_session(session: Session, open_stream: OpenStream, *, progress: Progress | None = None,
                   timelines: Mapping[str, Timeline] | None = None) -> list[TrackResult]:
    """Render every track of ``session`` and capture it through ``open_stream(info)``'s processor.

    One stream is captured (on a second thread) while the next one renders: DawDreamer lets go
    of the GIL while it renders, so the two overlap on two cores. Results keep session order.
    ``timelines``: the tracks' MIDI files parsed already, by track name
    (``plugin.inputs.read_timelines``); a track missing from it has its file read here.
    """
    from sendlearn.plugin.chain.recording import capture_recording

    timelines = timelines or {}
    pending: list[TrackResult | Future[TrackResult] | Future[list[TrackResult]]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlearn-capture") as capture:
        for track in session.tracks:
            if track.recorded:
                pending.append(capture.submit(capture_recording, session, track, open_stream, progress,
                                              timelines.get(track.name)))
                continue
            timeline = timelines.get(track.name)
            if timeline is None:
                try:
                    timeline = Timeline(track.midi, session.sample_rate)
                except MIDI_ERRORS as exc:
                    pending.append(_failed(track, track.name, 0, session.sample_rate, 0,
                                           f"cannot read {track.midi}: {exc}"))
                    continue
            for part in stream_parts(track, timeline):
                rendered = _render_part(session, track, timeline, part)
                if isinstance(rendered, TrackResult):
                    pending.append(rendered)
                else:
                    pending.append(capture.submit(_capture_part, rendered, open_stream, progress))
        results: list[TrackResult] = []
        for p in pending:
            done = p.result() if isinstance(p, Future) else p
            results += done if isinstance(done, list) else [done]
        return results


def session_streams(session: Session, timelines: Mapping[str, Timeline]) -> list[tuple[Track, str]]:
    """(track, stream id) of every stream ``render_session`` writes for ``session``; ``timelines``
    holds the timeline of every track that names a MIDI file (a gm track makes a stream per
    channel that plays)."""
    streams: list[tuple[Track, str]] = []
    for track in session.tracks:
        if track.recorded:
            streams += [(track, dry_stream_name(track.name)), (track, wet_stream_name(track.name))]
        else:
            streams += [(track, part.stream) for part in stream_parts(track, timelines[track.name])]
    return streams


def stream_parts(track: Track, timeline: Timeline) -> list[_Part]:
    """The streams a track makes. ``gm``: one per channel that plays notes, each with that
    channel's messages plus every system message (sysex is for the whole device)."""
    if track.instrument is None or track.instrument.kind != "gm":
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
    playheads: dict[int, Playhead]  # by block start, worked out while the instrument rendered


def _render_part(session: Session, track: Track, timeline: Timeline, part: _Part) -> _Rendered | TrackResult:
    frames, rate = timeline.length, session.sample_rate
    instrument = track.instrument
    assert instrument is not None  # a recording is captured by recording.capture_recording
    # the blocks' playheads on a second thread while the instrument renders: DawDreamer lets go of
    # the GIL, and the capture (on the critical path after the render) finds them ready
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlearn-playheads") as beside:
        playheads = beside.submit(block_playheads, timeline, frames, session.block_size)
        try:
            params = automation_points(track.instrument_lanes(), timeline, frames)
            curves = {name: automation_curve(points, frames) for name, points in params.items()}
            audio = render_stream(instrument, part.events, frames, rate, timeline=timeline, automation=curves)
        except (RenderError, ValueError, TypeError) as exc:
            return _failed(track, part.stream, frames, rate, len(part.events), f"render failed: {exc}")
    problem = check_render(audio, frames)
    if problem is not None:
        return _failed(track, part.stream, frames, rate, len(part.events), problem)
    lag = None if instrument.exact else onset_lag(audio, part.events)
    return _Rendered(session, track, timeline, part, audio, params, lag, playheads.result())


def block_playheads(timeline: Timeline, frames: int, block_size: int) -> dict[int, Playhead]:
    """The playhead of every block of a ``frames``-long stream, by its first sample."""
    return {start: timeline.playhead_at(start) for start in range(0, frames, block_size)}


def _capture_part(rendered: _Rendered, open_stream: OpenStream, progress: Progress | None) -> TrackResult:
    """The instrument's audio through the track's effect chain, block by block, into its stream."""
    session, track, timeline, part, audio, params, lag = (
        rendered.session, rendered.track, rendered.timeline, rendered.part, rendered.audio, rendered.params,
        rendered.lag)
    frames, rate, size = timeline.length, session.sample_rate, session.block_size
    instrument = track.instrument
    assert instrument is not None
    channels = audio.shape[0]
    try:
        moves, latency, chain = track_chain(track.effects, track.effect_lanes(), timeline, frames, channels, size)
    except CHAIN_ERRORS as exc:
        return _failed(track, part.stream, frames, rate, len(part.events), f"effects failed: {exc}")
    meta: tuple = session.meta  # the session file's [meta]: its facts, in every stream
    meta += () if lag is None else (("onset_lag_frames", lag),)  # FluidSynth: measured, never exact
    meta += stream_facts(instrument, part.events, frames, rate)  # Faust: voices given, notes stolen
    if track.effects:
        meta += latency.meta()
    info = StreamInfo(session.name, part.stream, rate, channels, size, track=track.name, host=instrument.host,
                      meta=meta)
    processor = open_stream(info)
    changes = sorted(
        [(sample, name, value) for name, points in params.items() for sample, value in points] + moves,
        key=lambda c: c[0],
    )
    feeder = BlockFeeder(processor, part.events, changes, timeline,
                         (lambda done: progress(part.stream, done, frames)) if progress else None,
                         playheads=rendered.playheads)
    try:
        feed_through_chain(audio, chain, moves, size, feeder, gain_db=track.gain_db)
        feeder.check_all_fed()
    except CAPTURE_ERRORS as exc:
        return _failed(track, part.stream, frames, rate, len(part.events), f"capture failed: {exc}")
    # closed only when every block is in: a link's sender says BYE once its hand-off is closed and
    # drained, so closing a failed capture here could complete a short stream before the sink's
    # abort lands. A failed one is left open for the sink to abort (plugin/offline/send.py).
    processor.close()
    return TrackResult(track.name, part.stream, instrument.host, frames / rate, frames, len(part.events),
                       feeder.blocks, True, None, lag)


def feed_blocks(
    processor: CaptureProcessor, audio: np.ndarray, events: Sequence[TimedEvent],
    changes: Sequence[tuple[int, str, float]], timeline: Timeline, block_size: int,
    done: Callable[[int], None] | None = None,
) -> int:
    """Feed ``audio`` in ``block_size`` blocks (the last may be shorter) with the events and
    parameter changes that fall in each, at their offsets; return the number of blocks."""
    feeder = BlockFeeder(processor, events, changes, timeline, done)
    for start in range(0, audio.shape[1], block_size):
        feeder.feed(audio[:, start:start + block_size])
    feeder.check_all_fed()
    return feeder.blocks


def _failed(track: Track, stream: str, frames: int, rate: int, events: int, reason: str) -> TrackResult:
    return TrackResult(track.name, stream, track.host, frames / rate, frames, events, 0, False, reason)
