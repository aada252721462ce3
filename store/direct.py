"""Streams written straight into a data directory by the receiver's own writer: a receiver without a socket.

A batch worker on the machine (or shared filesystem) that holds ``--data-dir`` needs no link:
each stream's blocks go from the capture processor's hand-off to a ``StreamWriter`` (the one
the receiver uses, opened the way the receiver opens it: ``open_stream_writer``), and the
files are written by the receiver's ``finalise``. So the dataset is exactly what a receiver
would have written, and a stream cut off (its process killed) resumes as a sender does after
WELCOME: the writer reopened from its work files says which seqs are durable, and only the
blocks after them are written. Nothing twice, nothing missing.

It takes blocks from a ``HandOff`` and knows nothing of how they were made, so it is the
receiver's side alone (``server`` may not import ``plugin``): the batch job that renders into it
(``sendlearn.cli.batch``) puts the two together.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sendlearn.capture import Block, HandOff, StreamInfo
from sendlearn.store.completed import CompletedStream, open_stream_writer
from sendlearn.store.errors import StreamBusy
from sendlearn.store.finalise import finalise
from sendlearn.store.layout import WORK, stream_dir
from sendlearn.store.locks import StreamLocks
from sendlearn.store.writer import StreamWriter

BATCH_BLOCKS = 64  # blocks per writer.add: one journal append loop, not one call per block
COMMIT_BLOCKS = 2048  # fsync this often while a long stream is written (a power cut loses less)


class DirectStream:
    """One stream: drains ``handoff`` on a thread into the stream's writer. ``finish(ok)``
    then says BYE and writes the files (ok), or leaves the work files for a resume."""

    def __init__(self, data_dir: Path, info: StreamInfo, handoff: HandOff, take: str | None) -> None:
        self.info, self.handoff = info, handoff
        self._lock = _lock_stream(data_dir, info)
        self._receiver_locks: StreamLocks | None = None
        try:
            if self._lock is not None:  # the lock a receiver (sendlearn serve) holds while it writes a stream
                self._receiver_locks = StreamLocks(data_dir)
                if not self._receiver_locks.acquire((info.session, info.stream)):
                    raise StreamBusy(f"{info.session}/{info.stream} is being written by a receiver on this data dir")
            self.writer = open_stream_writer(data_dir, info, dict(info.meta), take)
        except BaseException:
            self._unlock()
            raise
        complete = isinstance(self.writer, CompletedStream)
        self.durable: int = self.writer.through  # every seq at or below it is on disk already (resumed, or complete)
        self.resumed = not complete and self.durable >= 0
        self.last_seq = -1
        self.written = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._drain, name=f"sendlearn-direct-{info.stream}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        batch: list[Block] = []
        since_commit = 0
        try:
            while True:
                block = self.handoff.take(timeout=0.05)
                if block is None:
                    if self.handoff.finished:
                        break
                    continue
                self.last_seq = block.seq
                if block.seq > self.durable:
                    batch.append(block)
                if len(batch) >= BATCH_BLOCKS:
                    since_commit += self._write(batch)
                    batch = []
                    if since_commit >= COMMIT_BLOCKS:
                        self.writer.commit()
                        since_commit = 0
            self._write(batch)
        except Exception as exc:  # StorageError, Refused: the render stops (put raises) and says why
            self.error = f"writing {self.info.session}/{self.info.stream} failed: {exc}"
            self.handoff.fail(self.error)

    def _write(self, batch: list[Block]) -> int:
        if batch:
            self.writer.add(batch)
            self.written += len(batch)
        return len(batch)

    def finish(self, ok: bool) -> str | None:
        """End the stream; returns why it could not be written, or None. A failed render
        (``ok`` False) leaves the work files, never a complete stream."""
        self._thread.join()
        try:
            return self._finish(ok)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._receiver_locks is not None:
            self._receiver_locks.release((self.info.session, self.info.stream))
            self._receiver_locks = None
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _finish(self, ok: bool) -> str | None:
        writer = self.writer
        if isinstance(writer, CompletedStream):
            return None
        if self.error is not None or not ok:
            _release(writer)
            return self.error
        try:
            if writer.last_seq is None:  # else a BYE is on disk already: killed while writing the files
                writer.bye(self.last_seq, {"written_by": "sendlearn render (direct)"})
            finalise(writer, "bye")
        except Exception as exc:
            if not writer.finalised:
                _release(writer)
            return f"writing {self.info.session}/{self.info.stream} failed: {exc}"
        return None


def _lock_stream(data_dir: Path, info: StreamInfo) -> int | None:
    """An exclusive lock on the stream's work folder, held until ``finish``: a second process
    rendering the same input (a Dask task run again on another worker, a second batch on the
    same directory) waits here, then finds the stream complete instead of writing beside it.
    None when the stream is complete already (nothing will be written)."""
    if is_complete_any(data_dir, info.session, info.stream):
        return None
    work = stream_dir(data_dir, info.session, info.stream) / WORK
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release(writer: StreamWriter) -> None:
    """Let go of the files, keeping the work folder for a resume (a failed writer is cut back
    to what it last synced)."""
    if writer.failed is None:
        writer.close()
    else:
        writer.abandon()


def remove_sessions(data_dir: Path, names: Iterable[str]) -> None:
    """Delete these sessions' folders, so a render writes them afresh (a receiver never
    overwrites a complete stream with another take of it)."""
    for name in set(names):
        folder = stream_dir(data_dir, name, "x").parent
        if folder.is_dir():
            shutil.rmtree(folder)


def is_complete(data_dir: Path, session: str, stream: str, take: str) -> bool:
    """True when the stream's files are written, complete, from this take."""
    summary = _summary(data_dir, session, stream)
    return bool(summary.get("complete")) and summary.get("take") == take


def is_complete_any(data_dir: Path, session: str, stream: str) -> bool:
    return bool(_summary(data_dir, session, stream).get("complete"))


def _summary(data_dir: Path, session: str, stream: str) -> dict[str, Any]:
    try:
        summary = json.loads((stream_dir(data_dir, session, stream) / "stream.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}
