"""``sendlearn render DIR_OR_FILES... --workers N | --scheduler URL``: the batch command.

Each input is a task of ``plugin.batch`` running the job ``sendlearn.cli.batch:render_input`` (batch.py):
a MIDI or session file, or an Ardour session (its own jackd and Ardour in that worker).
Progress (rich, on a terminal) shows inputs done of all, done / skipped / failed, files per
second, audio seconds per second (``12.5x``: times real time), the time taken and the time
left. SIGINT, SIGTERM and SIGHUP stop the batch cleanly: no new render starts, the ones in
flight are killed (their streams resume on a rerun), the summary says what was done, exit 0
(1 if anything failed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sendlearn.cli.host_logs import LOGS, report_host_logs
from sendlearn.cli.output import print_table
from sendlearn.cli.progress import StderrBars
from sendlearn.cli.signals import interrupted_by_signals
from sendlearn.errors import MissingExtra, UsageError
from sendlearn.plugin.batch.driver import DEFAULT_TIMEOUT, BatchResult, run_batch
from sendlearn.plugin.session.inputs import find_inputs, is_ardour_path, session_name
from sendlearn.transport.tls import client_context

MAX_TABLE_ROWS = 40
JOB = "sendlearn.cli.batch:render_input"  # what each worker runs for an input (batch.py)


def is_batch(args: argparse.Namespace) -> bool:
    """A directory among the inputs (an Ardour session's folder is one input, not a directory of
    them), ``--workers`` or ``--scheduler``: bad inputs are failures."""
    return (args.workers is not None or args.scheduler is not None
            or any(path.is_dir() and not is_ardour_path(path) for path in args.inputs))


def check_range(args: argparse.Namespace) -> None:
    """``--start``/``--end`` (Ardour sessions) make a range."""
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end} is not after --start {args.start}")


def run_batch_command(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    from sendlearn.transport.link import ServerDown, check_server

    if args.workers is not None and args.scheduler is not None:
        raise UsageError("--workers is for the local pool; a --scheduler's cluster has its own workers")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.max_renders < 1:
        raise UsageError("--max-renders must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise UsageError(f"--scheduler {args.scheduler}: expected tcp://HOST:PORT")
    if args.scheduler is not None and find_spec("distributed") is None:
        raise MissingExtra("distributed", "--scheduler")
    check_range(args)
    if args.instrument is not None:
        from sendlearn.plugin.session.instrument import parse_instrument

        try:
            parse_instrument(args.instrument)
        except ValueError as exc:
            raise UsageError(f"--instrument {args.instrument}: {exc}") from None
    missing = [p for p in args.inputs if not p.exists()]
    if missing and not any(p.exists() for p in args.inputs):
        raise UsageError(f"{missing[0]}: no such file or directory")
    inputs = find_inputs(args.inputs)
    if find_spec("dawdreamer") is None and not all(is_ardour_path(i.path) for i in inputs):
        raise MissingExtra("dawdreamer", "rendering")  # Ardour renders its sessions itself
    if args.server is not None:
        try:
            check_server(args.server, client_context(args.ca_file))
        except ServerDown as exc:
            print(f"sendlearn render: {exc}", file=sys.stderr)
            return 1
    data_dir = None if args.server is not None else args.data_dir.resolve()
    if args.replace:
        if data_dir is None:
            raise UsageError("--replace works on a --data-dir; a --server keeps what it has")
        from sendlearn.store.sink import remove_sessions

        remove_sessions(data_dir, [n for n in map(session_name, inputs) if n is not None])
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    options = {"instrument": args.instrument, "sample_rate": args.sample_rate, "block_size": args.block_size,
               "log_dir": None if args.verbose else str(args.data_dir.resolve() / LOGS),
               "data_dir": None if data_dir is None else str(data_dir), "server": args.server, "token": args.token,
               "ca_file": args.ca_file, "start": args.start, "end": args.end}
    workers = args.workers or 1
    started = time.monotonic()
    with interrupted_by_signals(), _Progress(len(inputs), started, sys.stderr.isatty() and not args.json) as view:
        result = run_batch(inputs, options, JOB, workers=workers, scheduler=args.scheduler, timeout=args.timeout,
                           max_tasks=args.max_renders, progress=view.update)
    elapsed = time.monotonic() - started
    report(args, result, len(inputs), data_dir, elapsed, workers)
    return 1 if result.failures else 0


class _Progress(StderrBars):
    """One bar over the inputs, with done / skipped / failed, rates and the time left."""

    def __init__(self, total: int, started: float, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        super().__init__(BarColumn(bar_width=12), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                         TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), enabled=enabled)
        self.started = started
        self.task = self.progress.add_task("inputs", total=total, status="")

    def update(self, result: BatchResult) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rendered = result.done + result.failed
        status = (f"done {result.done} skip {result.skipped} fail {result.failed} · "
                  f"{rendered / elapsed:.2f} files/s {result.audio_seconds / elapsed:.1f}x")
        self.progress.update(self.task, completed=result.done + result.skipped + result.failed, status=status)


def summary(result: BatchResult, inputs: int, data_dir: Path | None, server: str | None, scheduler: str | None,
            workers: int, elapsed: float) -> dict[str, Any]:
    streams = []
    for outcome in result.outcomes:
        entry = dict(outcome)
        entry.update(entry.pop("extra", {}) or {})
        streams.append(entry)
    return {
        "ok": not result.failures and not result.interrupted,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "server": server,
        "scheduler": scheduler,
        "workers": None if scheduler else workers,
        "inputs": inputs,
        "done": result.done,
        "skipped": result.skipped,
        "failed": result.failed,
        "interrupted": result.interrupted,
        "elapsed_seconds": round(elapsed, 3),
        "audio_seconds": round(result.audio_seconds, 3),
        "files_per_second": round((result.done + result.failed) / elapsed, 4) if elapsed > 0 else None,
        "audio_seconds_per_second": round(result.audio_seconds / elapsed, 3) if elapsed > 0 else None,
        "peak_rss_mib": {str(pid): round(kib / 1024, 1) for pid, kib in result.peak_rss_kib.items()},
        "streams": streams,
        "failures": result.failures,
    }


def report(args: argparse.Namespace, result: BatchResult, inputs: int, data_dir: Path | None, elapsed: float,
           workers: int) -> None:
    for failure in result.failures:  # on stderr in both modes: whoever watches sees what failed and why
        where = f": {failure['stream']}" if failure.get("stream") else ""
        print(f"{failure['input']}{where}: {failure['reason']}", file=sys.stderr)
    report_host_logs({o["input"]: (o.get("extra") or {}).get("host_log") for o in result.outcomes})
    if result.interrupted:
        left = inputs - result.done - result.skipped - result.failed
        print(f"sendlearn render: stopped with {left} of {inputs} inputs not done; run it again to resume",
              file=sys.stderr)
    if args.json:
        print(json.dumps(summary(result, inputs, data_dir, args.server, args.scheduler, workers, elapsed)))
        return
    title = (f"{result.done} done, {result.skipped} skipped, {result.failed} failed of {inputs} inputs "
             f"in {elapsed:.1f} s ({result.audio_seconds:.0f} s of audio)")
    if len(result.outcomes) <= MAX_TABLE_ROWS:
        print_table(title, ["session", "stream", "seconds", "blocks", "events", "result"],
                    [[o["session"], o["stream"], f"{o['seconds']:.2f}", o["blocks"], o["events"],
                      "ok" if o["ok"] else f"failed: {o['reason']}"] for o in result.outcomes])
    else:
        print(title)
    print(f"written to {data_dir}" if data_dir is not None else f"sent to {args.server}")


__all__ = ["DEFAULT_TIMEOUT", "is_batch", "run_batch_command"]
