"""How a file of a data dir is put in place: written aside under a temporary name, then renamed
over its target, so a reader or a crash sees the old whole file or the new whole file, never
half of one. The receiver's public files (store/finalise.py) and the derived ones
(sequences, quality, the report) all go through ``write_aside``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_aside(target: Path, write: Callable[[Path], object], *, durable: bool = True) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``target``, then rename it into place.

    ``durable``: fsync the file before the rename and the folder after it, so the file survives a
    power cut once this returns (the receiver's files); derived files a rerun rebuilds skip it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a dataset is for its readers too
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def write_json(target: Path, obj: Any, *, durable: bool = True, **dumps: Any) -> None:
    """``obj`` as indented JSON (``dumps``: more json.dumps options), written aside."""
    write_aside(target, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, **dumps) + "\n"), durable=durable)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (files created, renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
