"""The receiver service: many websocket connections, one writer per stream.

The websocket library only moves frames; ``Protocol`` (shared with the sender) decides what
they mean. File work runs in worker threads so one stream's fsync never stalls another's
frames. Bad input ends only its own connection, with a close code and a reason.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sendlearn.capture import StreamInfo
from sendlearn.transport import Ack, BlocksReceived, Bye, Error, ErrorCode, Hello, Protocol, Role, Welcome
from sendlearn.transport.messages import DEFAULT_MAX_FRAME, seq_ranges

from .writer import CompletedStream, Refused, StreamMismatch, StreamWriter, open_stream_writer

log = logging.getLogger("sendlearn.receiver")

COMMIT_INTERVAL = 0.25  # seconds between fsyncs while blocks arrive (docs/dataset.md, "Durability")
HELLO_TIMEOUT = 10.0
TAKEOVER_WAIT = 2.0  # seconds a HELLO waits for the same stream's previous connection to finish


class Receiver:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        tokens: set[str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        commit_interval: float = COMMIT_INTERVAL,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tokens = tokens
        self.max_frame_size = max_frame_size
        self.commit_interval = commit_interval
        self._active: dict[tuple[str, str], ServerConnection] = {}
        self.refused: dict[ErrorCode, int] = {}
        self.streams_finalised = 0
        # fsync waits on the disk, not the CPU: enough threads that many streams' commits overlap
        self.fsync_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="sendlearn-fsync")
        self.stopping = False

    async def serve(self, host: str = "127.0.0.1", port: int = 8765, ssl_context: ssl.SSLContext | None = None,
                    ) -> Server:
        """Start listening; the returned server's ``sockets`` tell the bound port."""
        return await serve(self.handle, host, port, compression=None, max_size=self.max_frame_size + 1,
                           ssl=ssl_context, ping_interval=10, ping_timeout=20,
                           max_queue=4)  # a few frames queued per connection: memory stays per-stream small

    async def handle(self, ws: ServerConnection) -> None:
        protocol = Protocol(Role.RECEIVER, max_frame_size=self.max_frame_size)
        connection = _Connection(self, ws, protocol)
        try:
            await connection.run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection from %s failed", ws.remote_address)
            protocol.fail(ErrorCode.RECEIVER_ERROR, "internal error")
            await connection.flush_and_close()
        finally:
            await connection.release()


