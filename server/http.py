"""Plain HTTP on the receiver's port (websockets' ``process_request``), before any upgrade:

    GET /healthz   200 "ok", or 503 with the reason: the disk refuses writes, or the tokens file
                   does not parse (no HELLO is accepted until it is fixed). Always open.
    GET /metrics   Prometheus text (server/metrics.py)
    GET /status    JSON: the receiver's figures and one entry per connected stream

With tokens (``serve --tokens``), /status and /metrics need ``Authorization: Bearer <token>``
(401 without one the file accepts); a token's scopes also limit the streams /status lists.
``serve --metrics-open`` leaves /metrics open for a scraper on a private network. Any other path
goes on to the websocket handshake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sendlearn.server.auth import TokenEntry
from sendlearn.server.metrics import exposition
from sendlearn.server.registry import StreamState

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from sendlearn.server.receiver import Receiver

TEXT = "text/plain; charset=utf-8"


def respond(status: HTTPStatus, body: bytes, content_type: str, *more: tuple[str, str]) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Connection", "close"), ("Cache-Control", "no-store"), *more])
    return Response(status.value, status.phrase, headers, body)


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def process_request(receiver: Receiver) -> Callable[[ServerConnection, Request], Response | None]:
    def process(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return health(receiver)
        if path not in ("/metrics", "/status"):
            return None
        entry: TokenEntry | None = None
        if receiver.tokens is not None and not (path == "/metrics" and receiver.metrics_open):
            if receiver.tokens.error is not None:
                return respond(HTTPStatus.SERVICE_UNAVAILABLE, f"{receiver.tokens.error}\n".encode(), TEXT)
            entry = receiver.tokens.entry(bearer(request))
            if entry is None:
                return respond(HTTPStatus.UNAUTHORIZED, b"a token is needed: Authorization: Bearer <token>\n", TEXT,
                               ("WWW-Authenticate", 'Bearer realm="sendlearn"'))
        if path == "/metrics":
            return respond(HTTPStatus.OK, exposition(), CONTENT_TYPE_LATEST)
        return respond(HTTPStatus.OK, json.dumps(status(receiver, entry)).encode(), "application/json")

    return process


def health(receiver: Receiver) -> Response:
    problems = []
    if receiver.storage_error is not None:
        problems.append(f"storage: {receiver.storage_error}")
    if receiver.tokens is not None and receiver.tokens.error is not None:
        problems.append(f"tokens: {receiver.tokens.error}")
    if problems:
        return respond(HTTPStatus.SERVICE_UNAVAILABLE, "".join(f"{p}\n" for p in problems).encode(), TEXT)
    return respond(HTTPStatus.OK, b"ok\n", TEXT)


def status(receiver: Receiver, entry: TokenEntry | None = None) -> dict[str, Any]:
    """The receiver's figures; its streams only those ``entry``'s scopes allow (None: all)."""
    streams = [connection.figures.status(connection.key, connection.acked)
               for connection in list(receiver.open_connections)
               if connection.key is not None and (entry is None or entry.allows(connection.key[0]))]
    return {
        "connections": sum(receiver.connections.values()), "streams": streams,
        "lingering": receiver.registry.count(StreamState.LINGERING),
        "finalising": receiver.registry.count(StreamState.FINALISING),
        "streams_finalised": receiver.streams_finalised,
        "storage_error": receiver.storage_error, "storage_failures": receiver.storage_failures,
        "refused": {code.name: n for code, n in receiver.refused.items()},
        "memory_in_flight": receiver.memory.held, "memory_in_flight_peak": receiver.memory.peak,
    }
