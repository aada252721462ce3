"""The link sink: streams sent over the wire to a receiver (``--server``), one ``Sender`` each.

The other implementation of ``capture.sink.Sink`` is the store (``store.sink``), which every
``--data-dir`` capture uses; this one is only for a receiver elsewhere. ``finish`` says BYE and
waits until the receiver has every block durably; ``abort`` closes without BYE, so the
receiver keeps the stream incomplete.
"""

from __future__ import annotations

import ssl
from typing import Any

from sendlearn.capture import HandOff, StreamInfo
from sendlearn.errors import SendLearnError, UsageError
from sendlearn.transport.retry import SenderError
from sendlearn.transport.sender import Sender


class ServerDown(SendLearnError):
    """The receiver named by --server did not answer: a failure (exit 1), not bad input."""


class LinkSink:
    name = "sendlearn sender"

    def __init__(self, url: str, *, token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 compression_level: int = 3) -> None:
        self.url, self.token, self.ssl_context, self.compression_level = url, token, ssl_context, compression_level

    def open(self, info: StreamInfo, handoff: HandOff, take: str | None) -> LinkStream:
        return LinkStream(Sender(self.url, info, handoff, token=self.token, take=take, ssl_context=self.ssl_context,
                                 compression_level=self.compression_level).start())


class LinkStream:
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def finish(self) -> str | None:
        try:
            self.sender.close()
        except SenderError as exc:
            return f"send failed: {exc}"
        offered = self.sender.handoff.offered
        if self.sender.blocks_acked != offered:
            return f"receiver acknowledged {self.sender.blocks_acked} of {offered} blocks"
        return None

    def abort(self, reason: str) -> None:
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
        with connect(url, open_timeout=10, compression=None, ssl=ssl_context):
            pass
    except InvalidURI as exc:
        raise UsageError(f"--server {url}: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerDown(f"cannot reach the receiver at {url}: {exc}") from None