class _Connection:
    """One websocket: handshake, blocks to the writer, commits and ACKs."""

    def __init__(self, receiver: Receiver, ws: ServerConnection, protocol: Protocol) -> None:
        self.receiver = receiver
        self.ws = ws
        self.protocol = protocol
        self.writer: StreamWriter | CompletedStream | None = None
        self.key: tuple[str, str] | None = None
        self.acked = -2
        self.backfilled: list[int] = []  # stored, not yet acknowledged as backfilled
        self.dirty = False
        self.last_commit = time.monotonic()
        self.committing: asyncio.Task | None = None

    async def run(self) -> None:
        while self.protocol.close_code is None:
            timeout = HELLO_TIMEOUT if self.writer is None else self.receiver.commit_interval
            try:
                data = await asyncio.wait_for(self.ws.recv(), timeout)
            except TimeoutError:
                if self.writer is None:
                    self.protocol.fail(ErrorCode.UNEXPECTED_MESSAGE, f"no HELLO within {HELLO_TIMEOUT:.0f} s")
                    break
                self.commit_soon()
                continue
            if isinstance(data, str):
                self.protocol.fail(ErrorCode.MALFORMED, "text frames are not part of the protocol")
                break
            self.protocol.receive_data(data)
            try:
                for event in self.protocol.events_received():
                    if isinstance(event, Hello):
                        await self.accept(event)
                    elif isinstance(event, BlocksReceived):
                        # page-cache writes are quick: inline; only the fsync of a commit goes to a thread
                        self.backfilled += self.writer.add(event)
                        self.dirty = True
                    elif isinstance(event, Bye):
                        await self.finish(event)
                        return
                    elif isinstance(event, Error):
                        log.info("sender %s ended with %s: %s", self.key, event.code.name, event.reason)
            except Refused as exc:
                self.protocol.fail(ErrorCode.INVALID_BLOCK, str(exc))
            if self.dirty and time.monotonic() - self.last_commit >= self.receiver.commit_interval:
                self.commit_soon()
            await self.flush()
        await self.flush_and_close()

    async def accept(self, hello: Hello) -> None:
        receiver = self.receiver
        if receiver.tokens is not None and hello.token not in receiver.tokens:
            self.refuse(ErrorCode.UNAUTHORIZED, "token not accepted")
            return
        key = (hello.session, hello.stream)
        deadline = time.monotonic() + TAKEOVER_WAIT
        while key in receiver._active and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # a reconnect can beat the old connection's clean-up by a little
        if key in receiver._active:
            self.refuse(ErrorCode.STREAM_BUSY, f"stream {hello.session}/{hello.stream} is already connected")
            return
        info = StreamInfo(hello.session, hello.stream, hello.sample_rate, hello.channels, hello.block_size,
                          hello.track, hello.host)
        receiver._active[key] = self.ws
        self.key = key
        try:
            self.writer = await asyncio.to_thread(open_stream_writer, receiver.data_dir, info, dict(hello.meta),
                                                  hello.take)
        except StreamMismatch as exc:
            self.refuse(ErrorCode.STREAM_MISMATCH, str(exc))
            return
        durable = self.writer.acknowledgeable  # the writer fsynced what it recovered when it opened
        self.acked = durable
        self.protocol.send(Welcome(durable, receiver.max_frame_size))
        log.info("stream %s/%s from %s (%s), resuming after seq %d", *key, self.ws.remote_address,
                 hello.host, durable)

    async def finish(self, bye: Bye) -> None:
        assert self.writer is not None
        await self.committed()
        self.writer.bye(bye.last_seq, dict(bye.stats), bye.dropped)
        through = await asyncio.to_thread(self.writer.commit)
        self.protocol.send(Ack(through, seq_ranges(self.backfilled)))
        await self.flush()
        await asyncio.to_thread(self.writer.finalise, "bye")
        self.receiver.streams_finalised += 1
        await self.ws.close(1000, "stream complete")

    def commit_soon(self) -> None:
        """fsync in the background and then ACK what was stored before it began. The connection
        goes on reading meanwhile: a slow disk must not keep it from answering pings."""
        if self.writer is None or not self.dirty or (self.committing is not None and not self.committing.done()):
            return
        through, backfilled = self.writer.acknowledgeable, self.backfilled
        self.backfilled = []
        self.dirty = False
        self.last_commit = time.monotonic()
        self.committing = asyncio.create_task(self._commit(through, backfilled))

    async def _commit(self, through: int, backfilled: list[int]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.receiver.fsync_pool, self.writer.commit)
            if through != self.acked or backfilled:
                self.protocol.send(Ack(through, seq_ranges(backfilled)))
                self.acked = through
                await self.flush()
        except ConnectionClosed:
            pass

    async def committed(self) -> None:
        """Wait for a background commit, so nothing else touches the writer's files meanwhile."""
        if self.committing is not None:
            await asyncio.gather(self.committing, return_exceptions=True)

    def refuse(self, code: ErrorCode, reason: str) -> None:
        self.protocol.fail(code, reason)  # counted in flush_and_close

    async def flush(self) -> None:
        for frame in self.protocol.data_to_send():
            await self.ws.send(frame)

    async def flush_and_close(self) -> None:
        code = self.protocol.close_code
        if code is not None:
            self.receiver.refused[code] = self.receiver.refused.get(code, 0) + 1
            log.info("closing %s: %s %s", self.ws.remote_address, code.name, self.protocol.close_reason)
        try:
            await self.flush()
            await self.ws.close(int(code) if code is not None else 1000, self.protocol.close_reason)
        except ConnectionClosed:
            pass

    async def release(self) -> None:
        await self.committed()
        if self.writer is not None and not self.writer.finalised:
            try:
                ended = ("bye" if self.writer.last_seq is not None
                         else "receiver stopped" if self.receiver.stopping
                         else "connection lost" if self.protocol.close_code is None else "error")
                await asyncio.to_thread(self.writer.finalise, ended)
                self.receiver.streams_finalised += 1
            except Exception:
                log.exception("finalising %s failed; its work folder is kept", self.key)
                self.writer.close()
        if self.key is not None and self.receiver._active.get(self.key) is self.ws:
            del self.receiver._active[self.key]


class ReceiverThread:
    """A receiver on its own thread and event loop, on an ephemeral loopback port.

    For commands that run without ``--server``, and for tests::

        with ReceiverThread(data_dir) as receiver:
            ... connect to receiver.url ...
    """

    def __init__(self, data_dir: Path | str, host: str = "127.0.0.1", port: int = 0, **options: object) -> None:
        self.receiver = Receiver(data_dir, **options)  # type: ignore[arg-type]
        self.host, self.port = host, port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sendlearn-receiver", daemon=True)

    def start(self) -> ReceiverThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ReceiverThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await self.receiver.serve(self.host, self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        port = server.sockets[0].getsockname()[1]
        self.url = f"ws://{self.host}:{port}"
        self._ready.set()
        await self._stop.wait()
        self.receiver.stopping = True
        server.close()
        await server.wait_closed()
