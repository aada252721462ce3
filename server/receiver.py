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
import os
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict, Unpack, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sendlearn.server import metrics
from sendlearn.server.auth import TokenEntry, Tokens, hash_token
from sendlearn.server.budget import ByteBudget
from sendlearn.server.connection import Connection, loop_thread_guard
from sendlearn.server.http import process_request
from sendlearn.server.registry import Key, StreamRegistry, StreamState
from sendlearn.server.settings import Service
from sendlearn.store.completed import StreamTarget
from sendlearn.store.errors import StorageError, StreamBusy
from sendlearn.store.locks import StreamLocks
from sendlearn.store.recovery import said_bye
from sendlearn.store.writer import StreamWriter
from sendlearn.transport import ErrorCode, Protocol, Role
from sendlearn.transport.limits import Limits
from sendlearn.transport.messages import DEFAULT_MAX_FRAME

log = logging.getLogger("sendlearn.receiver")

COMMIT_INTERVAL = 0.25  # seconds between fsyncs while blocks arrive (docs/dataset.md, "Durability")
LINGER = 30.0  # seconds a stream cut without BYE waits for its sender before it is finalised
FINALISE_WORKERS = 2  # streams finalised at once (each reads its whole audio and journal)
CAP_GRACE = 16  # connections over a cap still answered BUSY; past it they are closed at once, unanswered
TOKENS_INTERVAL = 0.5  # seconds between reads of the tokens file (a revoked token is cut within 2 s)


class ReceiverOptions(TypedDict, total=False):
    """The keyword options of ``Receiver``, for ``ReceiverThread``."""

    tokens: Tokens | set[str] | None
    max_frame_size: int
    commit_interval: float
    linger: float
    finalise_workers: int
    limits: Limits | None
    service: Service | None
    metrics_open: bool


