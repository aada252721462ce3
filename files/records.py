"""An append-only, checksummed record log: the receiver's durable memory of a stream.

Each record is ``<magic "SLJ1"><length u32><crc32 u32><msgpack body>``, the CRC over the
length and the body. Reading walks record by record; where a record does not check out, the
reader looks for the next magic that starts an intact record and goes on from there, so one
damaged record (a flipped bit on disk) costs that record only, and is reported as ``Damage``.
Bytes after the last intact record are a torn tail from a crash: ``Journal.open`` truncates
them, so what survives is what was fsynced (and acknowledged) plus possibly a little more.

Writes go through the journal's own buffer to a raw file descriptor, so a failed write or
fsync leaves nothing half-buffered to be flushed later: ``abandon`` drops it.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

MAGIC = b"SLJ1"
_HEADER = struct.Struct("<4sII")
MAX_RECORD = 64 * 1024 * 1024
_WRITE_AT = 64 * 1024  # buffered bytes that go to the file without waiting for sync


@dataclass(frozen=True)
class Damage:
    """Bytes ``start``..``end`` of a journal that hold no intact record, with intact ones after
    them; ``before`` intact records precede it."""

    start: int
    end: int
    before: int


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._written = os.fstat(self._fd).st_size  # bytes in the file (not all synced)
        self._synced = self._written  # bytes known durable (as of open: what a reader found)
        self._buffer = bytearray()
        self._lock = threading.Lock()  # a commit thread syncs while the receiver's loop appends
        self.torn_bytes = 0  # bytes of a torn tail that opening cut off

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, list[dict[str, Any]]]:
        """Open (creating if needed) and return the intact records already in it."""
        journal, records, _ = cls.open_checked(path)
        return journal, records

    @classmethod
    def open_checked(cls, path: Path) -> tuple[Journal, list[dict[str, Any]], list[Damage]]:
        """As ``open``, also returning the damaged stretches between intact records."""
        records, good_end, damage = read_records_checked(path)
        torn = path.stat().st_size - good_end if path.exists() else 0
        if torn:
            with open(path, "r+b") as f:
                f.truncate(good_end)  # drop a torn tail from a crash
        journal = cls(path)
        journal.torn_bytes = torn
        return journal, records, damage

    def append(self, record: dict[str, Any]) -> int:
        """Append ``record``; returns the byte offset it starts at (for ``read_record_at``)."""
        frame = _frame(msgpack.packb(record, use_bin_type=True))
        with self._lock:
            offset = self.size
            self._buffer += frame
            if len(self._buffer) >= _WRITE_AT:
                self._flush()
        return offset

    @property
    def size(self) -> int:
        return self._written + len(self._buffer)

    def flush(self) -> None:
        """Hand buffered records to the file (the page cache). Raises OSError; on a short
        write the rest stays buffered for the next try."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        fd = self._require()
        while self._buffer:
            n = os.write(fd, self._buffer)
            del self._buffer[:n]
            self._written += n

    def sync(self) -> None:
        """Make every appended record durable."""
        with self._lock:
            self._flush()
            written, fd = self._written, self._require()
        os.fsync(fd)  # outside the lock: appends go on meanwhile
        self._synced = written

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            self.abandon()

    def abandon(self, rollback: bool = False) -> None:
        """Close without writing what is buffered: after a storage error nothing more is written.
        ``rollback`` also cuts the file back to its last successful sync (best effort: the disk
        is failing), since what was written after it may be lost however it reads now."""
        with self._lock:
            fd, self._fd = self._fd, None
            self._buffer.clear()
        if fd is not None:
            try:
                if rollback:
                    os.ftruncate(fd, self._synced)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _require(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: journal is closed")
        return self._fd


def _frame(body: bytes) -> bytes:
    length = struct.pack("<I", len(body))
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body, zlib.crc32(length))) + body


def read_record_at(path: Path, offset: int) -> dict[str, Any]:
    """The record that starts at ``offset``; ValueError if it is not a whole, intact one."""
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise ValueError(f"{path}: no record at {offset}")
        length = _HEADER.unpack(header)[1]
        data = header + f.read(min(length, MAX_RECORD))
    parsed = _parse(data, 0)
    if parsed is None:
        raise ValueError(f"{path}: record at {offset} is damaged")
    return parsed[0]


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All intact records of ``path`` and the byte offset where the intact ones end."""
    records, end, _ = read_records_checked(path)
    return records, end


def read_records_checked(path: Path) -> tuple[list[dict[str, Any]], int, list[Damage]]:
    """As ``read_records``, also returning the damaged stretches between intact records."""
    if not path.exists():
        return [], 0, []
    records: list[dict[str, Any]] = []
    damage: list[Damage] = []
    end = 0
    for _, record, record_end, skipped in _iter(path.read_bytes()):
        if skipped is not None:
            damage.append(Damage(skipped[0], skipped[1], len(records)))
        records.append(record)
        end = record_end
    return records, end, damage


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(offset, record)`` for each intact record of ``path``."""
    if not path.exists():
        return
    for start, record, _, _ in _iter(path.read_bytes()):
        yield start, record


def _parse(data: bytes, position: int) -> tuple[dict[str, Any], int] | None:
    """The intact record at ``position`` and where it ends, or None."""
    if position + _HEADER.size > len(data):
        return None
    magic, length, crc = _HEADER.unpack_from(data, position)
    start = position + _HEADER.size
    end = start + length
    if magic != MAGIC or length > MAX_RECORD or end > len(data):
        return None
    if zlib.crc32(data[start:end], zlib.crc32(data[position + 4:position + 8])) != crc:
        return None
    try:
        return msgpack.unpackb(data[start:end], raw=False), end
    except Exception:  # a body that passed its CRC but does not decode: not a record
        return None


def _iter(data: bytes) -> Iterator[tuple[int, dict[str, Any], int, tuple[int, int] | None]]:
    """(start, record, end, damage skipped just before it) for each intact record."""
    position = 0
    while position < len(data):
        parsed = _parse(data, position)
        skipped = None
        start = position
        if parsed is None:
            # damaged here: the next intact record, found by its magic, if there is one
            found = _next_intact(data, position + 1)
            if found is None:
                return  # nothing intact after: a torn tail
            start, parsed = found
            skipped = (position, start)
        record, end = parsed
        yield start, record, end, skipped
        position = end


def _next_intact(data: bytes, position: int) -> tuple[int, tuple[dict[str, Any], int]] | None:
    """The first intact record at or after ``position``, found by its magic: (start, parsed)."""
    start = data.find(MAGIC, position)
    while start != -1:
        parsed = _parse(data, start)
        if parsed is not None:
            return start, parsed
        start = data.find(MAGIC, start + 1)
    return None
