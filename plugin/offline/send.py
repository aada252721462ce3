"""A session rendered offline into a sink: the path every offline capture's blocks take.

Each track goes render -> ``CaptureProcessor`` -> hand-off -> sink: the store, straight into a
data dir, or the link, over the wire to a receiver (``capture.sink``; the command picks which).
So what an offline render proves (alignment, determinism) holds for the data a user gets,
whichever sink wrote it. ``Outcome`` is one stream's fate: the render's figures, then what the
sink made of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sendlearn.capture import StreamInfo
from sendlearn.capture.sink import Sink, SinkStream
from sendlearn.errors import SendLearnError
from sendlearn.plugin.chain.feed import Progress, TrackResult
from sendlearn.plugin.offline.render import render_session
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.takes import render_take
from sendlearn.plugin.session.timeline import Timeline
from sendlearn.plugin.session.tracks import Session

# blocks an offline producer may run ahead of a link's sender (512-frame stereo: ~20 MB, 44 s of
# audio): room to go on producing while the sender waits on its receiver. The store takes each
# block on the producer's thread (HandOff.deliver_to), so nothing queues there.
OFFLINE_HANDOFF_BLOCKS = 4096


@dataclass
class Outcome:
    """One stream's fate: the render's figures, then what the sink made of it."""

    input: str
    session: str
    track: str
    stream: str
    host: str
    seconds: float
    frames: int
    blocks: int
    events: int
    ok: bool
    reason: str | None = None
    lag: int | None = None  # FluidSynth's onset lag in frames; None for sample-exact hosts
    bytes_sent: int = 0
    path: str | None = None  # the stream's folder, when we know the data directory
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, input_name: str, session: Session, result: TrackResult) -> Outcome:
        """The render's figures of ``result``, before the sink has a say."""
        return cls(input_name, session.name, result.track, result.stream, result.host, result.seconds,
                   result.frames, result.blocks, result.events, result.ok, result.reason, result.lag)


class Refused:
    """A stream the sink would not open: nothing to finish or abort."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def finish(self) -> str | None:
        return self.reason

    def abort(self, reason: str) -> None:
        pass

    def figures(self) -> dict[str, Any]:
        return {}


def capture_session(session: Session, sink: Sink, *, progress: Progress | None = None, input_name: str = "",
                    timelines: Mapping[str, Timeline] | None = None) -> list[Outcome]:
    """Render ``session`` and capture every track into ``sink``.

    A stream counts as good only when the render passed its checks and the sink has every
    block durably (``finish``). A track whose render failed partway, or a render that raised,
    aborts its streams: they are never marked complete, and a rerun of the same take resumes
    them. ``timelines``: the session's MIDI files parsed already, by track
    (``plugin.inputs.read_timelines``).
    """
    streams: dict[str, SinkStream] = {}

    def open_stream(info: StreamInfo) -> CaptureProcessor:
        # offline: wait, never drop
        processor = CaptureProcessor.for_stream(info, realtime=False, capacity=OFFLINE_HANDOFF_BLOCKS)
        try:
            streams[info.stream] = sink.open(info, processor.handoff, render_take(session, info))
        except SendLearnError as exc:  # refused (another take complete on disk, the disk): this stream fails
            processor.handoff.fail(str(exc))  # its render stops at its first block and says why
            streams[info.stream] = Refused(str(exc))
        return processor

    try:
        results = render_session(session, open_stream, progress=progress, timelines=timelines)
    except BaseException as exc:
        for opened in streams.values():
            opened.abort(f"the render failed: {type(exc).__name__}: {exc}")
        raise
    outcomes = []
    for result in results:
        outcome = Outcome.of(input_name, session, result)
        stream = streams.pop(result.stream, None)
        if stream is not None:
            if result.ok:
                problem = stream.finish()
                if problem is not None:
                    outcome.ok, outcome.reason = False, problem
            else:
                stream.abort(result.reason or "the render failed")
            figures = stream.figures()
            outcome.bytes_sent = figures.pop("bytes_sent", 0)
            outcome.extra = figures
        outcomes.append(outcome)
    for stream in streams.values():  # opened, but missing from the results: its render never finished
        stream.abort("the render ended without this stream")
    return outcomes
