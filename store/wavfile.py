"""The work audio file is the public float WAV in the making.

A stream's samples go to ``.work/audio.wav`` behind a float WAV header that libsndfile wrote
for zero frames, each block at its own sample position. When a complete stream is finalised
into a float WAV, only the header's three sizes change (RIFF, ``fact`` frames, ``data``) and
the file is linked into place: the store writes a block's samples to disk once, not twice
(a 20-minute stereo render: 460 MB not copied, re-read or fsynced again). The bytes equal
what soundfile writes for the same samples (tests/test_store_format.py).

Work folders from before hold ``.work/audio.f32``, headerless: their data starts at 0.
"""

from __future__ import annotations

import io
import os
import struct
from functools import lru_cache

import soundfile

from sendlearn.store.errors import StorageError

SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command; soundfile has no wrapper for it
LEGACY_NAME = "audio.f32"  # headerless interleaved float32 (work folders of earlier versions)
WORK_NAME = "audio.wav"
MAX_RIFF = 0xFFFFFFFF  # a RIFF size is 32 bits: a longer stream is copied by libsndfile instead


def no_peak_chunk(out: soundfile.SoundFile) -> None:
    """No PEAK chunk: it holds a timestamp, and equal data must give equal files."""
    soundfile._snd.sf_command(out._file, SFC_SET_ADD_PEAK_CHUNK, soundfile._ffi.NULL, 0)


@lru_cache(maxsize=16)
def empty_header(sample_rate: int, channels: int) -> bytes:
    """The header libsndfile writes for a float WAV of zero frames at this rate and width."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", sample_rate, channels, "FLOAT", format="WAV") as out:
        no_peak_chunk(out)
    return buffer.getvalue()


def float_header(sample_rate: int, channels: int, frames: int) -> bytes | None:
    """The header of a float WAV of ``frames`` frames, or None when the file would be too
    large for RIFF's 32-bit sizes."""
    header = bytearray(empty_header(sample_rate, channels))
    data_bytes = frames * channels * 4
    if len(header) + data_bytes - 8 > MAX_RIFF:
        return None
    chunks = _chunks(bytes(header))
    struct.pack_into("<I", header, 4, len(header) + data_bytes - 8)
    struct.pack_into("<I", header, chunks["fact"] + 8, frames)
    struct.pack_into("<I", header, chunks["data"] + 4, data_bytes)
    return bytes(header)


def data_offset(head: bytes) -> int:
    """Where the samples start in a file beginning with ``head`` (at least its whole header)."""
    return _chunks(head)["data"] + 8


def _chunks(head: bytes) -> dict[str, int]:
    """Offset of each chunk of a RIFF/WAVE header, up to and including ``data``."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("no RIFF/WAVE header")
    found: dict[str, int] = {}
    at = 12
    while at + 8 <= len(head):
        name = head[at:at + 4].decode("latin-1")
        (size,) = struct.unpack_from("<I", head, at + 4)
        found[name] = at
        if name == "data":
            if "fact" not in found:
                raise ValueError("no fact chunk before the data")
            return found
        at += 8 + size + (size & 1)
    raise ValueError("no data chunk in the header")


def open_work_audio(work: os.PathLike[str] | str, sample_rate: int, channels: int) -> tuple[int, int]:
    """(descriptor, data offset) of a work folder's audio file, made with its header if new."""
    legacy = os.path.join(work, LEGACY_NAME)
    if os.path.exists(legacy):
        return os.open(legacy, os.O_RDWR), 0
    fd = os.open(os.path.join(work, WORK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        head = os.pread(fd, 4096, 0)
        header = empty_header(sample_rate, channels)
        if len(head) < len(header):  # new, or cut before its header was whole: no sample is in it yet
            os.pwrite(fd, header, 0)
            return fd, len(header)
        try:
            return fd, data_offset(head)
        except ValueError as exc:
            raise StorageError(f"{WORK_NAME} in {work} is not the work audio file this store writes: {exc}") from exc
    except BaseException:
        os.close(fd)
        raise
