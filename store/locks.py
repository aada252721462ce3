"""One writer per stream, across receiver workers (``serve --workers N``), batch workers and
restarts: each holds the stream's lock file (``flock``) while it writes the stream.

The lock files live inside the data dir, in ``<data-dir>/.locks/`` (mode 0700), one per stream,
opened with O_NOFOLLOW (a planted symlink is refused, not followed) and mode 0600: only who may
write the data dir may hold its streams. The kernel drops a lock when its process dies, so a
killed writer never leaves a stream locked. A holder removes its lock file when it lets go
(HELLOs alone leave nothing behind); a taker that finds it locked a file since removed or
replaced (its inode is no longer the path's) lets go and takes the new one, so two writers
never hold two files of one stream.

The folder must be this process's user's and closed to everyone else: one that another user
made first (in a data dir anyone may write) is refused with a ``StorageError`` naming its owner,
never used, since its maker could hold or plant any lock in it. A lock that cannot be taken for
any reason but another writer holding it is a ``StorageError`` too (the receiver's /healthz
says it), never "busy".
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from sendlearn.store.errors import StorageError

LOCKS = ".locks"


class StreamLocks:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / LOCKS
        self._held: dict[tuple[str, str], int] = {}
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only or missing data dir: said when a lock is taken

    def acquire(self, key: tuple[str, str], *, wait: bool = False) -> bool:
        """Take the stream's lock; False if another process holds it (``wait``: block until it
        is free instead). Ids are names: no '+' in them."""
        if key in self._held:
            return True
        name = f"{key[0]}+{key[1]}.lock"
        while True:
            fd = self._open(name)
            if fd is None:
                self._held[key] = -1
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._still_the_file(fd, name):
                    self._held[key] = fd
                    return True
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # its holder removed it as we waited: take the one there now

    def release(self, key: tuple[str, str]) -> None:
        fd = self._held.pop(key, None)
        if fd is not None and fd >= 0:
            try:
                os.unlink(self.dir / f"{key[0]}+{key[1]}.lock")  # while still held: no one holds a removed file for long
            except OSError:
                pass
            os.close(fd)  # closing the descriptor drops the flock

    def _still_the_file(self, fd: int, name: str) -> bool:
        try:
            on_disk = os.stat(self.dir / name, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def _check_folder(self) -> None:
        """The locks folder is a folder, this user's, mode 0700 (made so if it is ours and was not)."""
        found = os.lstat(self.dir)
        if not stat.S_ISDIR(found.st_mode):
            raise StorageError(f"{self.dir} is not a folder (a symlink?): refusing to lock in it")
        if found.st_uid != os.geteuid():
            raise StorageError(f"the data dir's {LOCKS}/ belongs to uid {found.st_uid}, not this service's user (uid "
                               f"{os.geteuid()}): refusing to lock in it (remove it; the data dir must not be "
                               "writable by other users)")
        if stat.S_IMODE(found.st_mode) != 0o700:
            os.chmod(self.dir, 0o700, follow_symlinks=False)

    def _open(self, name: str) -> int | None:
        """The lock file's descriptor; None on a read-only file system, where this process can
        write nothing, so it can hold a stream (serve a complete one) without excluding anyone."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._check_folder()
            return os.open(self.dir / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.EROFS:
                return None
            raise StorageError(f"lock file {name}: {exc.strerror or exc}") from None
