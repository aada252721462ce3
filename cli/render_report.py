"""What ``sendlearn render`` prints when its streams are written: a table of streams (or one
JSON object with ``--json``), failures on stderr, and which inputs' hosts printed. Shared by
every kind of input (render.py, render_ardour.py, demo.py)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sendlearn.cli.host_logs import report_host_logs
from sendlearn.cli.output import print_table
from sendlearn.plugin.offline.send import Outcome


def show_progress(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty() and not args.json


def attach_paths(outcomes: list[Outcome], data_dir: Path | None) -> None:
    """Each written stream's folder on its outcome, when the streams went into ``data_dir``."""
    if data_dir is None:
        return
    for outcome in outcomes:
        folder = data_dir / "sessions" / outcome.session / outcome.stream
        if outcome.ok and (folder / "stream.json").is_file():
            outcome.path = str(folder)


def summary(outcomes: list[Outcome], data_dir: Path | None, server: str | None, elapsed: float) -> dict[str, Any]:
    streams = []
    for o in outcomes:
        entry = asdict(o)
        entry.update(entry.pop("extra"))
        streams.append(entry)
    return {
        "ok": all(o.ok for o in outcomes),
        "data_dir": str(data_dir) if data_dir is not None else None,
        "server": server,
        "elapsed_seconds": round(elapsed, 3),
        "streams": streams,
        "failures": [{"input": o.input, "session": o.session, "stream": o.stream, "reason": o.reason}
                     for o in outcomes if not o.ok],
    }


def report(args: argparse.Namespace, outcomes: list[Outcome], data_dir: Path | None, elapsed: float) -> None:
    server = getattr(args, "server", None)
    for o in outcomes:  # on stderr in both modes: a person watching sees what failed and why
        if not o.ok:
            print(f"{o.input}: {o.stream}: {o.reason}", file=sys.stderr)
    report_host_logs({o.input: o.extra.get("host_log") for o in outcomes})
    if args.json:
        print(json.dumps(summary(outcomes, data_dir, server, elapsed)))
        return
    good = sum(o.ok for o in outcomes)
    print_table(f"{good} of {len(outcomes)} streams ok in {elapsed:.1f} s",
                ["session", "stream", "seconds", "blocks", "events", "result"],
                [[o.session, o.stream, f"{o.seconds:.2f}", o.blocks, o.events,
                  "ok" if o.ok else f"failed: {o.reason}"] for o in outcomes])
    print(f"written to {data_dir}" if data_dir is not None else f"sent to {server}")
