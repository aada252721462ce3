"""Where things live under a data directory, and how bytes get there: a public file aside, then
renamed into place (``write_aside``); a work file in place, each write whole (``write_fully``).
Whatever the disk refuses (an OSError) becomes StorageError, naming what was being done (``storage``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sendlearn.capture import check_name

from .errors import StorageError

WORK = ".work"


def stream_dir(data_dir: Path, session: str, stream: str) -> Path:
    """``<data_dir>/sessions/<session>/<stream>``, for ids already checked to be safe names."""
    root = data_dir.resolve()
    path = root / "sessions" / check_name(session, "session") / check_name(stream, "stream")
    if not path.resolve().is_relative_to(root):  # belt and braces: names cannot escape
        raise ValueError(f"{path} is outside {root}")
    return path


def write_aside(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``target``, fsync it, rename it into place.

    A crash leaves either the old whole file or the new whole file, never half of one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a dataset is for its readers too
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_json(target: Path, obj: Any) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")

    write_aside(target, write)


def write_fully(fd: int, data: bytes, offset: int) -> None:
    """pwrite all of ``data``: a full disk may take part of it and refuse the rest."""
    view = memoryview(data)
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


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (files created, renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
