"""``Dataset``: the one way to read a data directory (docs/dataset.md, "Reading a dataset").

The top of ``sendlearn.dataset``'s layers: a ``DataDir`` (reader: sessions, streams, audio and
tables by sample range) that also gives its sessions' training windows (the ``sequences/`` cache
when it matches, else cut now). Exports, the report and the torch datasets build on this.
"""

from __future__ import annotations

from collections.abc import Iterator

from .reader import DataDir
from .sequences import session_windows
from .windows import Window


class Dataset(DataDir):
    """A data directory: ``sessions()``, ``streams(session)``, ``stream(session, stream)`` (reader),
    and ``windows(session)``."""

    def windows(self, session: str, window: float | None = None, overlap: float | None = None,
                min_events: int | None = None, tail: str | None = None) -> Iterator[Window]:
        """Training windows of ``session`` (``sendlearn.dataset.windows``): the ones ``sendlearn
        sequences`` stored, with their flags and cached features, when it has run with these
        settings (or none given); otherwise cut now (defaults 30 s, 5 s overlap, 10 events, the
        tail padded: ``tail="drop"`` cuts whole windows only). Each window's ``split`` is the
        session's (``train``, ``validation`` or ``test``: ``sendlearn sequences --split``, else
        80/10/10 by a hash of the session id)."""
        return session_windows(self, session, window, overlap, min_events, tail)
