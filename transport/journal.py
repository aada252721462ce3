"""An append-only, checksummed record log: the receiver's durable memory of a stream.

Each record is ``<length u32><crc32 u32><msgpack body>``. A crash can leave a torn last
record; ``Journal.open`` reads up to the last whole record and truncates the rest, so what
survives is exactly what was fsynced (and acknowledged) plus possibly a little more.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

_HEADER = struct.Struct("<II")
MAX_RECORD = 64 * 1024 * 1024


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - lives as long as the journal

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, list[dict[str, Any]]]:
        """Open (creating if needed) and return the whole records already in it."""
        records, good_end = read_records(path)
        if path.exists() and path.stat().st_size != good_end:
            with open(path, "r+b") as f:
                f.truncate(good_end)  # drop a torn tail from a crash
        return cls(path), records

    def append(self, record: dict[str, Any]) -> int:
        """Append ``record``; returns the byte offset it starts at (for ``read_record_at``)."""
        body = msgpack.packb(record, use_bin_type=True)
        offset = self._file.tell()
        self._file.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
        return offset

    @property
    def size(self) -> int:
        return self._file.tell()

    def sync(self) -> None:
        """Make every appended record durable."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def read_record_at(path: Path, offset: int) -> dict[str, Any]:
    """The record that starts at ``offset``; ValueError if it is not a whole, intact one."""
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise ValueError(f"{path}: no record at {offset}")
        length, crc = _HEADER.unpack(header)
        body = f.read(length)
    if len(body) != length or zlib.crc32(body) != crc:
        raise ValueError(f"{path}: record at {offset} is damaged")
    return msgpack.unpackb(body, raw=False)


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All whole records of ``path`` and the byte offset where the whole ones end."""
    if not path.exists():
        return [], 0
    return _read(path.read_bytes())


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(offset, record)`` for each whole record of ``path``."""
    if not path.exists():
        return
    start = 0
    for record, end in _iter(path.read_bytes()):
        yield start, record
        start = end


def _read(data: bytes) -> tuple[list[dict[str, Any]], int]:
    records = []
    position = 0
    for record, end in _iter(data):
        records.append(record)
        position = end
    return records, position


def _iter(data: bytes) -> Iterator[tuple[dict[str, Any], int]]:
    position = 0
    while position + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, position)
        start = position + _HEADER.size
        end = start + length
        if length > MAX_RECORD or end > len(data):
            return
        body = data[start:end]
        if zlib.crc32(body) != crc:
            return
        try:
            record = msgpack.unpackb(body, raw=False)
        except Exception:  # a body that passed its CRC but does not decode: stop here
            return
        yield record, end
        position = end
