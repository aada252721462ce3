"""The receiver service: many websocket connections, one writer per stream.

The websocket library only moves frames; ``Protocol`` (shared with the sender) decides what
they mean. File work runs in worker threads so one stream's fsync never stalls another's
frames. Bad input ends only its own connection, with a close code and a reason; so does a
disk that cannot write (``STORAGE``), and the stream is released for a later resume.

A stream whose connection drops without BYE lingers (``linger`` seconds, its writer open) for
its sender to come back; only then are its files written, on a pool of ``finalise_workers``
threads, so reconnects on a flaky link cost nothing and finalising never blocks the loop.
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

from .completed import CompletedStream, open_stream_writer
from .writer import Overlap, Refused, StorageError, StreamMismatch, StreamWriter

log = logging.getLogger("sendlearn.receiver")

COMMIT_INTERVAL = 0.25  # seconds between fsyncs while blocks arrive (docs/dataset.md, "Durability")
HELLO_TIMEOUT = 10.0
TAKEOVER_WAIT = 2.0  # seconds a HELLO waits for the same stream's previous connection to finish
LINGER = 30.0  # seconds a stream cut without BYE waits for its sender before it is finalised
FINALISE_WORKERS = 2  # streams finalised at once (each reads its whole audio and journal)
_FINALISING = object()  # stands in _active for a lingering stream being finalised


class Receiver:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        tokens: set[str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        commit_interval: float = COMMIT_INTERVAL,
        linger: float = LINGER,
        finalise_workers: int = FINALISE_WORKERS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tokens = tokens
        self.max_frame_size = max_frame_size
        self.commit_interval = commit_interval
        self.linger = linger
        self._active: dict[tuple[str, str], object] = {}
        self._lingering: dict[tuple[str, str], tuple[StreamWriter, asyncio.Task]] = {}
        self.refused: dict[ErrorCode, int] = {}
        self.streams_finalised = 0
        # fsync waits on the disk, not the CPU: enough threads that many streams' commits overlap
        self.fsync_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="sendlearn-fsync")
        self.finalise_pool = ThreadPoolExecutor(max_workers=finalise_workers, thread_name_prefix="sendlearn-finalise")
        self.storage_failures = 0
        # the last storage failure, until a later write and sync succeeds (for a health check: issue 12)
        self.storage_error: str | None = None
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

    async def finalise(self, writer: StreamWriter | CompletedStream, ended: str) -> None:
        """Write a stream's files on the finalise pool; a failure keeps its work folder."""
        try:
            await asyncio.get_running_loop().run_in_executor(self.finalise_pool, writer.finalise, ended)
            self.streams_finalised += 1
        except StorageError as exc:
            self.storage_failures += 1
            log.error("finalising %s/%s failed, its work folder is kept: %s", writer.info.session,
                      writer.info.stream, exc.reason)
            writer.abandon()
            raise
        except Exception:
            log.exception("finalising %s/%s failed; its work folder is kept", writer.info.session,
                          writer.info.stream)
            writer.abandon()
            raise

    def linger_then_finalise(self, key: tuple[str, str], writer: StreamWriter) -> None:
        """Keep ``writer`` open for its sender to come back; finalise it if it does not."""
        async def later() -> None:
            await asyncio.sleep(self.linger)
            if self._lingering.get(key, (None,))[0] is not writer:
                return
            del self._lingering[key]
            self._active[key] = _FINALISING  # a HELLO meanwhile waits, then hears STREAM_BUSY
            try:
                await self.finalise(writer, "connection lost")
            except Exception:
                pass  # logged by finalise
            finally:
                if self._active.get(key) is _FINALISING:
                    del self._active[key]

        self._lingering[key] = (writer, asyncio.create_task(later()))

    def take_lingering(self, key: tuple[str, str]) -> StreamWriter | None:
        if key not in self._lingering:
            return None
        writer, task = self._lingering.pop(key)
        task.cancel()
        return writer

    async def shutdown(self) -> None:
        """Finalise every lingering stream (the server has stopped taking connections)."""
        self.stopping = True
        for key in list(self._lingering):
            writer = self.take_lingering(key)
            try:
                await self.finalise(writer, "receiver stopped")
            except Exception:
                pass  # logged by finalise


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
        self.released = False

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
                        if self.protocol.close_code is None:
                            return  # files written, closed with 1000
                        break
                    elif isinstance(event, Error):
                        log.info("sender %s ended with %s: %s", self.key, event.code.name, event.reason)
            except Overlap as exc:
                self.protocol.fail(ErrorCode.OVERLAP, str(exc))
            except Refused as exc:
                self.protocol.fail(ErrorCode.INVALID_BLOCK, str(exc))
            except StorageError as exc:
                self.storage_failed(exc)
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
        lingering = receiver.take_lingering(key)
        try:
            if lingering is not None:
                lingering.check_resume(info, hello.take)
                self.writer = lingering
                # what the last connection added after its last commit must be durable before WELCOME
                durable = await asyncio.get_running_loop().run_in_executor(receiver.fsync_pool, lingering.commit)
            else:
                self.writer = await asyncio.to_thread(open_stream_writer, receiver.data_dir, info,
                                                      dict(hello.meta), hello.take)
                durable = self.writer.acknowledgeable  # the writer fsynced what it recovered when it opened
        except StreamMismatch as exc:
            if lingering is not None:
                receiver.linger_then_finalise(key, lingering)  # still its own sender's to resume
            self.refuse(ErrorCode.STREAM_MISMATCH, str(exc))
            return
        except StorageError as exc:
            self.storage_failed(exc)  # release() abandons a lingering writer that failed here
            return
        self.acked = durable
        receiver.storage_error = None
        self.protocol.send(Welcome(durable, receiver.max_frame_size))
        log.info("stream %s/%s from %s (%s), resuming after seq %d", *key, self.ws.remote_address,
                 hello.host, durable)

    async def finish(self, bye: Bye) -> None:
        assert self.writer is not None
        await self.committed()
        if self.protocol.close_code is not None:
            return  # the last commit failed: nothing more is written or acknowledged
        try:
            self.writer.bye(bye.last_seq, dict(bye.stats), bye.dropped)
            through = await asyncio.get_running_loop().run_in_executor(self.receiver.fsync_pool, self.writer.commit)
            self.protocol.send(Ack(through, seq_ranges(self.backfilled)))
            self.backfilled = []
            await self.flush()
            await self.receiver.finalise(self.writer, "bye")
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
        through, backfilled = self.writer.acknowledgeable, self.backfilled
        self.backfilled = []
        self.dirty = False
        self.last_commit = time.monotonic()
        self.committing = asyncio.create_task(self._commit(through, backfilled))

    async def _commit(self, through: int, backfilled: list[int]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.receiver.fsync_pool, self.writer.commit)
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
        if self.protocol.close_code is None:
            self.protocol.fail(ErrorCode.STORAGE, exc.reason)

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
        except ConnectionClosed:
            pass
        await self.release()  # before the close handshake: a sender stuck in a send must not hold its stream
        try:
            await self.ws.close(int(code) if code is not None else 1000, self.protocol.close_reason)
        except ConnectionClosed:
            pass

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            if self.committing is not asyncio.current_task():  # a failed commit releases from its own task
                await self.committed()
            writer = self.writer
            if isinstance(writer, StreamWriter) and writer.failed is not None:
                writer.abandon()  # no commit runs now; a new writer resumes from what is synced
            elif isinstance(writer, StreamWriter) and not writer.finalised:
                if writer.last_seq is None and not self.receiver.stopping and self.receiver.linger > 0:
                    self.receiver.linger_then_finalise(self.key, writer)  # its sender may come back
                else:
                    ended = ("bye" if writer.last_seq is not None else "receiver stopped"
                             if self.receiver.stopping else "connection lost")
                    try:
                        await self.receiver.finalise(writer, ended)
                    except Exception:
                        pass  # logged by finalise; the work folder stays for a resume
        finally:
            # always: a stream left marked active would refuse its sender (STREAM_BUSY) for good
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
        await self.receiver.shutdown()
