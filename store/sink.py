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
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sendlearn.capture import Block, ConsumerFailed, HandOff, StreamInfo
from sendlearn.store.completed import CompletedStream, open_stream_writer
from sendlearn.store.errors import StreamMismatch
from sendlearn.store.finalise import finalise
from sendlearn.store.layout import stream_dir
from sendlearn.store.locks import StreamLocks
from sendlearn.store.writer import StreamWriter

BATCH_BLOCKS = 64  # blocks per writer.add: one journal append loop, not one call per block
COMMIT_BLOCKS = 2048  # fsync this often while a long stream is written (a power cut loses less)
SENDER = "sendlearn render (store)"
SENDER_LIVE = "sendlearn live (store)"  # stream.json's sender.written_by for a live stream the store wrote
# A live drain's nap when the hand-off is empty. ``offer`` takes no lock, so it cannot notify a
# waiting ``take``: the drain's timed ``take`` sleeps this long on the consumer's side only, and
# no lock or wait is ever added to the audio thread. 10 ms is ~4 periods of 128 frames at 48 kHz,
# far below what the hand-off holds (1024 blocks by default: seconds), and costs ~100 wake-ups/s.
LIVE_POLL = 0.01
LIVE_COMMIT_SECONDS = 1.0  # a live stream is fsynced this often: a power cut loses about this much


class StoreSink:
    """Opens streams in ``data_dir``; ``name`` goes into each stream.json's ``sender``."""

    def __init__(self, data_dir: Path, name: str = SENDER) -> None:
        self.data_dir, self.name = Path(data_dir), name

    def open(self, info: StreamInfo, handoff: HandOff, take: str | None) -> StoreStream:
        return StoreStream(self.data_dir, info, handoff, take, self.name)

    def open_live(self, info: StreamInfo, handoff: HandOff, closing: Callable[[], dict[str, Any]]) -> StoreStream:
        return StoreStream(self.data_dir, info, handoff, uuid.uuid4().hex[:16], self.name, closing=closing)


