"""``sendlearn serve`` and ``sendlearn token`` (docs/serve.md).

Every bound of the receiver is a flag here and a SENDLEARN_* environment variable; a flag
wins over the variable, the variable over the default.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sendlearn.errors import UsageError

if TYPE_CHECKING:  # imported where they run: the CLI starts without the receiver's libraries
    import ssl
    from multiprocessing.queues import Queue

    from websockets.asyncio.server import Server

    from sendlearn.server.auth import Tokens
    from sendlearn.server.receiver import Receiver
    from sendlearn.server.settings import Service
    from sendlearn.transport.limits import Limits

DRAIN_TIMEOUT = 30.0
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL before another may take it  # seconds SIGTERM waits for connections to end and streams to be finalised

HELP = {
    "max_frame_size": "bytes of a frame, and of its decompressed body",
    "max_hello_size": "bytes of a frame before the stream is accepted",
    "max_events_per_block": "MIDI events (and, apart, parameter changes) in one block",
    "max_events_per_frame": "MIDI events plus parameter changes in one frame",
    "max_decoded_bytes": "bytes of float32 audio one frame may decode to",
    "block_factor": "a block holds at most HELLO's block_size times this many frames",
    "min_block_frames": "... but may always hold this many",
    "max_dropped_ranges": "dropped seq ranges one frame or BYE may list",
    "max_seqs_ahead": "seqs a block may run past what is stored or declared dropped",
    "hello_timeout": "seconds from connecting to HELLO",
    "idle_timeout": "seconds without a message after HELLO (pings do not count)",
    "max_connections": "open connections in all",
    "max_connections_per_address": "open connections from one IP address",
    "memory_in_flight": "bytes of frames being decoded and stored at once",
    "work_expiry": "seconds an untouched work folder of an unconnected stream is kept",
    "decode_workers": "threads that decode, verify and store frames",
    "inline_bytes": "plain frames up to this size are parsed, and BLOCKs whose audio decodes to at most this "
                    "many bytes are decoded and stored, on the event loop",
    "workers": "receiver processes sharing the port (SO_REUSEPORT); each stream is written by one",
}


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser], default_data_dir: Path) -> None:
    from sendlearn.server.settings import Service
    from sendlearn.transport.limits import Limits

    serve = commands.add_parser("serve", help="run the receiver service",
                                description="Receive streams over websockets and write datasets. Bounds: "
                                "each flag below is also SENDLEARN_<FLAG> (docs/serve.md).")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; anything but loopback needs --tokens")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    serve.add_argument("--data-dir", type=Path, default=default_data_dir)
    serve.add_argument("--tokens", type=Path, help="file of accepted token hashes (make one: sendlearn token)")
    serve.add_argument("--metrics-open", action="store_true",
                       help="with --tokens: serve /metrics without a token (a scraper on a private network); "
                            "/status always needs one")
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--linger", type=float, default=30.0, metavar="SECONDS",
                       help="how long a stream cut without BYE waits for its sender before its files are written")
    serve.add_argument("--finalise-workers", type=int, default=2, metavar="N",
                       help="streams whose files are written at once")
    serve.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT, metavar="SECONDS",
                       help="on SIGTERM/SIGINT, how long to wait for streams to be finalised")
    bounds = serve.add_argument_group("bounds (also SENDLEARN_<NAME> environment variables)")
    for cls in (Limits, Service):
        for field in fields(cls):
            default = getattr(cls(), field.name)
            bounds.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(default),
                                metavar="N", help=f"{HELP.get(field.name, '')} (default {default})")
    serve.set_defaults(run=run_serve)

    token = commands.add_parser("token", help="make a token for senders and its line for serve --tokens",
                                description="Prints a new token on stdout (give it to the sender, once) and "
                                "appends its sha256 hash to --tokens FILE (or prints the line on stderr).")
    token.add_argument("--tokens", type=Path, help="tokens file to append the hash line to")
    token.add_argument("--scope", action="append", default=[], metavar="PREFIX",
                       help="session-id prefix the token may stream to (repeatable; none: any session)")
    token.set_defaults(run=run_token)


def run_token(args: argparse.Namespace) -> int:
    from sendlearn.server.auth import make_token

    token, line = make_token(args.scope)
    if args.tokens is not None:
        # a new file is the service user's alone (docs/serve.md); an existing one keeps its mode
        with os.fdopen(os.open(args.tokens, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as file:
            file.write(line + "\n")
        print(f"appended its hash to {args.tokens}; the token (give it to senders, it is not kept):",
              file=sys.stderr)
    else:
        print(f"add this line to the file serve --tokens reads:\n{line}\nthe token (give it to senders, it is "
              "not kept):", file=sys.stderr)
    print(token)
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JsonLines(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, and any ``extra`` fields."""

    _plain = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": round(record.created, 3), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in self._plain})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def run_serve(args: argparse.Namespace) -> int:
    from sendlearn.server.auth import Tokens
    from sendlearn.server.settings import Service
    from sendlearn.transport.limits import Limits

    tokens = None
    if args.tokens is not None:
        try:
            tokens = Tokens.load(args.tokens)
        except OSError as exc:
            raise UsageError(f"--tokens {args.tokens}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--tokens {args.tokens}: {exc}") from None
    elif not is_loopback(args.host):
        raise UsageError(f"--host {args.host} is not a loopback address: give --tokens FILE "
                         "(make one with: sendlearn token --tokens FILE)")
    try:
        limits = Limits.from_env(**{f.name: getattr(args, f.name) for f in fields(Limits)})
        service = Service.from_env(**{f.name: getattr(args, f.name) for f in fields(Service)})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _tls(args)  # checked here, made again in each worker
    if args.linger < 0 or args.finalise_workers < 1:
        raise UsageError("--linger must be >= 0 and --finalise-workers >= 1")
    if service.workers > 1:
        return run_workers(args, tokens, limits, service)
    return serve_one(args, tokens, limits, service, args.port)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    import ssl

    if not (args.tls_cert or args.tls_key):
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert/--tls-key: {exc}") from None
    return context


