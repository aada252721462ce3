"""The client side's TLS, one context for every sender (render, batch workers, live, status).

A wss:// receiver is verified against the system's trust store (``ssl.create_default_context``,
which honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), so a certificate from a public CA, or
from a private CA installed for the machine, works with no flag. ``--ca-file`` adds one more CA
(a receiver's own self-signed certificate, a lab's private CA) to that store; it does not
replace it.
"""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The system's trust store plus ``ca_file``, or None without one (``for_url`` then makes the
    system's context for a wss:// URL). Raises OSError/ssl.SSLError for a file that is not a CA."""
    if not ca_file:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


def for_url(url: str, context: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """What to pass as websockets' ``ssl=`` for ``url``: None for ws:// (a context there is an
    error), and for wss:// the context given or else the system's (``ssl=None`` is an error there)."""
    if not url.startswith(("wss://", "https://")):
        return None
    return context if context is not None else ssl.create_default_context()
