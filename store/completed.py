"""Streams whose sender said BYE and whose files are written, and the choice of writer for a HELLO."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sendlearn.capture import Block, Quality, StreamInfo
from sendlearn.dataset.schema import StreamSummary
from sendlearn.store.errors import InvalidBlocks, InvalidBye, StreamMismatch
from sendlearn.store.finalise import remove_stale_temporaries
from sendlearn.store.identity import check_same_stream, info_json
from sendlearn.store.layout import WORK, stream_dir
from sendlearn.store.writer import StreamWriter

log = logging.getLogger("sendlearn.receiver")


class StreamTarget(Protocol):
    """What a HELLO's stream is written through (``open_stream_writer``): a ``StreamWriter``, or
    a ``CompletedStream`` when the stream's BYE is done. A connection and the receiver use only this."""

    info: StreamInfo
    through: int
    finalised: bool  # its files are written (a CompletedStream always)

    def add(self, blocks: Sequence[Block], quality: Quality = Quality.FLOAT32, *, backfill: bool = False,
            dropped: Sequence[tuple[int, int]] = ()) -> list[int]: ...

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None,
            dropped: tuple[tuple[int, int], ...] = ()) -> None: ...

    def commit(self) -> int: ...

    @property
    def acknowledgeable(self) -> int: ...

    def finalise(self, ended: str) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def abandon(self) -> None: ...


class CompletedStream:
    """A stream whose sender said BYE and whose files are written: it takes no more blocks and
    is never written again. A sender that reconnects (it missed the last ACK) is told it is all
    durable; one that sends a new take under the same ids is refused."""

    finalised = True

    def __init__(self, summary: dict[str, Any], info: StreamInfo) -> None:
        self.summary = summary
        self.info = info
        self.last_seq: int = summary["last_seq"] if summary["last_seq"] is not None else -1
        self.through = self.last_seq

    def add(self, blocks: Sequence[Block], quality: Quality = Quality.FLOAT32, *, backfill: bool = False,
            dropped: Sequence[tuple[int, int]] = ()) -> list[int]:
        for block in blocks:
            if block.seq > self.last_seq:
                raise InvalidBlocks(f"the stream is complete through seq {self.last_seq}; seq {block.seq} is new")
        return [block.seq for block in blocks] if backfill else []

    def bye(self, last_seq: int, stats: dict[str, Any] | None = None,
            dropped: tuple[tuple[int, int], ...] = ()) -> None:
        if last_seq != self.last_seq:
            raise InvalidBye(f"the stream is complete through seq {self.last_seq}, not {last_seq}")

    def commit(self) -> int:
        return self.last_seq

    @property
    def acknowledgeable(self) -> int:
        return self.last_seq

    def finalise(self, ended: str) -> dict[str, Any]:
        return self.summary

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


def open_stream_writer(data_dir: Path, info: StreamInfo, meta: dict[str, Any] | None = None,
                       take: str | None = None, **bounds: int) -> StreamWriter | CompletedStream:
    """The writer for a HELLO: the open stream's (resumed from disk), or a completed one's.

    stream.json is written last, after every public file, and says ``complete`` only after
    BYE: such a stream is never reopened. A work folder beside it is what a crash left while
    removing it, and is removed now (never read: it may be partly gone)."""
    folder = stream_dir(data_dir, info.session, info.stream)
    summary_path = folder / "stream.json"
    if summary_path.exists():
        summary = StreamSummary.read(summary_path)  # FormatTooNew when a newer sendlearn wrote it
        if summary.complete:
            check_same_stream(summary.to_json(), {**info_json(info), "take": take})
            if not take or not summary.take:
                raise StreamMismatch(f"{info.session}/{info.stream} is complete on disk; "
                                     "give a new take its own session or stream id")
            if (folder / WORK).exists():
                log.info("%s/%s is complete; removing the work folder a crash left", info.session, info.stream)
                shutil.rmtree(folder / WORK, ignore_errors=True)
            try:
                remove_stale_temporaries(folder)
            except OSError:
                pass  # best effort: a read-only disk still serves the complete stream
            return CompletedStream(summary.to_json(), info)
    return StreamWriter(data_dir, info, meta, take, **bounds)
