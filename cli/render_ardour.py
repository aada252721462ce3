"""``sendlearn render`` on Ardour 7 sessions (a session folder or its .ardour file): each is
played by Ardour headless in JACK freewheel and captured into the same sink, with the same
progress, ``--json`` and exit codes as other renders (plugin/ardour/render.py). Every input is
read before anything renders, so a path that is no Ardour session ends the command (exit 2)
without half a dataset behind.

In a batch (a directory holding sessions, ``--workers``, ``--scheduler``) each session is one
task, ``render_ardour_input`` in a worker process of its own, so each render has its own
private jackd and Ardour; a bad session is a failure of its task and the batch goes on."""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sendlearn.cli.progress import ProgressView
from sendlearn.cli.render_batch import check_range
from sendlearn.cli.render_report import attach_paths, report, show_progress
from sendlearn.cli.signals import stopped_by_signals
from sendlearn.cli.sinks import choose_sink
from sendlearn.errors import SendLearnError, UsageError
from sendlearn.plugin.ardour.render import PERIOD, capture_ardour, session_streams, take_id
from sendlearn.plugin.ardour.session import ArdourSession, read_session
from sendlearn.plugin.offline.send import Outcome
from sendlearn.store.sink import is_complete
from sendlearn.transport.link import ServerDown, check_server
from sendlearn.transport.tls import client_context

SENDER = "sendlearn render (store)"


def run_ardour_render(args: argparse.Namespace) -> int:
    check_range(args)
    sessions = [read_session(p) for p in args.inputs]
    _check_unique(sessions)
    context = client_context(args.ca_file)
    if args.server is not None:
        try:
            check_server(args.server, context)
        except ServerDown as exc:
            raise UsageError(str(exc)) from None
    data_dir = None if args.server is not None else args.data_dir.resolve()
    if args.replace:
        if data_dir is None:
            raise UsageError("--replace works on a --data-dir; a --server keeps what it has")
        from sendlearn.store.sink import remove_sessions

        remove_sessions(data_dir, [s.name for s in sessions])
    sink = choose_sink(args.server, data_dir, writer=SENDER, token=args.token, ssl_context=context)
    stop = threading.Event()
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with stopped_by_signals(stop), ProgressView(len(sessions), show_progress(args)) as view:
        for session in sessions:
            if stop.is_set():
                break
            outcomes += capture_ardour(session, sink, input_name=str(session.file), start=args.start, end=args.end,
                                       period=args.block_size or PERIOD, progress=view.for_session(session.name),
                                       stop=stop)
            view.input_done()
    attach_paths(outcomes, data_dir)
    report(args, outcomes, data_dir, time.monotonic() - started)
    return 0 if all(o.ok for o in outcomes) else 1


def _check_unique(sessions: list[ArdourSession]) -> None:
    seen: dict[str, Path] = {}
    for session in sessions:
        if session.name in seen:
            raise UsageError(f"{session.file}: session {session.name!r} is also {seen[session.name]}; "
                             "each session must come from one input")
        seen[session.name] = session.file


def render_ardour_input(payload: dict[str, Any], *, writer: str) -> dict[str, Any]:
    """The batch job for one Ardour session (``sendlearn.cli.batch:render_input`` hands it on):
    skipped when every stream is complete under its take, else rendered into the payload's
    sink. Anything that stops the render is this input's ``error``, without its path (the
    batch's failure names the input)."""
    path = Path(payload["input"])
    start, end = payload.get("start"), payload.get("end")
    period = payload["block_size"] or PERIOD
    try:
        session = read_session(path)
        server = payload["server"]
        data_dir = None if server is not None else Path(payload["data_dir"])
        if data_dir is not None and _all_complete(session, data_dir, start, end, period):
            return {"skipped": True, "error": None, "outcomes": []}
        sink = choose_sink(server, data_dir, writer=writer, token=payload["token"],
                           ssl_context=client_context(payload.get("ca_file")) if server is not None else None)
        outcomes = capture_ardour(session, sink, input_name=payload.get("shown", str(path)), start=start, end=end,
                                  period=period)
    except SendLearnError as exc:
        return {"skipped": False, "error": _without(str(exc), path), "outcomes": []}
    attach_paths(outcomes, data_dir)
    return {"skipped": False, "error": None, "outcomes": [asdict(o) for o in outcomes]}


def _all_complete(session: ArdourSession, data_dir: Path, start: float | None, end: float | None,
                  period: int) -> bool:
    """Whether a rerun has nothing to do, told from the session file's range (or ``start``/``end``)
    without starting Ardour. A take id covers the session file, so a complete take under any
    range the file can mean is this render's; a range kept in beat time is left to Ardour."""
    rate = session.sample_rate
    known = session.range_samples() if start is None or end is None else {(0, 0)}  # (0, 0): both given
    ranges = {(first if start is None else round(start * rate), last if end is None else round(end * rate))
              for first, last in known}
    streams = session_streams(session)
    return bool(streams) and any(
        last > first and all(is_complete(data_dir, session.name, s.name, take_id(session, s.name, first, last, period))
                             for s in streams)
        for first, last in ranges)


def _without(message: str, path: Path) -> str:
    """``message`` without a leading path of the input (``<path>: ``), which the failure names."""
    for shown in (str(path / f"{path.name}.ardour"), str(path)):
        if message.startswith(f"{shown}: "):
            return message[len(shown) + 2:]
    head, sep, rest = message.partition(": ")
    return rest if sep and Path(head).is_relative_to(path) else message
