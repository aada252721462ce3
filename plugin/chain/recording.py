"""A recorded track: a take (``audio = "take.wav"``) through its effect chain, as two streams on one clock.

``NAME-dry`` is the recording as read (float32: bit for bit what soundfile reads, which is
exact for 16- and 24-bit PCM and float32 files); ``NAME-wet`` is the chain's output, block by
block with ``reset=False``, compensated for the chain's measured latency so wet sample ``k``
is the output for dry sample ``k`` (plugin/chain/effects.py). Both streams carry the same blocks on
the same grid: the playhead from the track's MIDI conductor or its ``bpm``/``meter``, and the
conductor's MIDI events inside the take; the wet stream also carries every effect parameter
change on its sample (params.parquet) and the latency facts (stream.json ``meta``).
"""

from __future__ import annotations

import numpy as np

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin.chain.feed import (
    CAPTURE_ERRORS,
    CHAIN_ERRORS,
    BlockFeeder,
    Progress,
    TrackResult,
    check_render,
    feed_through_chain,
    track_chain,
)
from sendlearn.plugin.processor import OpenStream
from sendlearn.plugin.session.timeline import MIDI_ERRORS, Timeline, steady_timeline
from sendlearn.plugin.session.tracks import Session, Track, dry_stream_name, wet_stream_name

DRY_HOST = "recording"
WET_HOST = "pedalboard"


def read_recording(track: Track) -> np.ndarray:
    """The take as float32 ``(channels, frames)``."""
    import soundfile

    assert track.audio is not None
    audio, _ = soundfile.read(str(track.audio), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def recording_timeline(track: Track, sample_rate: int) -> Timeline:
    """The take's clock: its MIDI conductor's, or one tempo and meter (``bpm``, ``meter``)."""
    if track.midi is not None:
        return Timeline(track.midi, sample_rate)
    return steady_timeline(track.bpm, track.meter, sample_rate)


def capture_recording(session: Session, track: Track, open_stream: OpenStream, progress: Progress | None = None,
                      timeline: Timeline | None = None) -> list[TrackResult]:
    """Capture ``track``'s dry and wet streams; two results, dry first. ``timeline``: the
    track's clock when its MIDI conductor has been read already."""
    rate, size = session.sample_rate, session.block_size
    dry_name, wet_name = dry_stream_name(track.name), wet_stream_name(track.name)

    def failed(frames: int, events: int, reason: str) -> list[TrackResult]:
        return [TrackResult(track.name, name, host, frames / rate, frames, events, 0, False, reason)
                for name, host in ((dry_name, DRY_HOST), (wet_name, WET_HOST))]

    try:
        audio = read_recording(track)
        timeline = recording_timeline(track, rate) if timeline is None else timeline
    except (RuntimeError, *MIDI_ERRORS) as exc:  # soundfile's, or mido's
        return failed(0, 0, f"cannot read {track.audio if track.midi is None else track.midi}: {exc}")
    frames, channels = audio.shape[1], audio.shape[0]
    events = [e for e in timeline.events if e.sample < frames]
    problem = check_render(audio, frames)
    if problem is not None:
        return failed(frames, len(events), problem.replace("render", "recording"))
    try:
        moves, latency, chain = track_chain(track.effects, track.effect_lanes(), timeline, frames, channels, size)
    except CHAIN_ERRORS as exc:
        return failed(frames, len(events), f"effects failed: {exc}")
    chain_text = ", ".join(f"{e.id or e.name.lower()}={e.name}" for e in track.effects) or "none"
    source = ("recording", track.audio.name if track.audio is not None else "")
    dry_info = StreamInfo(session.name, dry_name, rate, channels, size, track=track.name, host=DRY_HOST,
                          meta=(*session.meta, source, ("pair", wet_name)))
    wet_info = StreamInfo(session.name, wet_name, rate, channels, size, track=track.name, host=WET_HOST,
                          meta=(*session.meta, source, ("pair", dry_name), ("chain", chain_text), *latency.meta()))
    dry_processor, wet_processor = open_stream(dry_info), open_stream(wet_info)
    report = (lambda done: progress(wet_name, done, frames)) if progress else None
    playheads: dict[int, Playhead] = {}  # dry and wet share a block grid: each playhead is computed once
    dry = BlockFeeder(dry_processor, events, (), timeline, playheads=playheads)
    wet = BlockFeeder(wet_processor, events, moves, timeline, report, playheads=playheads)
    try:
        feed_through_chain(audio, chain, moves, size, wet, dry=dry, gain_db=track.gain_db)
        dry.check_all_fed()
        wet.check_all_fed()
    except CAPTURE_ERRORS as exc:
        return failed(frames, len(events), f"capture failed: {exc}")
    # closed only once whole: a failed capture is left for its sink to abort (plugin/offline/render.py)
    dry_processor.close()
    wet_processor.close()
    return [TrackResult(track.name, name, host, frames / rate, frames, len(events), feeder.blocks, True)
            for name, host, feeder in ((dry_name, DRY_HOST, dry), (wet_name, WET_HOST, wet))]
