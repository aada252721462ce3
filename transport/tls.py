"""The client side's TLS: a wss:// receiver signed by a CA of its own (``--ca-file``)."""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context that trusts ``ca_file`` (and verifies the receiver's name against it), or None
    for the system's CAs (websockets' default for a wss:// URL)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None
