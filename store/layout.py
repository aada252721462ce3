"""Where things live under a data directory, and how bytes get there: a public file aside, then
renamed into place (``write_aside``, from files/aside.py, which the derived files use too); a
work file in place, each write whole (``write_fully``).
Whatever the disk refuses (an OSError) becomes StorageError, naming what was being done (``storage``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sendlearn.capture import check_name
from sendlearn.files.aside import fsync_dir, write_aside, write_json
from sendlearn.store.errors import StorageError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

WORK = ".work"


def stream_dir(data_dir: Path, session: str, stream: str) -> Path:
    """``<data_dir>/sessions/<session>/<stream>``, for ids already checked to be safe names."""
    root = data_dir.resolve()
    path = root / "sessions" / check_name(session, "session") / check_name(stream, "stream")
    if not path.resolve().is_relative_to(root):  # belt and braces: names cannot escape
        raise ValueError(f"{path} is outside {root}")
    return path


def write_fully(fd: int, data: Buffer, offset: int) -> None:
    """pwrite all of ``data`` (bytes, or a C-contiguous array: written from its own memory, no
    copy): a full disk may take part of it and refuse the rest."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:  # no progress and no error: treat as a full disk
            raise OSError(28, os.strerror(28))
        view, offset = view[n:], offset + n


@contextmanager
def storage(what: str) -> Iterator[None]:
    """Turn an OSError while doing ``what`` into a StorageError naming it."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"{exc.strerror or exc} ({what})") from exc


__all__ = ["WORK", "fsync_dir", "storage", "stream_dir", "write_aside", "write_fully", "write_json"]
