"""Where a producer's blocks go: one interface, two implementations (docs/dataflow.md).

    Sink.open(info, handoff, take) -> SinkStream   a stream begins; its blocks arrive through ``handoff``
    (add)                                          the producer's ``handoff.put`` (offline) or ``offer`` (live)
    SinkStream.finish() -> reason | None           the producer is done: the stream is complete, or why not
    SinkStream.abort(reason)                       the capture failed: the stream is never marked complete
    Sink.open_live(info, handoff, closing)         a real-time producer's stream (``offer``, never ``put``):
      -> LiveStream                                it numbers its blocks from ``first_seq``/``start_sample``

The **store** (``sendlearn.store.sink.StoreSink``) writes straight into a data dir; the **link**
(``sendlearn.transport.link.LinkSink``) sends over the wire to a receiver (``--server`` only).
Adding is the hand-off's, not a method here. The link, and the store for a live producer, drain
it on a thread of its own, so a real-time producer's ``offer`` never waits; the store takes an
offline producer's blocks on the producer's own thread (``HandOff.deliver_to``: two Python
threads only take turns at the GIL) and fsyncs beside it. Producers (``plugin``) see only this
module; the command (``cli``) picks the sink.

A live stream's sink must not rely on being woken by ``offer`` (it takes no lock, so wakes no
one), names a take of its own (a live take is never replayed), records every seq the producer
lost (refused by the full hand-off, or ``skip``ped) as a declared gap, and ends with the
producer's ``closing()`` figures in stream.json's ``sender``, whichever sink wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .handoff import HandOff
from .stream import StreamInfo


class SinkStream(Protocol):
    def finish(self) -> str | None:
        """No more blocks: wait until every one is durable and the stream complete. Returns why
        it could not be (and the stream is left incomplete), or None."""

    def abort(self, reason: str) -> None:
        """The capture failed partway: end the stream without completing it (a rerun resumes it)."""

    def figures(self) -> dict[str, Any]:
        """What the sink did with the stream, for the command's report (bytes sent, resumed, …)."""


class LiveStream(SinkStream, Protocol):
    first_seq: int  # the producer numbers its first block this (a link resuming its spool: past 0)
    start_sample: int  # ... and starts it at this sample


class Sink(Protocol):
    name: str  # what wrote the stream, as stream.json's ``sender`` or a report names it

    def open(self, info: StreamInfo, handoff: HandOff, take: str | None) -> SinkStream:
        """Begin ``info``'s stream, drained from ``handoff``; ``take`` names the render's inputs
        (a stream complete under the same take is not written again)."""

    def open_live(self, info: StreamInfo, handoff: HandOff, closing: Callable[[], dict[str, Any]]) -> LiveStream:
        """Begin a real-time producer's stream. ``closing()``, called once the producer has
        ended, gives its closing figures (xruns, clock jumps, …) for stream.json's ``sender``."""
