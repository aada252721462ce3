"""The sender: drains a processor's hand-off on its own thread and event loop, keeps every
block in a spool until the receiver has it durably, and streams over a websocket through the
shared ``Protocol`` — reconnecting, resuming, stepping audio quality down when the link cannot
keep up, and backfilling full-quality audio once it can.

The producer (an audio thread, or an offline render) never waits on the network: it only
touches the hand-off. ``close()`` marks the end of the stream, then waits until every block
is durable at the receiver (backfilled where it can be) and BYE has been answered.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sendlearn.capture import Block, HandOff, StreamInfo
from sendlearn.errors import SendLearnError

from .codec import Quality
from .errors import ErrorCode, InvalidMessage
from .ladder import QualityLadder
from .messages import DEFAULT_MAX_FRAME, NOTHING, Ack, Bye, Error, Fact, Hello, Welcome
from .protocol import Protocol
from .spool import Spool
from .state import Role

IDLE_POLL = 0.002  # seconds between looks at an empty hand-off
SYNC_INTERVAL = 1.0  # seconds between spool fsyncs
# the receiver said no for a reason a retry cannot change
FATAL_CODES = {ErrorCode.UNAUTHORIZED, ErrorCode.BAD_ID, ErrorCode.STREAM_MISMATCH, ErrorCode.UNSUPPORTED_VERSION,
               ErrorCode.MALFORMED, ErrorCode.BAD_DIGEST, ErrorCode.INVALID_BLOCK, ErrorCode.UNEXPECTED_MESSAGE,
               ErrorCode.OVERLAP, ErrorCode.INVALID_BYE}


class SenderError(SendLearnError):
    """The stream could not be delivered; ``code`` is the receiver's error code if it sent one."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkLost(SendLearnError):
    """The connection ended; worth reconnecting. ``code``: the receiver's reason, if it gave one."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


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
        self.blocks_sent = self.bytes_sent = self.audio_bytes_sent = 0
        self.blocks_backfilled = self.connections = self.audio_lost_spool_full = 0
        self.durable_through = NOTHING
        self.rtt_seconds: float | None = None
        # stream state, shared by the intake and the connections (one event loop: no locks)
        self.first_seq = self.spool.next_seq  # where a producer resuming on this spool starts
        self._unsent: deque[int] = deque(self.spool.seqs())  # oldest first
        self._unacked: dict[int, Quality] = {}
        self._needs_backfill: set[int] = set()
        self._backfill_unacked: set[int] = set()
        self._audioless: dict[int, Block] = {}  # live blocks the full spool kept without audio
        self._dropped_before: dict[int, tuple[int, int]] = {}
        self._frames: dict[int, int] = {seq: info.block_size for seq in self._unsent}
        self._backlog_frames = sum(self._frames.values())
        self._expected_seq = self.spool.next_seq
        self._last_seq = self.spool.next_seq - 1
        self._intake_done = False
        self._held: Block | None = None  # a block the full spool could not take yet (offline)
        self._sent_at: dict[int, float] = {}
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

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- counters -------------------------------------------------------------------------

    @property
    def blocks_acked(self) -> int:
        return self.durable_through + 1

    @property
    def backlog_seconds(self) -> float:
        """Audio taken from the producer and not yet acknowledged, in seconds."""
        return self._backlog_frames / self.info.sample_rate

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

    async def _connect_until_done(self, intake: asyncio.Task) -> None:
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
            if not self.reconnect:
                raise SenderError(f"connection to {self.url} failed: {reason}")
            if time.monotonic() - last_progress > self.give_up_after:
                raise SenderError(f"no progress for {self.give_up_after:.0f} s; last failure: {reason}")
            attempt += 1
            # exponential backoff with full jitter, so many senders do not reconnect in step
            await asyncio.sleep(random.uniform(0.05, min(5.0, 0.1 * 2 ** min(attempt, 10))))

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
                self._admit(block, spooled=not self.adaptive)
                took += 1
            if time.monotonic() - last_sync > SYNC_INTERVAL:
                await asyncio.to_thread(self.spool.sync)
                last_sync = time.monotonic()
            if took == 0:
                if self.handoff.finished and self._held is None:
                    self._last_seq = max(self._last_seq, self.first_seq + self.handoff.offered - 1)
                    self._intake_done = True
                    await asyncio.to_thread(self.spool.sync)
                    return
                await asyncio.sleep(IDLE_POLL)
            else:
                await asyncio.sleep(0)

    def _admit(self, block: Block, spooled: bool = False) -> None:
        if block.seq < self.first_seq:
            raise SenderError(f"the producer numbered a block {block.seq}, below the spool's next seq "
                              f"{self.first_seq}: create the processor with first_seq=spool.next_seq")
        if block.seq > self._expected_seq:
            self._dropped_before[block.seq] = (self._expected_seq, block.seq - 1)
        self._expected_seq = max(self._expected_seq, block.seq + 1)
        self._last_seq = max(self._last_seq, block.seq)
        if not spooled and not self.spool.add(block):
            # live and the spool is full: keep what is small and never degraded, lose the audio
            self.audio_lost_spool_full += 1
            self._audioless[block.seq] = Block(block.session, block.stream, block.seq, block.start_sample,
                                               block.frames, block.sample_rate, block.channels, block.playhead,
                                               block.midi, block.params, None)
        self._unsent.append(block.seq)
        self._frames[block.seq] = block.frames
        self._backlog_frames += block.frames

    # --- one connection -------------------------------------------------------------------

    async def _connection(self, intake: asyncio.Task) -> None:
        try:
            ws = await connect(self.url, compression=None, open_timeout=self.open_timeout,
                               max_size=DEFAULT_MAX_FRAME + 1, ssl=self.ssl_context, ping_interval=5,
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
            self._requeue_unacked()
            await ws.close()

    async def _handshake(self, ws: ClientConnection, protocol: Protocol) -> None:
        info = self.info
        resume_from = min(self.spool.seqs(), default=self._expected_seq)
        protocol.send(Hello(info.session, info.stream, info.track, info.sample_rate, info.channels,
                            info.block_size, info.host, self.token, resume_from, meta=self.meta,
                            take=self.spool.take))
        await self._flush(ws, protocol)
        protocol.receive_data(await asyncio.wait_for(ws.recv(), self.open_timeout))
        for event in protocol.events_received():
            if isinstance(event, Welcome):
                self.max_frame_size = event.max_frame_size
                self._on_ack(event.durable_through, (), resumed=True)
                return
            if isinstance(event, Error):
                self._raise_for(event.code, event.reason, "receiver refused the stream")
        raise LinkLost(f"receiver answered HELLO with nothing usable ({protocol.close_reason})")

    async def _stream(self, ws: ClientConnection, protocol: Protocol, acks: asyncio.Task,
                      intake: asyncio.Task) -> None:
        finished_at: float | None = None
        while True:
            if acks.done():
                acks.result()
                raise LinkLost("receiver closed the connection")
            if intake.done() and intake.exception() is not None:
                intake.result()
            level = self.ladder.update(self.backlog_seconds, time.monotonic()) if self.adaptive else self.quality
            if self._unsent:
                await self._send_unsent(ws, protocol, level)
                continue
            if self._needs_backfill and level == self.quality and self.backlog_seconds < self.ladder.low:
                if await self._send_backfill(ws, protocol):
                    continue
            # at full quality nothing can still need backfill: say BYE now, its ACK covers the rest;
            # a live stream waits for its ACKs, since a block sent degraded may yet need backfill
            if self._intake_done and not self._unsent and (not self._unacked or not self.adaptive):
                if not self._needs_backfill and not self._backfill_unacked:
                    break
                finished_at = finished_at or time.monotonic()
                if time.monotonic() - finished_at > self.backfill_timeout:
                    break  # the link never recovered enough: the degraded audio stays, marked
            await asyncio.sleep(IDLE_POLL)
        # seqs after the last block taken were dropped by the audio thread: say so, not "lost"
        tail = ((self._expected_seq, self._last_seq),) if self._last_seq >= self._expected_seq else ()
        protocol.send(Bye(self._last_seq, self._closing_figures(), tail))
        await self._flush(ws, protocol)
        # the receiver answers BYE with a last ACK, finalises the stream's files, then closes
        try:
            await asyncio.wait_for(asyncio.shield(acks), 120)
        except TimeoutError:
            raise LinkLost("receiver did not close after BYE within 120 s") from None
        if self.durable_through < self._last_seq:
            raise LinkLost(f"closed after BYE with seqs up to {self._last_seq} not all acknowledged")

    async def _send_unsent(self, ws: ClientConnection, protocol: Protocol, level: Quality) -> None:
        batch: list[Block] = []
        frames = 0
        audioless = False
        while self._unsent and frames < self.max_batch_frames:
            seq = self._unsent[0]
            is_audioless = seq in self._audioless
            if batch and is_audioless != audioless:
                break  # a batch is coded at one level
            block = self._audioless[seq] if is_audioless else self.spool.block(seq)
            audioless = is_audioless
            batch.append(block)
            frames += block.frames
            self._unsent.popleft()
        quality = Quality.NONE if audioless else level
        parts = self._encode(protocol, batch, quality, backfill=False)
        for part in parts:  # all marked before any flush: an ACK may arrive in between
            self._sent_at[part[-1].seq] = time.monotonic()
            for block in part:
                self._unacked[block.seq] = quality
        await self._flush(ws, protocol)
        self.blocks_sent += len(batch)

    async def _send_backfill(self, ws: ClientConnection, protocol: Protocol) -> bool:
        seqs = sorted(s for s in self._needs_backfill if s not in self._backfill_unacked)
        if not seqs:
            return False
        batch, frames = [], 0
        for seq in seqs:
            if frames >= self.max_batch_frames:
                break
            block = self.spool.block(seq)
            batch.append(block)
            frames += block.frames
        for part in self._encode(protocol, batch, self.quality, backfill=True):
            self._backfill_unacked.update(b.seq for b in part)
            await self._flush(ws, protocol)
        return True

    def _encode(self, protocol: Protocol, batch: list[Block], quality: Quality, *, backfill: bool
                ) -> list[list[Block]]:
        """Queue ``batch`` as one frame, or split in halves until each fits the receiver's limit.
        A frame's ``dropped`` ranges lie before its first seq (docs/protocol.md), so a block
        that follows a hole starts a frame of its own."""
        hole = next((i for i, b in enumerate(batch) if i and b.seq in self._dropped_before), None)
        if hole is not None:
            return (self._encode(protocol, batch[:hole], quality, backfill=backfill)
                    + self._encode(protocol, batch[hole:], quality, backfill=backfill))
        dropped = [self._dropped_before[batch[0].seq]] if batch[0].seq in self._dropped_before else []
        try:
            self.bytes_sent += protocol.send_blocks(batch, quality, backfill=backfill, dropped=dropped,
                                                    max_size=self.max_frame_size)
            self.audio_bytes_sent += protocol.last_audio_payload
            return [batch]
        except InvalidMessage as exc:
            if exc.code is not ErrorCode.FRAME_TOO_LARGE:
                raise
            if len(batch) == 1:
                raise SenderError(f"block {batch[0].seq} alone is over the receiver's frame limit "
                                  f"({self.max_frame_size} bytes)", ErrorCode.FRAME_TOO_LARGE) from None
        half = len(batch) // 2
        return (self._encode(protocol, batch[:half], quality, backfill=backfill)
                + self._encode(protocol, batch[half:], quality, backfill=backfill))

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
                    self._on_ack(event.through, event.backfilled)
                elif isinstance(event, Error):
                    self._raise_for(event.code, event.reason, "receiver ended the stream")
            if protocol.close_code is not None:
                raise SenderError(f"protocol error: {protocol.close_reason}", protocol.close_code)

    def _on_ack(self, through: int, backfilled: tuple[tuple[int, int], ...], resumed: bool = False) -> None:
        if through > self.durable_through:
            self.durable_through = through
        release = []
        for seq in [s for s in self._unacked if s <= through]:
            quality = self._unacked.pop(seq)
            self._backlog_frames -= self._frames.pop(seq, 0)
            if quality == self.quality or seq in self._audioless:
                release.append(seq)
                self._audioless.pop(seq, None)
            else:
                self._needs_backfill.add(seq)
        if resumed:
            # a resumed stream: the receiver has everything through ``through``; what we still hold
            # of it may have gone degraded before we restarted, so replace it at full quality
            while self._unsent and self._unsent[0] <= through:
                seq = self._unsent.popleft()
                self._backlog_frames -= self._frames.pop(seq, 0)
                if seq in self.spool:
                    self._needs_backfill.add(seq)
        for first, last in backfilled:
            for seq in range(first, last + 1):
                if seq in self._needs_backfill:
                    self._needs_backfill.discard(seq)
                    self._backfill_unacked.discard(seq)
                    self.blocks_backfilled += 1
                    release.append(seq)
        self.spool.release(release)
        now = time.monotonic()
        for seq in [s for s in self._sent_at if s <= through]:
            self.rtt_seconds = now - self._sent_at.pop(seq)

    def _requeue_unacked(self) -> None:
        """A lost connection: everything not yet acknowledged goes again, in order."""
        if self._unacked:
            self._unsent = deque(sorted(set(self._unsent) | set(self._unacked)))
            self._unacked.clear()
        self._backfill_unacked.clear()
        self._sent_at.clear()

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