def _logging(worker: int | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warning is a JSON line too ("py.warnings"), not free text
    if worker is not None:
        old = logging.getLogRecordFactory()

        def factory(*a: Any, **kw: Any) -> logging.LogRecord:
            record = old(*a, **kw)
            record.worker = worker
            return record

        logging.setLogRecordFactory(factory)


def serve_one(args: argparse.Namespace, tokens: Tokens | None, limits: Limits, service: Service, port: int,
              worker: int | None = None, ready: Queue[int | None] | None = None) -> int:
    """One receiver process: serve until SIGTERM/SIGINT, drain within --drain-timeout, exit 0;
    a second signal exits at once."""
    import asyncio
    import os
    import signal

    from sendlearn.server.receiver import Receiver

    context = _tls(args)
    _logging(worker)
    # decode threads hold the GIL in bursts: the default 5 ms switch interval would make the event
    # loop (ACKs, pings, other connections) wait that long behind each one
    sys.setswitchinterval(SWITCH_INTERVAL)
    receiver = Receiver(args.data_dir, tokens=tokens, linger=args.linger, finalise_workers=args.finalise_workers,
                        limits=limits, service=service, metrics_open=args.metrics_open)
    log = logging.getLogger("sendlearn.receiver")

    async def serve() -> None:
        try:
            server = await receiver.serve(args.host, port, context, reuse_port=worker is not None)
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{port}: {exc.strerror}") from None
        bound = server.sockets[0].getsockname()[1]
        scheme = "wss" if context else "ws"
        if ready is not None:
            ready.put(worker)
        else:
            print(f"sendlearn receiver listening on {scheme}://{args.host}:{bound}, writing to {args.data_dir}",
                  flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def signalled(number: int) -> None:
            if stop.is_set():  # the second signal: at once (what is durable stays whole on disk)
                log.warning("second signal: exiting now", extra={"signal": signal.Signals(number).name})
                os._exit(1)
            log.info("stopping: no new connections; finalising streams",
                     extra={"signal": signal.Signals(number).name})
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signalled, sig)
        await stop.wait()
        started = time.monotonic()
        await receiver.go_away()  # GOING_AWAY to each connection, not websockets' 1001
        server.close()
        try:
            await asyncio.wait_for(_drain(server, receiver), args.drain_timeout)
        except TimeoutError:
            log.error("streams not finalised within --drain-timeout; their work folders stay for a resume",
                      extra={"drain_timeout": args.drain_timeout})
        log.info("stopped", extra={"streams_finalised": receiver.streams_finalised,
                                   "seconds": round(time.monotonic() - started, 3)})
        if ready is None:
            print(f"receiver stopped; {receiver.streams_finalised} streams finalised "
                  f"in {time.monotonic() - started:.1f} s", flush=True)

    asyncio.run(serve())
    return 0


def _worker(args: argparse.Namespace, tokens: Tokens | None, limits: Limits, service: Service, port: int,
            index: int, ready: Queue[int | None]) -> None:
    import os

    os.setpgrp()  # the terminal's Ctrl-C reaches the parent, which passes it on once
    try:
        serve_one(args, tokens, limits, service, port, index, ready)
    except UsageError as exc:
        print(f"sendlearn serve (worker {index}): {exc}", file=sys.stderr)
        sys.exit(2)


def run_workers(args: argparse.Namespace, tokens: Tokens | None, limits: Limits, service: Service) -> int:
    """N receiver processes bound to one port with SO_REUSEPORT: the kernel spreads connections
    over them, and a stream's lock file keeps each stream to one writer (store/locks.py)."""
    import multiprocessing
    import multiprocessing.connection
    import os
    import queue
    import shutil
    import signal
    import socket
    import tempfile

    from sendlearn.server.metrics import MULTIPROCESS_DIR, worker_died

    probe = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        probe.bind((args.host, args.port))  # holds the port (not listening: it takes no connections)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    port = probe.getsockname()[1]
    # every worker's metrics in one folder, so whichever answers /metrics reports them all;
    # set before the workers start (a spawned worker imports prometheus-client afresh)
    os.environ[MULTIPROCESS_DIR] = metrics_dir = tempfile.mkdtemp(prefix="sendlearn-metrics-")
    _logging()
    log = logging.getLogger("sendlearn.receiver")
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()

    def start(index: int) -> multiprocessing.process.BaseProcess:
        worker = context.Process(target=_worker, args=(args, tokens, limits, service, port, index, ready),
                                 name=f"sendlearn-worker-{index}")
        worker.start()
        return worker

    workers = {index: start(index) for index in range(service.workers)}
    for _ in workers:
        ready.get(timeout=120)
    scheme = "wss" if args.tls_cert else "ws"
    print(f"sendlearn receiver listening on {scheme}://{args.host}:{port}, writing to {args.data_dir} "
          f"({service.workers} workers)", flush=True)
    stopping = False

    def forward(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers.values():
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, number)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = []
    while workers:
        multiprocessing.connection.wait([w.sentinel for w in workers.values()], timeout=1.0)
        for index, worker in list(workers.items()):
            if worker.is_alive():
                continue
            worker.join()
            assert worker.pid is not None
            worker_died(worker.pid)  # its connections, streams and qualities leave /metrics
            del workers[index]
            if stopping:
                if worker.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT):  # the signal passed on, at its start
                    failed.append(worker.exitcode)
                continue
            if worker.exitcode == 2:  # it could not start (bad flags, the port): another would not either
                log.error("worker %d exited at start (code 2): stopping", index, extra={"worker_index": index})
                failed.append(2)
                forward(signal.SIGTERM, None)
                continue
            # the kernel dropped its locks; its streams' senders reconnect to the others, or to this one's successor
            log.error("worker %d (pid %d) died (exit code %s): replacing it", index, worker.pid, worker.exitcode,
                      extra={"worker_index": index, "pid": worker.pid, "exitcode": worker.exitcode})
            time.sleep(0.5)  # a worker that dies at once is not replaced in a tight loop
            if not stopping:
                workers[index] = start(index)
                deadline = time.monotonic() + 120
                while not stopping and workers[index].is_alive() and time.monotonic() < deadline:
                    try:  # a signal meanwhile is forwarded to it, and this wait ends
                        ready.get(timeout=0.5)
                        log.info("worker %d replaced", index, extra={"worker_index": index, "pid": workers[index].pid})
                        break
                    except queue.Empty:
                        continue
    probe.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    print(f"receiver stopped ({service.workers} workers)", flush=True)
    return 1 if failed else 0


async def _drain(server: Server, receiver: Receiver) -> None:
    await server.wait_closed()
    await receiver.shutdown()
