"""The link sink: streams sent over the wire to a receiver (``--server``), one ``Sender`` each.

The other implementation of ``capture.sink.Sink`` is the store (``store.sink``), which every
``--data-dir`` capture uses; this one is only for a receiver elsewhere. ``finish`` says BYE and
waits until the receiver has every block durably; ``abort`` closes without BYE, so the
receiver keeps the stream incomplete.

A live stream (``open_live``: ``sendlearn live --server``) has an adaptive sender (the quality
ladder), a spool of its own (in memory, or a folder per stream under ``spool``: a restart on it
goes on with the same take, from its next seq and sample), and says BYE with the producer's
closing figures, waiting for them (the sender can reach BYE a moment before the producer's
command has its final figures).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sendlearn.capture import HandOff, StreamInfo
from sendlearn.errors import SendLearnError, UsageError
from sendlearn.transport.retry import SenderError
from sendlearn.transport.sender import Sender
from sendlearn.transport.spool import Spool
from sendlearn.transport.tls import for_url

CLOSING_WAIT = 30.0  # seconds a live sender at BYE waits for the producer's closing figures


class ServerDown(SendLearnError):
    """The receiver named by --server did not answer: a failure (exit 1), not bad input."""


class LinkSink:
    name = "sendlearn sender"

    def __init__(self, url: str, *, token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 compression_level: int = 3, spool: Path | None = None) -> None:
        self.url, self.token, self.ssl_context, self.compression_level = url, token, ssl_context, compression_level
        self.spool = spool  # live streams' spool folders go under it (one per session-stream)

    def open(self, info: StreamInfo, handoff: HandOff, take: str | None) -> LinkStream:
        return LinkStream(Sender(self.url, info, handoff, token=self.token, take=take, ssl_context=self.ssl_context,
                                 compression_level=self.compression_level).start())

    def open_live(self, info: StreamInfo, handoff: HandOff, closing: Callable[[], dict[str, Any]]) -> LinkStream:
        spool = Spool(None if self.spool is None else self.spool / f"{info.session}-{info.stream}", info)
        ended = threading.Event()

        def closing_figures() -> dict[str, Any]:
            ended.wait(CLOSING_WAIT)
            if stream.aborted:  # aborted while this sender waited at BYE: an aborted stream never says it
                raise SenderError("aborted, no BYE")
            return closing() if ended.is_set() else {}

        sender = Sender(self.url, info, handoff, token=self.token, adaptive=True, spool=spool,
                        ssl_context=self.ssl_context, compression_level=self.compression_level,
                        stats=closing_figures)
        stream = LinkStream(sender, ended)
        stream.first_seq, stream.start_sample = spool.next_seq, spool.next_sample  # a spool left by an earlier run
        sender.start()
        return stream


class LinkStream:
    def __init__(self, sender: Sender, ended: threading.Event | None = None) -> None:
        self.sender = sender
        self.ended = ended  # live: set when the producer's closing figures can be asked for
        self.first_seq, self.start_sample = 0, 0
        self.aborted = False

    def finish(self) -> str | None:
        if self.ended is not None:
            self.ended.set()
        try:
            self.sender.close()
        except SenderError as exc:
            return f"send failed: {exc}"
        offered = self.sender.handoff.offered
        if self.sender.blocks_acked != offered:
            return f"receiver acknowledged {self.sender.blocks_acked} of {offered} blocks"
        return None

    def abort(self, reason: str) -> None:
        self.aborted = True
        if self.ended is not None:
            self.ended.set()  # a sender waiting at BYE for the closing figures stops (without BYE)
        self.sender.abort(reason)

    def figures(self) -> dict[str, Any]:
        return {"bytes_sent": self.sender.bytes_sent}


def check_server(url: str, ssl_context: ssl.SSLContext | None = None) -> None:
    """Fail fast on a receiver that is not there (``ServerDown``), instead of spooling a whole
    render for it; a URL that is not ws:// or wss:// is a UsageError."""
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--server {url}: expected a ws:// or wss:// URL")
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        # a bare open and close: the receiver sees a connection without HELLO and drops it quietly
        with connect(url, open_timeout=10, compression=None, ssl=for_url(url, ssl_context)):
            pass
    except InvalidURI as exc:
        raise UsageError(f"--server {url}: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerDown(f"cannot reach the receiver at {url}: {exc}") from None