class Receiver:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        tokens: Tokens | set[str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        commit_interval: float = COMMIT_INTERVAL,
        linger: float = LINGER,
        finalise_workers: int = FINALISE_WORKERS,
        limits: Limits | None = None,
        service: Service | None = None,
        metrics_open: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(tokens, (set, frozenset, list)):  # plain tokens (tests, in-process use): hashed here
            tokens = Tokens([TokenEntry(hash_token(t)) for t in tokens])
        self.tokens = tokens
        self.metrics_open = metrics_open  # /metrics without a token (a scraper on a private network)
        self.limits = limits if limits is not None else Limits(max_frame_size=max_frame_size)
        self.service = service if service is not None else Service()
        self.max_frame_size = self.limits.max_frame_size
        # decoding, verifying and storing frames: never on the event loop
        self.decode_pool = ThreadPoolExecutor(max_workers=self.service.decode_workers,
                                              thread_name_prefix="sendlearn-decode")
        self.memory = ByteBudget(self.service.memory_in_flight)
        self.connections: dict[str, int] = {}  # open connections by peer address
        self.open_connections: set[Connection] = set()
        self.locks = StreamLocks(self.data_dir)  # one writer per stream across worker processes
        self.commit_interval = commit_interval
        self.linger = linger
        self.registry = StreamRegistry(self.locks)  # each stream's lifecycle (server/registry.py)
        self.refused: dict[ErrorCode, int] = {}
        self.streams_finalised = 0
        # fsync waits on the disk, not the CPU: enough threads that many streams' commits overlap
        self.fsync_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="sendlearn-fsync")
        self.finalise_pool = ThreadPoolExecutor(max_workers=finalise_workers, thread_name_prefix="sendlearn-finalise")
        self.storage_failures = 0
        # the last storage failure, until a later write and sync succeeds (for a health check: issue 12)
        self.storage_error: str | None = None
        self.stopping = False
        self._recovering: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    async def serve(self, host: str = "127.0.0.1", port: int = 8765, ssl_context: ssl.SSLContext | None = None,
                    reuse_port: bool = False) -> Server:
        """Start listening; the returned server's ``sockets`` tell the bound port. Streams left
        with a BYE and no files (store/recovery.py) are finalised in the background."""
        # until its HELLO is accepted a connection may send only small frames (raised in Connection.accept)
        first = min(self.limits.max_hello_size, self.max_frame_size + 1)
        server = await serve(self.handle, host, port, compression=None, max_size=first, ssl=ssl_context, ping_interval=10, ping_timeout=20,
                             process_request=process_request(self), reuse_port=reuse_port or None,
                             create_connection=counted(self),  # counted from accept, not from the handshake
                             close_timeout=2,  # a peer that does not answer our close frame is cut after 2 s
                             max_queue=2)  # frames queued per connection: memory stays per-stream small
        self._recovering = asyncio.create_task(self.recover())
        self._sweeping = asyncio.create_task(self.sweep())
        if self.tokens is not None and self.tokens.path is not None:
            self._watching = asyncio.create_task(self.watch_tokens())
        return server

    async def watch_tokens(self) -> None:
        """Read the tokens file again twice a second, so a revoked token is cut within a second."""
        while not self.stopping:
            self.check_tokens()
            await asyncio.sleep(TOKENS_INTERVAL)

    def check_tokens(self) -> None:
        """The tokens file as it is now (a small local file, read on the loop); if it changed,
        every connection whose token it no longer accepts is closed with UNAUTHORIZED. A file
        that does not parse cuts no one: it only refuses new HELLOs until it is fixed."""
        tokens = self.tokens
        if tokens is None or not tokens.refresh() or tokens.error is not None:
            return
        for connection in list(self.open_connections):
            key = connection.key
            if connection.welcomed and key is not None and not tokens.accepts(connection.token, key[0]):
                log.warning("token revoked: closing %s/%s", *key, extra=connection.fields(code="UNAUTHORIZED"))
                connection.revoke()

    def claim_to_finalise(self, key: Key) -> bool:
        """FREE -> FINALISING for a stream nobody streams; False if it is held, here or elsewhere."""
        if self.stopping or self.registry.state(key) is not StreamState.FREE:
            return False
        try:
            self.registry.move(key, StreamState.FINALISING)
        except StreamBusy:
            return False  # another worker process has it
        except StorageError as exc:  # its lock cannot be taken: said on /healthz, tried again later
            self.storage_failures += 1
            self.storage_error = exc.reason
            metrics.STORAGE_ERRORS.inc()
            log.error("cannot lock %s/%s to finish it: %s", *key, exc.reason)
            return False
        return True

    async def sweep(self) -> None:
        """Remove work folders nobody came back for (store/expiry.py), now and then."""
        from sendlearn.store.expiry import expire, expired

        while not self.stopping:
            busy = self.registry.keys()
            for work in await asyncio.to_thread(expired, self.data_dir, self.service.work_expiry, busy):
                key = (work.parent.parent.name, work.parent.name)
                if not self.claim_to_finalise(key):
                    continue  # a HELLO meanwhile waits, then hears STREAM_BUSY
                try:
                    await asyncio.get_running_loop().run_in_executor(self.finalise_pool, expire, work)
                    self.registry.move(key, StreamState.COMPLETE)
                except Exception as exc:
                    log.error("could not expire %s: %s", work, exc)
                    self.registry.move(key, StreamState.FAILED)
            await asyncio.sleep(min(self.service.work_expiry / 4, 600.0))

    async def recover(self) -> None:
        for info, meta, take in await asyncio.to_thread(lambda: list(said_bye(self.data_dir))):
            key = (info.session, info.stream)
            if not self.claim_to_finalise(key):
                continue  # its sender is back (here or in another worker): it finishes the stream itself
            try:
                writer = await asyncio.to_thread(StreamWriter, self.data_dir, info, meta, take)
            except Exception as exc:
                log.error("could not open %s/%s left with a BYE: %s", *key, exc)
                self.registry.move(key, StreamState.FAILED)
                continue
            try:
                await self.finalise_held(key, writer, "bye")
                log.info("finished %s/%s, left with a BYE and no files", *key)
            except Exception as exc:  # logged by finalise
                log.error("could not finish %s/%s left with a BYE: %s", *key, exc)

    def opened(self, address: str) -> bool:
        """A connection accepted (its websocket handshake still to come): counted against the
        caps from now. False (closed at once, unanswered) if it is more than ``CAP_GRACE`` over
        a cap: one within it is answered BUSY once its handshake is done (``handle``)."""
        total = sum(self.connections.values())
        here = self.connections.get(address, 0)
        if total >= self.service.max_connections + CAP_GRACE or here >= self.service.max_connections_per_address + CAP_GRACE:
            return False
        self.connections[address] = here + 1
        metrics.CONNECTIONS.inc()
        return True

    def closed(self, address: str) -> None:
        metrics.CONNECTIONS.dec()
        self.connections[address] -= 1
        if not self.connections[address]:
            del self.connections[address]

    async def handle(self, ws: ServerConnection) -> None:
        protocol = Protocol(Role.RECEIVER, limits=self.limits)
        if os.environ.get("SENDLEARN_CHECK_PROTOCOL_THREAD"):
            protocol.guard = loop_thread_guard()
        connection = Connection(self, ws, protocol)
        address = str(ws.remote_address[0]) if ws.remote_address else "?"
        total = sum(self.connections.values()) - 1  # the others: this one is counted since it was accepted
        self.open_connections.add(connection)
        try:
            if total >= self.service.max_connections:
                protocol.fail(ErrorCode.BUSY, f"the receiver holds {total} connections, its limit")
                await connection.flush_and_close()
            elif self.connections[address] > self.service.max_connections_per_address:
                protocol.fail(ErrorCode.BUSY, f"{self.connections[address] - 1} connections from {address} "
                                              "already, the limit per address")
                await connection.flush_and_close()
            else:
                await connection.run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection from %s failed", ws.remote_address)
            protocol.fail(ErrorCode.RECEIVER_ERROR, "internal error")
            await connection.flush_and_close()
        finally:
            await connection.release()
            self.open_connections.discard(connection)

    async def finalise(self, writer: StreamTarget, ended: str) -> None:
        """Write a stream's files on the finalise pool; a failure keeps its work folder. A stream
        whose files were written already (its sender said BYE again) is not counted twice."""
        already = writer.finalised
        try:
            await asyncio.get_running_loop().run_in_executor(self.finalise_pool, writer.finalise, ended)
            if not already:
                self.streams_finalised += 1
                metrics.STREAMS_FINALISED.inc()
        except StorageError as exc:
            self.storage_failures += 1
            metrics.STORAGE_ERRORS.inc()
            log.error("finalising %s/%s failed, its work folder is kept: %s", writer.info.session,
                      writer.info.stream, exc.reason)
            writer.abandon()
            raise
        except Exception:
            log.exception("finalising %s/%s failed; its work folder is kept", writer.info.session,
                          writer.info.stream)
            writer.abandon()
            raise

    async def finalise_held(self, key: Key, writer: StreamTarget, ended: str) -> None:
        """A FINALISING stream's files, then COMPLETE; FAILED (and the error raised) if they fail."""
        try:
            await self.finalise(writer, ended)
        except BaseException:
            self.registry.move(key, StreamState.FAILED)
            raise
        self.registry.move(key, StreamState.COMPLETE)

    def keep_for_resume(self, key: Key, writer: StreamWriter) -> None:
        """CONNECTED -> LINGERING: ``writer`` stays open for its sender to come back; it is
        finalised when ``linger`` seconds pass without it."""
        async def later() -> None:
            await asyncio.sleep(self.linger)
            if self.registry.lingering_writer(key) is not writer:
                return
            self.registry.move(key, StreamState.FINALISING)  # a HELLO meanwhile waits, then hears STREAM_BUSY
            try:
                await self.finalise_held(key, writer, "connection lost")
            except Exception:
                pass  # logged by finalise

        self.registry.move(key, StreamState.LINGERING, writer=writer, timer=asyncio.create_task(later()))

    async def go_away(self, timeout: float = 5.0) -> None:
        """The receiver stops: every connection is closed with GOING_AWAY (docs/protocol.md), its
        stream finalised as "receiver stopped" (``Connection.release``). Waits up to ``timeout``
        for the close frames to go; the server's own close (1001) then cuts what is left."""
        self.stopping = True
        closing = []
        for connection in list(self.open_connections):
            if connection.finishing:
                continue  # BYE said: its files are being written, and it closes with 1000
            connection.end(ErrorCode.GOING_AWAY, "the receiver is shutting down; reconnect later")
            if connection.closing is not None:
                closing.append(connection.closing)
        if closing:
            await asyncio.wait(closing, timeout=timeout)

    async def shutdown(self) -> None:
        """Finalise every lingering stream (the server has stopped taking connections)."""
        self.stopping = True
        for task in (self._sweeping, self._watching):
            if task is not None:
                task.cancel()
        if self._recovering is not None:
            await self._recovering  # it stops after the stream it is finishing
        for key in self.registry.keys():
            writer = self.registry.lingering_writer(key)
            if writer is None:
                continue  # its linger ran out (and it is being finalised) while another was, or it is connected
            self.registry.move(key, StreamState.FINALISING)
            try:
                await self.finalise_held(key, writer, "receiver stopped")
            except Exception:
                pass  # logged by finalise


