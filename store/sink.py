"""The store sink: streams written straight into a data dir, no socket (``capture.sink``).

Every ``--data-dir`` capture writes here (``render FILE``, ``demo``, batch workers, ``live``
without ``--server``): each stream's blocks go from the producer's hand-off to the stream's
``StreamWriter`` (opened as the receiver opens it, ``open_stream_writer``) and its files are
written by ``finalise``. The dataset is what a receiver writes for the same blocks; only
stream.json's ``sender`` differs (it names this sink).

Resumable as a sender is after WELCOME: a stream's writer reopened from its work files says
which seqs are durable, and only the blocks after them are written. A stream complete under
the same take is not written again. ``abort`` (a capture that failed partway) syncs what was
written and keeps the work folder, never a complete stream: a rerun resumes after its last
durable block. The stream's lock (``store.locks``, shared with the receiver) is held from
``open`` to ``finish``/``abort``: a second writer of the same stream waits, then finds it complete.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sendlearn.capture import Block, HandOff, StreamInfo
from sendlearn.store.completed import CompletedStream, open_stream_writer
from sendlearn.store.finalise import finalise
from sendlearn.store.layout import stream_dir
from sendlearn.store.locks import StreamLocks
from sendlearn.store.writer import StreamWriter

BATCH_BLOCKS = 64  # blocks per writer.add: one journal append loop, not one call per block
COMMIT_BLOCKS = 2048  # fsync this often while a long stream is written (a power cut loses less)
SENDER = "sendlearn render (store)"


class StoreSink:
    """Opens streams in ``data_dir``; ``name`` goes into each stream.json's ``sender``."""

    def __init__(self, data_dir: Path, name: str = SENDER) -> None:
        self.data_dir, self.name = Path(data_dir), name

    def open(self, info: StreamInfo, handoff: HandOff, take: str | None) -> StoreStream:
        return StoreStream(self.data_dir, info, handoff, take, self.name)


class StoreStream:
    """One stream: drains ``handoff`` on a thread into the stream's writer."""

    def __init__(self, data_dir: Path, info: StreamInfo, handoff: HandOff, take: str | None, name: str) -> None:
        self.info, self.handoff, self.name = info, handoff, name
        self._key = (info.session, info.stream)
        self._locks: StreamLocks | None = StreamLocks(data_dir)
        self._locks.acquire(self._key, wait=True)  # a second writer of this stream (a Dask retry) waits here
        try:
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
        self._thread = threading.Thread(target=self._drain, name=f"sendlearn-store-{info.stream}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        batch: list[Block] = []
        since_commit = 0
        try:
            while (block := self.handoff.take(timeout=None)) is not None:  # None: closed and drained
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

    def finish(self) -> str | None:
        self._thread.join()
        try:
            return self._complete()
        finally:
            self._unlock()

    def abort(self, reason: str) -> None:
        self.handoff.fail(reason)  # a producer still putting (Ctrl-C in another thread) stops instead of waiting
        self.handoff.close()  # the producer may have stopped without closing: let the drain end
        self._thread.join()
        try:
            if not isinstance(self.writer, CompletedStream):
                _release(self.writer)
        finally:
            self._unlock()

    def figures(self) -> dict[str, Any]:
        return {"resumed": self.resumed, "blocks_written": self.written}

    def _unlock(self) -> None:
        if self._locks is not None:
            self._locks.release(self._key)
            self._locks = None

    def _complete(self) -> str | None:
        writer = self.writer
        if isinstance(writer, CompletedStream):
            return None
        if self.error is not None:
            _release(writer)
            return self.error
        try:
            if writer.last_seq is None:  # else an end is on disk already: killed while writing the files
                writer.bye(self.last_seq, {"written_by": self.name})
            finalise(writer, "bye")
        except Exception as exc:
            if not writer.finalised:
                _release(writer)
            return f"writing {self.info.session}/{self.info.stream} failed: {exc}"
        return None


def _release(writer: StreamWriter) -> None:
    """Let go of the files, keeping the work folder for a resume (a failed writer is cut back
    to what it last synced)."""
    if writer.failed is None:
        writer.close()
    else:
        writer.abandon()


def remove_sessions(data_dir: Path, names: Iterable[str]) -> None:
    """Delete these sessions' folders, so a render writes them afresh (a stream complete on disk
    is never overwritten by another take of it)."""
    for name in set(names):
        folder = stream_dir(data_dir, name, "x").parent
        if folder.is_dir():
            shutil.rmtree(folder)


def is_complete(data_dir: Path, session: str, stream: str, take: str) -> bool:
    """True when the stream's files are written, complete, from this take."""
    summary = _summary(data_dir, session, stream)
    return bool(summary.get("complete")) and summary.get("take") == take


def _summary(data_dir: Path, session: str, stream: str) -> dict[str, Any]:
    try:
        summary = json.loads((stream_dir(data_dir, session, stream) / "stream.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}
