"""``sendlearn render`` on Ardour 7 sessions (a session folder or its .ardour file): each is
played by Ardour headless in JACK freewheel and captured into the same sink, with the same
progress, ``--json`` and exit codes as other renders (plugin/ardour/render.py). Every input is
read before anything renders, so a path that is no Ardour session ends the command (exit 2)
without half a dataset behind."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from sendlearn.cli.progress import ProgressView
from sendlearn.cli.render_report import attach_paths, report, show_progress
from sendlearn.cli.signals import stopped_by_signals
from sendlearn.cli.sinks import choose_sink
from sendlearn.errors import UsageError
from sendlearn.plugin.ardour.render import PERIOD, capture_ardour
from sendlearn.plugin.ardour.session import ArdourSession, is_ardour_path, read_session
from sendlearn.plugin.offline.send import Outcome
from sendlearn.transport.link import ServerDown, check_server
from sendlearn.transport.tls import client_context

SENDER = "sendlearn render (store)"


def run_ardour_render(args: argparse.Namespace) -> int:
    if not all(is_ardour_path(p) for p in args.inputs):
        raise UsageError("give Ardour sessions, or .mid/.toml files, in one command: not both")
    if args.workers is not None or args.scheduler is not None:
        raise UsageError("Ardour sessions render one after another here: --workers and --scheduler are not yet supported")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end} is not after --start {args.start}")
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
