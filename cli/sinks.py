"""The one place a command picks where blocks go (``capture.sink``): the store, straight into
``--data-dir``, or the link to ``--server``. Producers below never know which."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from sendlearn.capture.sink import Sink
from sendlearn.errors import UsageError


def choose_sink(server: str | None, data_dir: Path | None, *, writer: str, token: str | None = None,
                ssl_context: ssl.SSLContext | None = None, spool: Path | None = None) -> Sink:
    """The link to ``server`` when one is named, else the store on ``data_dir`` (created here);
    ``writer`` names the command in each stream.json's ``sender`` (store only); ``spool``
    holds a live link's unacknowledged blocks (link only). ``token`` defaults to
    ``$SENDLEARN_TOKEN``, which other local users cannot read off the process list."""
    if server is not None:
        from sendlearn.transport.link import LinkSink

        return LinkSink(server, token=token or os.environ.get("SENDLEARN_TOKEN") or None, ssl_context=ssl_context,
                        spool=spool)
    if data_dir is None:
        raise UsageError("give --data-dir or --server")
    from sendlearn.store.sink import StoreSink

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--data-dir {data_dir}: {exc.strerror or exc}") from None
    return StoreSink(data_dir, writer)
