"""One writer per stream, across receiver workers (``serve --workers N``), batch workers and
restarts: each holds the stream's lock file (``flock``) while it writes the stream.

The lock files live inside the data dir, in ``<data-dir>/.locks/`` (mode 0700), one per stream,
opened with O_NOFOLLOW (a planted symlink is refused, not followed) and mode 0600: only who may
write the data dir may hold its streams. The kernel drops a lock when its process dies, so a
killed writer never leaves a stream locked; the files themselves stay (removing a lock file
another process is about to lock would let two writers hold "the" lock at once).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from sendlearn.store.errors import StorageError

LOCKS = ".locks"


class StreamLocks:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / LOCKS
        self._held: dict[tuple[str, str], int] = {}

    def acquire(self, key: tuple[str, str], *, wait: bool = False) -> bool:
        """Take the stream's lock; False if another process holds it (``wait``: block until it
        is free instead). Ids are names: no '+' in them."""
        if key in self._held:
            return True
        fd = self._open(f"{key[0]}+{key[1]}.lock")
        if fd is None:
            self._held[key] = -1
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._held[key] = fd
        return True

    def release(self, key: tuple[str, str]) -> None:
        fd = self._held.pop(key, None)
        if fd is not None and fd >= 0:
            os.close(fd)  # closing the descriptor drops the flock

    def _open(self, name: str) -> int | None:
        """The lock file's descriptor; None on a read-only file system, where this process can
        write nothing, so it can hold a stream (serve a complete one) without excluding anyone."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.dir.is_symlink() or not self.dir.is_dir():
                raise StorageError(f"{self.dir} is not a folder (a symlink?): refusing to lock in it")
            return os.open(self.dir / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.EROFS:
                return None
            raise StorageError(f"lock file {name}: {exc.strerror or exc}") from None
