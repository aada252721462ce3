"""One websocket connection of the receiver: handshake, blocks to the stream's writer, commits
in the background and ACKs once they are durable, BYE and the files. Its failures end only
itself, with a close code and a reason (``STORAGE`` when the disk refuses); its stream is
released before the close handshake, so a sender that reconnects finds it free.

The protocol object is driven from the event loop only. A frame is decoded by the pure
functions of transport/received.py, on the loop when its work is small (by what the decoded
BLOCK header says its audio decodes to) or else on a decode thread, and the result is applied to
the protocol on the loop. The stream's lifecycle is the registry's (server/registry.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sendlearn.capture import StreamInfo
from sendlearn.server import metrics
from sendlearn.server.errors import close_code
from sendlearn.server.figures import StreamFigures
from sendlearn.server.registry import StreamState
from sendlearn.store.completed import StreamTarget, open_stream_writer
from sendlearn.store.errors import Refused, StorageError, StreamBusy, StreamMismatch
from sendlearn.store.writer import StreamWriter
from sendlearn.transport import Ack, BlocksReceived, Bye, Error, ErrorCode, Hello, Protocol, Welcome
from sendlearn.transport.messages import BlockFrame
from sendlearn.transport.ranges import seq_ranges
from sendlearn.transport.received import Event, Received, decoded_bytes, parse, with_blocks

if TYPE_CHECKING:
    from sendlearn.server.receiver import Receiver

log = logging.getLogger("sendlearn.receiver")

T = TypeVar("T")

TAKEOVER_WAIT = 2.0  # seconds a HELLO waits for the same stream's previous connection to finish


class Connection:
    """One websocket: handshake, blocks to the writer, commits and ACKs."""

    def __init__(self, receiver: Receiver, ws: ServerConnection, protocol: Protocol) -> None:
        self.receiver = receiver
        self.ws = ws
        self.protocol = protocol
        self.writer: StreamTarget | None = None
        self.key: tuple[str, str] | None = None
        self.acked = -2
        self.backfilled: list[int] = []  # stored, not yet acknowledged as backfilled
        self.dirty = False
        self.last_commit = time.monotonic()
        self.committing: asyncio.Task[None] | None = None
        self.released = False
        self.done = False  # BYE handled: the files are written and the connection closed
        self.peer = str(ws.remote_address[0]) if ws.remote_address else "?"
        self.figures = StreamFigures(self.peer)  # for /status and /metrics
        self.welcomed = False
        self.token: str | None = None  # the accepted HELLO's, checked again when the tokens file changes
        self.revoked = False  # its token was revoked while it streamed: closed, its work folder kept
        self.closing: asyncio.Task[None] | None = None
        self._counted = False  # its close code is counted and logged once
        self.finishing = False

    async def run(self) -> None:
        service = self.receiver.service
        hello_by = time.monotonic() + service.hello_timeout
        last_message = time.monotonic()
        while self.protocol.close_code is None:
            now = time.monotonic()
            timeout = hello_by - now if self.writer is None else self.receiver.commit_interval
            try:
                async with asyncio.timeout(max(timeout, 0.001)):  # no task per frame, unlike wait_for
                    data = await self.ws.recv()
            except TimeoutError:
                if self.writer is None:
                    self.protocol.fail(ErrorCode.TIMEOUT, f"no HELLO within {service.hello_timeout:g} s")
                    break
                if time.monotonic() - last_message > service.idle_timeout:  # pings never reach recv()
                    self.protocol.fail(ErrorCode.TIMEOUT, f"no message for {service.idle_timeout:g} s")
                    break
                self.commit_soon()
                continue
            last_message = time.monotonic()
            if isinstance(data, str):
                self.protocol.fail(ErrorCode.MALFORMED, "text frames are not part of the protocol")
                break
            try:
                await self.receive(data)
                if self.done:
                    return  # files written, closed with 1000
            except (Refused, StreamBusy) as exc:
                self.protocol.fail(close_code(exc), str(exc))
            except StorageError as exc:
                self.storage_failed(exc)
            if self.dirty and time.monotonic() - self.last_commit >= self.receiver.commit_interval:
                self.commit_soon()
            await self.flush()
        await self.flush_and_close()

    async def receive(self, data: bytes) -> None:
        """One frame: decoded by pure functions of the frame and the HELLO, applied to the
        protocol on the loop, its events handled. Small work runs on the loop; the rest on a
        decode thread, within the receiver's budget of bytes in flight. A plain frame's msgpack
        is bounded by its size; a zstd body is not, nor is a BLOCK's audio, which costs what its
        header says it decodes to (whatever its coding)."""
        receiver, limits = self.receiver, self.receiver.limits
        inline = receiver.service.inline_bytes
        if len(data) <= inline and data[:1] == b"\x00":
            received = parse(data, limits)
        else:
            async with receiver.memory.hold(2 * len(data)):
                received = await self.off_loop(lambda: parse(data, limits))
        hello = self.protocol.hello  # set on the loop by the HELLO, never changed after it
        if received.needs_blocks and hello is not None:
            assert isinstance(received.message, BlockFrame)
            audio = min(decoded_bytes(received.message, hello.channels), limits.max_decoded_bytes)
            if audio > inline:
                # the frame, its audio decoded and as blocks, held until the blocks are stored
                async with receiver.memory.hold(len(data) + 2 * audio):
                    decoded = received
                    received = await self.off_loop(lambda: with_blocks(decoded, hello, limits))
                    await self.apply(received, len(data))
                return
            received = with_blocks(received, hello, limits)
        await self.apply(received, len(data))

    async def apply(self, received: Received, size: int) -> None:
        self.protocol.receive_decoded(received)
        await self.handle(self.protocol.events_received(), size)

    async def off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.receiver.decode_pool, work)

    async def store(self, received: BlocksReceived) -> list[int]:
        """The blocks to the writer: on the loop when they are small, else on a decode thread
        (this connection awaits it, so nothing else adds to its writer meanwhile). Returns the
        seqs to acknowledge as backfilled."""
        writer = self.writer
        assert writer is not None  # BLOCKs come only after the WELCOME that set it
        size = sum(block.frames for block in received.blocks) * writer.info.channels * 4
        if size <= self.receiver.service.inline_bytes:
            return writer.add(received.blocks, received.quality, backfill=received.backfill,
                              dropped=received.dropped)
        return await self.off_loop(lambda: writer.add(received.blocks, received.quality, backfill=received.backfill,
                                                      dropped=received.dropped))

    def fields(self, **more: object) -> dict[str, object]:
        """Structured log fields (cli/serve.py prints them as JSON): the peer and the stream's ids."""
        ids = {"session": self.key[0], "stream": self.key[1]} if self.key else {}
        return {"peer": self.peer, **ids, **more}

    async def handle(self, events: list[Event], size: int) -> None:
        for event in events:
            if isinstance(event, Hello):
                await self.accept(event)
            elif isinstance(event, BlocksReceived):
                self.backfilled += await self.store(event)
                self.dirty = True
                self.figures.count(event, size)
            elif isinstance(event, Bye):
                await self.finish(event)
                if self.protocol.close_code is None:
                    self.done = True
                return
            elif isinstance(event, Error):
                log.info("sender %s ended with %s: %s", self.key, event.code.name, event.reason,
                         extra=self.fields(code=event.code.name))

    async def accept(self, hello: Hello) -> None:
        receiver = self.receiver
        if receiver.tokens is not None:
            receiver.check_tokens()  # the file as it is now, not as it was up to half a second ago
            if receiver.tokens.error is not None:
                self.refuse(ErrorCode.UNAUTHORIZED, "the receiver's tokens file is broken: no token is accepted")
                return
            if not receiver.tokens.accepts(hello.token, hello.session):
                self.refuse(ErrorCode.UNAUTHORIZED, "token not accepted")
                return
            self.token = hello.token
        key = (hello.session, hello.stream)
        registry = receiver.registry
        deadline = time.monotonic() + TAKEOVER_WAIT
        while True:
            state = registry.state(key)
            if state in (StreamState.FREE, StreamState.LINGERING):
                try:
                    before = registry.move(key, StreamState.CONNECTED, owner=self)
                    break
                except StreamBusy:
                    pass  # another worker process has it (connected, lingering or finalising)
            if time.monotonic() >= deadline:
                self.refuse(ErrorCode.STREAM_BUSY, f"stream {hello.session}/{hello.stream} is already connected")
                return
            # a reconnect can beat the old connection's clean-up by a little
            await asyncio.sleep(0.02 if state is not StreamState.FREE else 0.05)
        info = StreamInfo(hello.session, hello.stream, hello.sample_rate, hello.channels, hello.block_size,
                          hello.track, hello.host)
        self.key = key
        lingering = before.writer if before is not None else None
        try:
            if isinstance(lingering, StreamWriter):
                lingering.check_resume(info, hello.take)
                self.writer = lingering
                # what the last connection added after its last commit must be durable before WELCOME
                durable = await asyncio.get_running_loop().run_in_executor(receiver.fsync_pool, lingering.commit)
            else:
                limits = receiver.limits
                opened = await asyncio.get_running_loop().run_in_executor(
                    receiver.decode_pool, lambda: open_stream_writer(
                        receiver.data_dir, info, dict(hello.meta), hello.take,
                        max_block_frames=limits.max_block_frames(info.block_size),
                        max_seqs_ahead=limits.max_seqs_ahead))
                self.writer = opened
                durable = opened.acknowledgeable  # the writer fsynced what it recovered when it opened
        except StreamMismatch as exc:
            if isinstance(lingering, StreamWriter):
                receiver.keep_for_resume(key, lingering)  # still its own sender's to resume
            self.refuse(close_code(exc), str(exc))
            return
        except StorageError as exc:
            self.storage_failed(exc)  # release() abandons a lingering writer that failed here
            return
        self.acked = durable
        receiver.storage_error = None
        self.ws.protocol.max_message_size = receiver.max_frame_size + 1  # accepted: full-size frames now
        self.figures.host, self.welcomed = hello.host, True
        metrics.STREAMS.inc()
        self.protocol.send(Welcome(durable, receiver.max_frame_size))
        log.info("stream %s/%s from %s (%s), resuming after seq %d", *key, self.ws.remote_address,
                 hello.host, durable,
                 extra=self.fields(resume_after=durable))

    async def finish(self, bye: Bye) -> None:
        assert self.writer is not None and self.key is not None
        self.finishing = True  # its sender said BYE: a stopping receiver lets it end with 1000
        await self.committed()
        if self.protocol.close_code is not None:
            return  # the last commit failed: nothing more is written or acknowledged
        try:
            self.writer.bye(bye.last_seq, dict(bye.stats), bye.dropped)
            through = await asyncio.get_running_loop().run_in_executor(self.receiver.fsync_pool, self.writer.commit)
            self.protocol.send(Ack(through, seq_ranges(self.backfilled)))
            self.backfilled = []
            await self.flush()
            self.receiver.registry.move(self.key, StreamState.FINALISING)
            await self.receiver.finalise_held(self.key, self.writer, "bye")
        except StorageError as exc:
            # BYE is durable if its ACK went out: a sender that comes back says BYE again, and
            # the files are written then
            self.storage_failed(exc)
            return
        await self.ws.close(1000, "stream complete")

    def commit_soon(self) -> None:
        """fsync in the background and then ACK what was stored before it began. The connection
        goes on reading meanwhile: a slow disk must not keep it from answering pings."""
        if self.writer is None or not self.dirty or (self.committing is not None and not self.committing.done()):
            return
        self.figures.flush(self.key)
        through, backfilled = self.writer.acknowledgeable, self.backfilled
        self.backfilled = []
        self.dirty = False
        self.last_commit = time.monotonic()
        self.committing = asyncio.create_task(self._commit(self.writer, through, backfilled))

    async def _commit(self, writer: StreamTarget, through: int, backfilled: list[int]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.receiver.fsync_pool, writer.commit)
        except StorageError as exc:
            self.storage_failed(exc)  # no ACK: what this commit covered may not be on disk
            await self.flush_and_close()
            return
        self.receiver.storage_error = None
        if self.protocol.close_code is not None:
            return
        try:
            if through != self.acked or backfilled:
                self.protocol.send(Ack(through, seq_ranges(backfilled)))
                self.acked = through
                self.figures.acknowledged(through)
                await self.flush()
        except ConnectionClosed:
            pass

    async def committed(self) -> None:
        """Wait for a background commit, so nothing else touches the writer's files meanwhile.
        ``_commit`` handles its own failures; anything else it raised is a bug, logged here."""
        if self.committing is not None:
            try:
                await self.committing
            except ConnectionClosed:
                pass
            except Exception:
                log.exception("commit for %s failed", self.key)

    def storage_failed(self, exc: StorageError) -> None:
        """The disk refused: the writer is marked failed (release abandons it); end the connection saying why."""
        self.receiver.storage_failures += 1
        self.receiver.storage_error = exc.reason
        metrics.STORAGE_ERRORS.inc()
        if self.protocol.close_code is None:
            self.protocol.fail(ErrorCode.STORAGE, exc.reason)

    def refuse(self, code: ErrorCode, reason: str) -> None:
        self.protocol.fail(code, reason)  # counted in flush_and_close

    async def flush(self) -> None:
        for frame in self.protocol.data_to_send():
            await self.ws.send(frame)

    def revoke(self) -> None:
        """Its token is no longer accepted: close with UNAUTHORIZED now, keeping the work folder
        for a resume with a valid token (``release``)."""
        if self.protocol.close_code is None:
            self.revoked = True
            self.end(ErrorCode.UNAUTHORIZED, "token revoked")

    def end(self, code: ErrorCode, reason: str) -> None:
        """Close with ``code`` from outside the connection's own task (the receiver stopping, a
        token revoked). That task releases the stream when its next read or send sees the close."""
        if self.protocol.close_code is not None:
            return
        self.protocol.fail(code, reason)
        self.closing = asyncio.create_task(self._close_now())

    async def _close_now(self) -> None:
        code = self.protocol.close_code
        assert code is not None
        self.count_close()
        try:
            await self.flush()
            await self.ws.close(int(code), self.protocol.close_reason)
        except ConnectionClosed:
            pass

    def count_close(self) -> None:
        """Count and log the close code, once."""
        code = self.protocol.close_code
        if code is None or self._counted:
            return
        self._counted = True
        self.receiver.refused[code] = self.receiver.refused.get(code, 0) + 1
        metrics.REFUSALS.labels(code.name).inc()
        log.info("closing %s: %s %s", self.ws.remote_address, code.name, self.protocol.close_reason,
                 extra=self.fields(code=code.name))

    async def flush_and_close(self) -> None:
        code = self.protocol.close_code
        self.count_close()
        try:
            await self.flush()
        except ConnectionClosed:
            pass
        await self.release()  # before the close handshake: a sender stuck in a send must not hold its stream
        try:
            await self.ws.close(int(code) if code is not None else 1000, self.protocol.close_reason)
        except ConnectionClosed:
            pass

    async def release(self) -> None:
        """Leave the stream to the registry: lingering for its sender, finalised, or free."""
        if self.released:
            return
        self.released = True
        receiver, key = self.receiver, self.key
        try:
            if self.committing is not asyncio.current_task():  # a failed commit releases from its own task
                await self.committed()
            self.figures.flush(key)
            if key is None or not receiver.registry.owned_by(key, self):
                return  # never accepted, or finished (BYE) already
            writer = self.writer
            if isinstance(writer, StreamWriter) and not writer.opened:
                writer.abandon()  # nothing stored: nothing on disk, nothing to linger for
                receiver.registry.move(key, StreamState.FREE)
            elif isinstance(writer, StreamWriter) and writer.failed is not None:
                writer.abandon()  # no commit runs now; a new writer resumes from what is synced
                receiver.registry.move(key, StreamState.FAILED)
            elif isinstance(writer, StreamWriter) and self.revoked and not writer.finalised:
                try:  # what was stored is synced; the work folder waits for a sender with a valid token
                    await asyncio.get_running_loop().run_in_executor(receiver.fsync_pool, writer.close)
                except StorageError as exc:
                    log.error("closing %s/%s after its token was revoked: %s", *key, exc.reason, extra=self.fields())
                receiver.registry.move(key, StreamState.FAILED)
            elif isinstance(writer, StreamWriter) and not writer.finalised:
                if writer.last_seq is None and not receiver.stopping and receiver.linger > 0:
                    receiver.keep_for_resume(key, writer)  # its sender may come back
                else:
                    ended = ("bye" if writer.last_seq is not None else "receiver stopped"
                             if receiver.stopping else "connection lost")
                    receiver.registry.move(key, StreamState.FINALISING)
                    try:
                        await receiver.finalise_held(key, writer, ended)
                    except Exception:
                        pass  # logged by finalise; the work folder stays for a resume
            else:
                receiver.registry.move(key, StreamState.FREE)  # no writer of its own, or a complete stream
        finally:
            if self.welcomed:
                assert key is not None  # set before the WELCOME
                metrics.STREAMS.dec()
                metrics.QUALITY.remove(key)
            # always: a stream left connected would refuse its sender (STREAM_BUSY) for good
            if key is not None and receiver.registry.owned_by(key, self):
                receiver.registry.move(key, StreamState.FREE)


def loop_thread_guard() -> Callable[[], None]:
    """A ``Protocol.guard`` that refuses any thread but the caller's (the event loop's): a debug
    check, on when SENDLEARN_CHECK_PROTOCOL_THREAD is set (tests/test_receiver_loop.py)."""
    owner = threading.get_ident()

    def guard() -> None:
        if threading.get_ident() != owner:
            raise RuntimeError(f"the protocol object was driven from thread {threading.current_thread().name}, "
                               "not the event loop's")

    return guard