class StoreStream:
    """One stream: drains ``handoff`` on a thread into the stream's writer. ``closing`` makes it
    a live stream (module docstring): the producer's closing figures, asked for at ``finish``."""

    def __init__(self, data_dir: Path, info: StreamInfo, handoff: HandOff, take: str | None, name: str,
                 closing: Callable[[], dict[str, Any]] | None = None) -> None:
        self.info, self.handoff, self.name = info, handoff, name
        self.closing = closing
        self.live = closing is not None
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
        if self.live and (complete or self.resumed):  # a fresh take resumes nothing (the writer refuses
            if not isinstance(self.writer, CompletedStream):  # another take's folder): never write after one
                self.writer.close()
            self._unlock()
            raise StreamMismatch(f"{info.session}/{info.stream} is on disk already; give this live take its own "
                                 "session or stream id")
        self.first_seq, self.start_sample = 0, 0  # where a live producer starts (a fresh take: at 0)
        self.last_seq = -1
        self.expected = self.first_seq  # the seq the next block should have: a later one means seqs were lost
        self.written = 0
        self.dropped_seqs = 0  # seqs declared dropped so far (the tail's are declared at BYE)
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        if self.live:
            self._thread = threading.Thread(target=self._drain, name=f"sendlearn-store-{info.stream}", daemon=True)
            self._thread.start()
        else:  # offline: written on the producer's thread (capture.handoff says why), fsynced beside it
            self._batch: list[Block] = []
            self._since_commit = 0
            self._writing = threading.Lock()  # an abort from another thread waits for the block being written
            self._syncing: Future[int] | None = None
            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sendlearn-sync-{info.stream}")
            handoff.deliver_to(self._accept)

    def _drain(self) -> None:
        try:
            self._drain_live()
        except Exception as exc:  # StorageError, Refused: the producer stops and says why
            self._failed(exc)

    def _failed(self, exc: BaseException) -> str:
        self.error = f"writing {self.info.session}/{self.info.stream} failed: {exc}"
        self.handoff.fail(self.error)
        return self.error

    def _accept(self, block: Block) -> None:
        """One offline block, on the producer's thread: written in batches of ``BATCH_BLOCKS``,
        fsynced every ``COMMIT_BLOCKS`` on the syncer thread while the producer goes on (an fsync
        lets go of the GIL; the next one waits for the last). A block a resumed stream holds is skipped."""
        with self._writing:
            if self.handoff.failure is not None:  # aborted, or the last write failed
                raise ConsumerFailed(f"the consumer failed: {self.handoff.failure}")
            self.last_seq = block.seq
            if block.seq > self.durable:
                self._batch.append(block)
            if len(self._batch) < BATCH_BLOCKS:
                return
            try:
                self._since_commit += self._write(self._batch)
                self._batch = []
                if self._since_commit >= COMMIT_BLOCKS:
                    self._wait_sync()
                    self._syncing = self._syncer.submit(self.writer.commit)
                    self._since_commit = 0
            except Exception as exc:  # StorageError: the render stops (put raises) and says why
                raise ConsumerFailed(self._failed(exc)) from exc

    def _wait_sync(self) -> None:
        """The last fsync has ended; raises what it raised."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            syncing.result()

    def _end_offline(self, flush: bool) -> None:
        """The producer is done (``flush``: write what is batched) or aborted: the syncer stops."""
        with self._writing:
            try:
                if flush and self.error is None:
                    self._write(self._batch)
                self._batch = []
                self._wait_sync()
            except Exception as exc:
                if self.error is None:
                    self._failed(exc)
            finally:
                self._syncer.shutdown(wait=True)

    def _drain_live(self) -> None:
        """Poll the hand-off (``LIVE_POLL``: ``offer`` wakes no one), write whatever is queued at
        each look, fsync every ``LIVE_COMMIT_SECONDS``. A block after a hole begins a new batch
        that declares the hole: ``add``'s dropped ranges must all come before its blocks."""
        batch: list[Block] = []
        holes: list[tuple[int, int]] = []
        committed = time.monotonic()
        while self.handoff.failure is None:  # ``abort``: stop here, even if the producer still offers
            block = self.handoff.take(timeout=LIVE_POLL if not batch else 0)
            if block is not None:
                if block.seq > self.expected:  # the producer lost these: a recorded gap
                    self._write(batch, holes)
                    batch, holes = [], [(self.expected, block.seq - 1)]
                    self.dropped_seqs += block.seq - self.expected
                self.expected = max(self.expected, block.seq + 1)
                self.last_seq = max(self.last_seq, block.seq)
                batch.append(block)
                if len(batch) < BATCH_BLOCKS:
                    continue
            self._write(batch, holes)  # a full batch, or the hand-off is empty for now
            batch, holes = [], []
            if time.monotonic() - committed >= LIVE_COMMIT_SECONDS:
                self.durable = self.writer.commit()
                committed = time.monotonic()
            if block is None and self.handoff.finished:  # closed, and everything offered taken
                return

    def _write(self, batch: list[Block], holes: list[tuple[int, int]] | None = None) -> int:
        if batch:
            self.writer.add(batch, dropped=holes or ())
            self.written += len(batch)
        return len(batch)

    def finish(self) -> str | None:
        if self._thread is not None:
            self._thread.join()
        else:
            self._end_offline(flush=True)
        try:
            return self._complete()
        finally:
            self._unlock()

    def abort(self, reason: str) -> None:
        self.handoff.fail(reason)  # a producer still putting (Ctrl-C in another thread) stops instead of waiting
        self.handoff.close()  # the producer may have stopped without closing: let the drain end
        if self._thread is not None:
            self._thread.join()
        else:
            self._end_offline(flush=False)
        try:
            if not isinstance(self.writer, CompletedStream):
                _release(self.writer)
        finally:
            self._unlock()

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"resumed": self.resumed, "blocks_written": self.written}
        if self.live:  # for the live panel and summary: what the store holds, and what it never got
            figures.update(durable_through=self.durable, blocks_dropped=self.handoff.dropped, error=self.error)
        return figures

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
                if self.live:
                    self._bye_live(writer)
                else:
                    writer.bye(self.last_seq, {"written_by": self.name})
            finalise(writer, "bye")
            if writer.last_seq is not None:
                self.durable = writer.last_seq  # finalised: every seq is on disk or a recorded gap
        except Exception as exc:
            if not writer.finalised:
                _release(writer)
            return f"writing {self.info.session}/{self.info.stream} failed: {exc}"
        return None


    def _bye_live(self, writer: StreamWriter) -> None:
        """The end of a live stream, as a sender's BYE says it: the last seq the producer used
        (``offered`` counts the blocks it lost too), the seqs after the last block taken declared
        dropped, and the figures: the producer's closing ones plus the sender's own keys that
        mean something without a link (``blocks_dropped_by_audio_thread``), and ``written_by``."""
        last = self.first_seq + self.handoff.offered - 1
        tail = ((self.expected, last),) if last >= self.expected else ()
        stats: dict[str, Any] = {"blocks_dropped_by_audio_thread": self.handoff.dropped}
        if self.closing is not None:
            stats.update(self.closing())
        stats["written_by"] = self.name
        writer.bye(max(last, self.last_seq), dict(sorted(stats.items())), tail)


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
