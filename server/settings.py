"""The receiver's service bounds (docs/serve.md): connections, memory, timeouts, old work folders.

Frame-level bounds (events, decoded bytes, block sizes) are ``transport.limits.Limits``; these
are the ones only a server has. Each is a ``sendlearn serve`` flag and a SENDLEARN_* variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sendlearn.transport.limits import MiB, settings_from_env


@dataclass(frozen=True, slots=True)
class Service:
    hello_timeout: float = 10.0  # seconds from connecting to HELLO
    idle_timeout: float = 60.0  # seconds without a message after HELLO (pings do not count)
    max_connections: int = 256  # open connections in all
    max_connections_per_address: int = 64  # ... and from one IP address
    memory_in_flight: int = 256 * MiB  # bytes of frames being decoded and stored at once, all connections
    work_expiry: float = 7 * 86400.0  # seconds an untouched, unconnected .work folder is kept
    decode_workers: int = 2  # threads that decode, verify and store frames off the event loop
    # a plain frame up to this size is parsed on the loop, and a BLOCK whose audio decodes to at most
    # this many bytes is decoded and stored there; the rest goes to the decode threads
    inline_bytes: int = 65536
    workers: int = 1  # receiver processes sharing the port (SO_REUSEPORT), one writer per stream (store/locks.py)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Service:
        return settings_from_env(cls, environ, overrides)
