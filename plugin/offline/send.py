"""A session rendered offline and sent to a receiver: the whole chain a live plugin's blocks take.

Each track goes render -> ``CaptureProcessor`` -> ``Sender`` -> websocket -> receiver ->
dataset, so what an offline render proves (alignment, determinism) holds for the data a user
gets. ``Outcome`` is one stream's fate: the render's figures, then what the link made of it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sendlearn.capture import StreamInfo
from sendlearn.errors import SendLearnError, UsageError
from sendlearn.plugin.chain.feed import Progress, TrackResult
from sendlearn.plugin.offline.render import render_session
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.takes import render_take
from sendlearn.plugin.session.timeline import Timeline
from sendlearn.plugin.session.tracks import Session

if TYPE_CHECKING:
    from sendlearn.transport.sender import Sender


class ServerDown(SendLearnError):
    """The receiver named by --server did not answer: a failure (exit 1), not bad input."""


@dataclass
class Outcome:
    """One stream's fate: the render's figures, then what the link made of it."""

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
        """The render's figures of ``result``, before the link has a say."""
        return cls(input_name, session.name, result.track, result.stream, result.host, result.seconds,
                   result.frames, result.blocks, result.events, result.ok, result.reason, result.lag)


def capture_session(session: Session, url: str, *, token: str | None = None, progress: Progress | None = None,
                    input_name: str = "", compression_level: int = 3, ssl_context: ssl.SSLContext | None = None,
                    timelines: Mapping[str, Timeline] | None = None) -> list[Outcome]:
    """Render ``session`` and stream every track to the receiver at ``url``.

    A stream counts as good only when the render passed its checks and the receiver has
    acknowledged every block durably (``Sender.close`` waits for that). ``compression_level``
    0 sends frames uncompressed: right for a loopback receiver, where zstd costs CPU on both
    ends and saves no time. ``timelines``: the session's MIDI files parsed already, by track
    (``plugin.inputs.read_timelines``).
    """
    from sendlearn.transport.sender import Sender, SenderError

    senders: dict[str, Sender] = {}

    def open_stream(info: StreamInfo) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=False)  # offline: wait, never drop
        senders[info.stream] = Sender(url, info, processor.handoff, token=token, take=render_take(session, info),
                                      ssl_context=ssl_context, compression_level=compression_level).start()
        return processor

    # If the render raises, the senders are left unclosed on purpose: closing sends BYE,
    # which would mark a half-rendered stream complete. Unclosed, it ends "connection lost".
    results = render_session(session, open_stream, progress=progress, timelines=timelines)
    send_errors: dict[str, str] = {}
    for stream, sender in senders.items():
        try:
            sender.close()
        except SenderError as exc:
            send_errors[stream] = f"send failed: {exc}"
    outcomes = []
    for result in results:
        outcome = Outcome.of(input_name, session, result)
        sent = senders.get(result.stream)
        if sent is not None:
            outcome.bytes_sent = sent.bytes_sent
            if result.ok and result.stream in send_errors:
                outcome.ok, outcome.reason = False, send_errors[result.stream]
            elif result.ok and sent.blocks_acked != result.blocks:
                outcome.ok = False
                outcome.reason = f"receiver acknowledged {sent.blocks_acked} of {result.blocks} blocks"
        outcomes.append(outcome)
    return outcomes


def check_server(url: str, ssl_context: ssl.SSLContext | None = None) -> None:
    """Fail fast on a receiver that is not there (``ServerDown``), instead of spooling a whole
    render for it; a URL that is not ws:// or wss:// is a UsageError."""
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--server {url}: expected a ws:// or wss:// URL")
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        # a bare open and close: the receiver sees a connection without HELLO and drops it quietly
        with connect(url, open_timeout=10, compression=None, ssl=ssl_context):
            pass
    except InvalidURI as exc:
        raise UsageError(f"--server {url}: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerDown(f"cannot reach the receiver at {url}: {exc}") from None
