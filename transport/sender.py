"""The sender: drains a processor's hand-off on its own thread and event loop, keeps every
block in a spool until the receiver has it durably, and streams over a websocket through the
shared ``Protocol`` — reconnecting, resuming, stepping audio quality down when the link cannot
keep up, and backfilling full-quality audio once it can.

The producer (an audio thread, or an offline render) never waits on the network: it only
touches the hand-off. ``close()`` marks the end of the stream, then waits until every block
is durable at the receiver (backfilled where it can be) and BYE has been answered.

Its parts: the account of what is sent, acknowledged and owed backfill (transport/outbox.py),
batches into frames that fit (transport/batching.py), when to retry and when to give up
(transport/retry.py), the spool (transport/spool.py) and the quality ladder (transport/ladder.py).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sendlearn.capture import Block, HandOff, StreamInfo

from .batching import queue_batch
from .codec import Quality
from .errors import ErrorCode
from .ladder import QualityLadder
from .messages import DEFAULT_MAX_FRAME, Ack, Bye, Error, Fact, Hello, Welcome
from .outbox import Outbox
from .protocol import Protocol
from .retry import FATAL_CODES, LinkLost, SenderError, backoff
from .spool import Spool
from .state import Role
from .tls import for_url

# seconds between looks at an empty hand-off. The intake polls: it runs on the sender's event
# loop, which must not block on the hand-off's condition, and a live producer's ``offer`` wakes
# no one (it never takes a lock on the audio thread).
IDLE_POLL = 0.002
SYNC_INTERVAL = 1.0  # seconds between spool fsyncs


class Sender:
    """Streams one stream. ``adaptive`` turns the quality ladder on (live producers); offline
    producers keep full quality and get back-pressure instead when the spool is full."""

    def __init__(
        self,
        url: str,
        info: StreamInfo,
        handoff: HandOff,
        *,
        token: str | None = None,
        quality: Quality = Quality.FLOAT32,
        adaptive: bool = False,
        spool: Spool | Path | str | None = None,
        max_batch_frames: int = 32768,
        compression_level: int = 3,
        open_timeout: float = 10.0,
        reconnect: bool = True,
        give_up_after: float = 300.0,
        backfill_timeout: float = 60.0,
        ladder: QualityLadder | None = None,
        meta: dict[str, Fact] | None = None,
        stats: Callable[[], dict[str, Fact]] | None = None,
        take: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.info = info
        self.handoff = handoff
        self.token = token
        self.quality = quality
        self.adaptive = adaptive
        self.spool = spool if isinstance(spool, Spool) else Spool(spool, info)
        if take is not None:  # a caller that can name its take (a deterministic render) does
            self.spool.take = take
        self.max_batch_frames = max(max_batch_frames, info.block_size)
        self.compression_level = compression_level
        self.open_timeout = open_timeout
        self.reconnect = reconnect
        self.give_up_after = give_up_after
        self.backfill_timeout = backfill_timeout
        self.ladder = ladder or QualityLadder(ceiling=quality)
        self.ssl_context = ssl_context
        self.meta = tuple(sorted({**dict(info.meta), **(meta or {})}.items()))
        self.stats = stats  # called for BYE: the producer's closing figures (xruns, …)
        self.error: SenderError | None = None
        self._told: set[tuple[ErrorCode, str]] = set()  # receiver reasons already printed
        self.max_frame_size = DEFAULT_MAX_FRAME  # until WELCOME says the receiver's
        # counters
        self.blocks_sent = self.bytes_sent = self.audio_bytes_sent = self.connections = 0
        # stream state, shared by the intake and the connections (one event loop: no locks)
        self.outbox = Outbox(self.spool, info.block_size, quality)
        self._intake_done = False
        self._aborted: str | None = None  # set by ``abort``: the stream ends without BYE
        self._held: Block | None = None  # a block the full spool could not take yet (offline)
        self._started = self._finished = 0.0
        self._thread = threading.Thread(target=self._run, name=f"sendlearn-sender-{info.stream}", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Sender:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """End the stream: no more blocks; wait until all are durable. Raises SenderError."""
        self.handoff.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SenderError(f"stream {self.info.stream} still sending after {timeout} s")
        if self.error is not None:
            raise self.error

    def abort(self, reason: str, timeout: float | None = 30.0) -> None:
        """End the stream without BYE: the producer failed partway, so the stream must never be
        marked complete. The connection closes; the receiver keeps what arrived, incomplete
        (a sender of the same take resumes it). Never raises: the failure is the producer's."""
        self._aborted = reason
        self.handoff.fail(reason)  # a producer still putting stops instead of waiting for room
        self.handoff.close()
        self._thread.join(timeout)

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- counters -------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """Where a producer resuming on this sender's spool starts."""
        return self.outbox.first_seq

    @property
    def durable_through(self) -> int:
        return self.outbox.durable_through

    @property
    def blocks_acked(self) -> int:
        return self.durable_through + 1

    @property
    def blocks_backfilled(self) -> int:
        return self.outbox.blocks_backfilled

    @property
    def audio_lost_spool_full(self) -> int:
        """Live blocks whose audio the full spool could not keep (sent without it)."""
        return self.outbox.audio_lost_spool_full

    @property
    def rtt_seconds(self) -> float | None:
        """From a frame's send to the ACK that covers it, for the last one acknowledged."""
        return self.outbox.rtt_seconds

    @property
    def backlog_seconds(self) -> float:
        """Audio taken from the producer and not yet acknowledged, in seconds."""
        return self.outbox.backlog_frames / self.info.sample_rate

    @property
    def level(self) -> Quality:
        return self.ladder.level if self.adaptive else self.quality

    @property
    def send_rate(self) -> float:
        """Bytes per second sent since start."""
        end = self._finished or time.monotonic()
        return self.bytes_sent / max(end - self._started, 1e-9)

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except SenderError as exc:
            self.error = exc
        except Exception as exc:  # report, never hang the producer
            self.error = SenderError(f"sender failed: {type(exc).__name__}: {exc}")
        finally:
            self._finished = time.monotonic()
            if self.error is not None:
                self.handoff.fail(str(self.error))
            self.spool.close()

    async def _main(self) -> None:
        intake = asyncio.create_task(self._intake())
        try:
            await self._connect_until_done(intake)
        finally:
            intake.cancel()

    async def _connect_until_done(self, intake: asyncio.Task[None]) -> None:
        attempt = 0
        last_progress = time.monotonic()
        while True:
            acked_before = self.durable_through
            try:
                await self._connection(intake)
                return
            except LinkLost as exc:
                reason = str(exc)
                if exc.code == ErrorCode.STORAGE:
                    last_progress = time.monotonic()  # the receiver is there and says why: wait for its disk
            except (OSError, ConnectionClosed, TimeoutError, InvalidHandshake) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except InvalidURI as exc:
                raise SenderError(f"bad receiver URL {self.url}: {exc}") from None
            if intake.done():
                intake.result()
            if self.durable_through > acked_before:
                attempt, last_progress = 0, time.monotonic()
            self._check_aborted()
            if not self.reconnect:
                raise SenderError(f"connection to {self.url} failed: {reason}")
            if time.monotonic() - last_progress > self.give_up_after:
                raise SenderError(f"no progress for {self.give_up_after:.0f} s; last failure: {reason}")
            attempt += 1
            await asyncio.sleep(backoff(attempt))

    def _check_aborted(self) -> None:
        if self._aborted is not None:
            raise SenderError(f"aborted, no BYE: {self._aborted}")

    # --- intake: hand-off -> spool, independent of the link --------------------------------

    async def _intake(self) -> None:
        last_sync = time.monotonic()
        while True:
            took = 0
            while took < 256:
                block = self._held or self.handoff.take()
                self._held = None
                if block is None:
                    break
                if not self.adaptive and not self.spool.add(block):
                    self._held = block  # offline: wait for room; the hand-off fills and the render waits
                    break
                self.outbox.admit(block, spooled=not self.adaptive)
                took += 1
            if time.monotonic() - last_sync > SYNC_INTERVAL:
                await asyncio.to_thread(self.spool.sync)
                last_sync = time.monotonic()
            if took == 0:
                if self.handoff.finished and self._held is None:
                    self.outbox.end(self.handoff.offered)
                    self._intake_done = True
                    await asyncio.to_thread(self.spool.sync)
                    return
                await asyncio.sleep(IDLE_POLL)
            else:
                await asyncio.sleep(0)

    # --- one connection -------------------------------------------------------------------

    async def _connection(self, intake: asyncio.Task[None]) -> None:
        try:
            ws = await connect(self.url, compression=None, open_timeout=self.open_timeout,
                               max_size=DEFAULT_MAX_FRAME + 1, ssl=for_url(self.url, self.ssl_context), ping_interval=5,
                               ping_timeout=10, close_timeout=2)
        except InvalidURI:
            raise
        self.connections += 1
        protocol = Protocol(Role.SENDER, compression_level=self.compression_level)
        try:
            await self._handshake(ws, protocol)
            acks = asyncio.create_task(self._read_acks(ws, protocol))
            try:
                await self._stream(ws, protocol, acks, intake)
            finally:
                acks.cancel()
        finally:
            self.outbox.requeue()
            await ws.close()

    async def _handshake(self, ws: ClientConnection, protocol: Protocol) -> None:
        info = self.info
        protocol.send(Hello(info.session, info.stream, info.track, info.sample_rate, info.channels,
                            info.block_size, info.host, self.token, self.outbox.resume_from(), meta=self.meta,
                            take=self.spool.take))
        await self._flush(ws, protocol)
        reply = await asyncio.wait_for(ws.recv(), self.open_timeout)
        if isinstance(reply, str):  # what the protocol would refuse as MALFORMED
            raise LinkLost("receiver answered HELLO with nothing usable (frames are binary)")
        protocol.receive_data(reply)
        for event in protocol.events_received():
            if isinstance(event, Welcome):
                self.max_frame_size = event.max_frame_size
                self.outbox.on_ack(event.durable_through, (), resumed=True)
                return
            if isinstance(event, Error):
                self._raise_for(event.code, event.reason, "receiver refused the stream")
        raise LinkLost(f"receiver answered HELLO with nothing usable ({protocol.close_reason})")

    async def _stream(self, ws: ClientConnection, protocol: Protocol, acks: asyncio.Task[None],
                      intake: asyncio.Task[None]) -> None:
        outbox = self.outbox
        finished_at: float | None = None
        while True:
            self._check_aborted()
            if acks.done():
                acks.result()
                raise LinkLost("receiver closed the connection")
            if intake.done() and intake.exception() is not None:
                intake.result()
            level = self.ladder.update(self.backlog_seconds, time.monotonic()) if self.adaptive else self.quality
            if outbox.unsent:
                await self._send_unsent(ws, protocol, level)
                continue
            if outbox.needs_backfill and level == self.quality and self.backlog_seconds < self.ladder.low:
                if await self._send_backfill(ws, protocol):
                    continue
            # at full quality nothing can still need backfill: say BYE now, its ACK covers the rest;
            # a live stream waits for its ACKs, since a block sent degraded may yet need backfill
            if self._intake_done and not outbox.unsent and (not outbox.unacked or not self.adaptive):
                if outbox.settled:
                    break
                finished_at = finished_at or time.monotonic()
                if time.monotonic() - finished_at > self.backfill_timeout:
                    break  # the link never recovered enough: the degraded audio stays, marked
            await asyncio.sleep(IDLE_POLL)
        self._check_aborted()  # the last look before BYE: an aborted stream never says it
        # seqs after the last block taken were dropped by the audio thread: say so, not "lost"
        protocol.send(Bye(outbox.last_seq, self._closing_figures(), outbox.tail_dropped()))
        await self._flush(ws, protocol)
        # the receiver answers BYE with a last ACK, finalises the stream's files, then closes
        try:
            await asyncio.wait_for(asyncio.shield(acks), 120)
        except TimeoutError:
            raise LinkLost("receiver did not close after BYE within 120 s") from None
        if self.durable_through < outbox.last_seq:
            raise LinkLost(f"closed after BYE with seqs up to {outbox.last_seq} not all acknowledged")

    async def _send_unsent(self, ws: ClientConnection, protocol: Protocol, level: Quality) -> None:
        batch, audioless = self.outbox.take_unsent(self.max_batch_frames)
        quality = Quality.NONE if audioless else level
        frames = self._queue(protocol, batch, quality, backfill=False)
        self.outbox.sent(frames, quality)  # all marked before any flush: an ACK may arrive in between
        await self._flush(ws, protocol)
        self.blocks_sent += len(batch)

    async def _send_backfill(self, ws: ClientConnection, protocol: Protocol) -> bool:
        batch = self.outbox.take_backfill(self.max_batch_frames)
        if not batch:
            return False
        self.outbox.backfill_sent(self._queue(protocol, batch, self.quality, backfill=True))
        await self._flush(ws, protocol)
        return True

    def _queue(self, protocol: Protocol, batch: list[Block], quality: Quality, *, backfill: bool
               ) -> list[list[Block]]:
        """Queue ``batch`` in frames that fit the receiver's limit; the blocks of each frame."""
        queued = queue_batch(protocol, batch, quality, backfill=backfill, holes=self.outbox.dropped_before,
                             max_size=self.max_frame_size)
        for frame in queued:
            self.bytes_sent += frame.frame_bytes
            self.audio_bytes_sent += frame.audio_bytes
        return [frame.blocks for frame in queued]

    def _closing_figures(self) -> tuple[tuple[str, Fact], ...]:
        figures: dict[str, Fact] = {
            "blocks_dropped_by_audio_thread": self.handoff.dropped,
            "audio_lost_spool_full": self.audio_lost_spool_full,
            "connections": self.connections,
            "blocks_backfilled": self.blocks_backfilled,
        }
        if self.stats is not None:
            figures.update(self.stats())
        return tuple(sorted(figures.items()))

    # --- acknowledgements -----------------------------------------------------------------

    async def _read_acks(self, ws: ClientConnection, protocol: Protocol) -> None:
        async for data in ws:
            if isinstance(data, str):
                continue
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Ack):
                    self.outbox.on_ack(event.through, event.backfilled)
                elif isinstance(event, Error):
                    self._raise_for(event.code, event.reason, "receiver ended the stream")
            if protocol.close_code is not None:
                raise SenderError(f"protocol error: {protocol.close_reason}", protocol.close_code)

    def _raise_for(self, code: ErrorCode, reason: str, what: str) -> None:
        message = f"{what}: {code.name}: {reason}"
        if code in FATAL_CODES:
            raise SenderError(message, code)
        # storage, busy, going away, receiver error: try again, and tell the user why once
        if (code, reason) not in self._told:
            self._told.add((code, reason))
            print(f"sendlearn: {self.info.session}/{self.info.stream}: the receiver at {self.url} said "
                  f"{code.name}: {reason}; retrying until it can take the stream", file=sys.stderr, flush=True)
        raise LinkLost(message, code)

    @staticmethod
    async def _flush(ws: ClientConnection, protocol: Protocol) -> None:
        for frame in protocol.data_to_send():
            await ws.send(frame)

