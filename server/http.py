"""Plain HTTP on the receiver's port (websockets' ``process_request``), before any upgrade:

    GET /healthz   200 "ok", or 503 with the storage error while the disk refuses writes
    GET /metrics   Prometheus text (server/metrics.py)
    GET /status    JSON: the receiver's figures and one entry per connected stream

Any other path goes on to the websocket handshake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sendlearn.server.metrics import exposition
from sendlearn.server.registry import StreamState

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from sendlearn.server.receiver import Receiver


def respond(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Connection", "close"), ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


def process_request(receiver: Receiver) -> Callable[[ServerConnection, Request], Response | None]:
    def process(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            if receiver.storage_error is not None:
                return respond(HTTPStatus.SERVICE_UNAVAILABLE, f"storage: {receiver.storage_error}\n".encode(),
                               "text/plain; charset=utf-8")
            return respond(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return respond(HTTPStatus.OK, exposition(), CONTENT_TYPE_LATEST)
        if path == "/status":
            return respond(HTTPStatus.OK, json.dumps(status(receiver)).encode(), "application/json")
        return None

    return process


def status(receiver: Receiver) -> dict[str, Any]:
    streams = [connection.figures.status(connection.key, connection.acked)
               for connection in list(receiver.open_connections) if connection.key is not None]
    return {
        "connections": sum(receiver.connections.values()), "streams": streams,
        "lingering": receiver.registry.count(StreamState.LINGERING),
        "finalising": receiver.registry.count(StreamState.FINALISING),
        "streams_finalised": receiver.streams_finalised,
        "storage_error": receiver.storage_error, "storage_failures": receiver.storage_failures,
        "refused": {code.name: n for code, n in receiver.refused.items()},
        "memory_in_flight": receiver.memory.held, "memory_in_flight_peak": receiver.memory.peak,
    }