def counted(receiver: Receiver) -> type[ServerConnection]:
    """websockets' connection class, counted by ``receiver`` from the moment a connection is
    accepted: a socket that never finishes the websocket handshake holds a place under the caps
    until websockets drops it (10 s), and past them is closed at once. (Behind TLS a connection
    is accepted here once its TLS handshake is done; websockets bounds that one to 10 s too.)"""

    class Counted(ServerConnection):
        counted_as: str | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if peer else "?"
            if receiver.opened(address):
                self.counted_as = address
            else:
                cast(asyncio.Transport, transport).abort()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if self.counted_as is not None:
                receiver.closed(self.counted_as)
                self.counted_as = None

    return Counted


class ReceiverThread:
    """A receiver on its own thread and event loop, on an ephemeral loopback port.

    For commands that run without ``--server``, and for tests::

        with ReceiverThread(data_dir) as receiver:
            ... connect to receiver.url ...
    """

    def __init__(self, data_dir: Path | str, host: str = "127.0.0.1", port: int = 0,
                 **options: Unpack[ReceiverOptions]) -> None:
        self.receiver = Receiver(data_dir, **options)
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
        """Stop serving and finalise the open streams; a second call does nothing."""
        if not self._thread.is_alive():
            return
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
        await self.receiver.go_away()
        server.close()
        await server.wait_closed()
        await self.receiver.shutdown()
