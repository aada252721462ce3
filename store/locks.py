"""One writer per stream across processes: ``sendlearn serve --workers N`` runs N receivers on
one port (SO_REUSEPORT), and each holds a stream's lock file (``flock``) while it has the stream
connected, lingering or being finalised. The lock files live outside the data dir, in the
temporary directory, one folder per data dir; the kernel drops a lock when its process dies."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path


class StreamLocks:
    def __init__(self, data_dir: Path) -> None:
        digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
        self.dir = Path(tempfile.gettempdir()) / "sendlearn-locks" / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        self._held: dict[tuple[str, str], int] = {}

    def acquire(self, key: tuple[str, str]) -> bool:
        """Take the stream's lock if no other process holds it (ids are names: no '+' in them)."""
        if key in self._held:
            return True
        fd = os.open(self.dir / f"{key[0]}+{key[1]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[key] = fd
        return True

    def release(self, key: tuple[str, str]) -> None:
        fd = self._held.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
