"""What reading a data directory can refuse (drawn in the tree of ``sendlearn.errors``)."""

from __future__ import annotations

from pathlib import Path

from sendlearn.errors import SendLearnError


class FormatError(SendLearnError, ValueError):
    """A dataset file this sendlearn cannot read: not the shape docs/dataset.md describes."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class FormatTooNew(FormatError):
    """A file written in a newer major format version than this sendlearn reads."""

    def __init__(self, path: str | Path, found: str, supported: str) -> None:
        self.found, self.supported = found, supported
        super().__init__(path, f"dataset format {found} is newer than this sendlearn reads ({supported}): "
                               "upgrade sendlearn")


class UnknownSession(SendLearnError, KeyError):
    """A session asked for by name that the data directory does not hold."""

    def __init__(self, session: str, data_dir: str | Path) -> None:
        self.session = session
        super().__init__(f"no session {session!r} in {data_dir}")

    def __str__(self) -> str:  # KeyError's own repr()s its message
        return str(self.args[0])
