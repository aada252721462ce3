"""Where things live under a data directory, and the one way files get there: aside, then renamed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sendlearn.capture import check_name

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
    write_aside(target, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (files created, renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
