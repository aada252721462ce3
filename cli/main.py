"""The ``sendlearn`` command.

Exit codes: 0 done, 1 failed, 2 bad usage or bad input (the message names the file and the
problem). Long commands show progress on a terminal and stay quiet otherwise; ``--json``
prints one machine-readable summary. Subcommands import their layer only when they run, so
the receiver's commands work without the GPL hosts installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from sendlearn import __version__
from sendlearn.cli.output import print_table
from sendlearn.errors import EXIT_USAGE, MissingExtra, SendLearnError, UsageError, exit_code

DEFAULT_DATA_DIR = Path("sendlearn-data")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except ImportError as exc:  # an optional part this install lacks: name its extra, not a traceback
        missing = exc if isinstance(exc, MissingExtra) else MissingExtra.from_import(exc, f"sendlearn {args.command}")
        if missing is None:
            raise  # one of our own modules failed to import: a bug to show whole
        return _failed(args.command, missing)
    except (SendLearnError, KeyboardInterrupt) as exc:
        return _failed(args.command, exc)


def _failed(command: str, exc: BaseException) -> int:
    """The one place an error that ends a command becomes its message and exit code."""
    if not isinstance(exc, KeyboardInterrupt):
        print(f"sendlearn {command}: {exc}", file=sys.stderr)
    return exit_code(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendlearn", description="Capture what musicians do in a DAW "
                                     "into training datasets.")
    parser.add_argument("--version", action="version", version=f"sendlearn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from sendlearn.cli import serve  # the receiver loads when it runs

    serve.add_parsers(commands, DEFAULT_DATA_DIR)

    render = commands.add_parser(
        "render", help="render MIDI or session files through real instruments into a dataset",
        description="Render .mid files (one track, --instrument) or .toml session files offline, capture "
        "every block into a dataset: the store writing straight into --data-dir, or the link to a receiver at --server. An Ardour 7 session (folder or .ardour file) is rendered by Ardour itself in JACK freewheel.")
    render.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help=".mid or .toml file, or a directory of them (searched recursively), or an Ardour 7 session (its folder or .ardour file)")
    where = render.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                       help=f"write straight into this data dir (the store; default ./{DEFAULT_DATA_DIR})")
    where.add_argument("--server", metavar="URL", help="send to a running receiver (ws:// or wss://)")
    render.add_argument("--token", help="token the receiver at --server expects (default: $SENDLEARN_TOKEN, which "
                                        "other local users cannot read from the process list)")
    render.add_argument("--ca-file", help="CA certificate for a wss:// --server")
    render.add_argument("--sample-rate", type=int, metavar="SR", help="override (default: the session's, or 48000)")
    render.add_argument("--block-size", type=int, metavar="N", help="override (default: the session's, or 512; an Ardour session: JACK's period, 1024)")
    render.add_argument("--instrument", metavar="SPEC", help="instrument for .mid inputs (see --list-instruments)")
    render.add_argument("--start", type=float, metavar="SECONDS", help="an Ardour session: render from here (default: its session start)")
    render.add_argument("--end", type=float, metavar="SECONDS", help="an Ardour session: render to here (default: its session end)")
    render.add_argument("--list-instruments", action="store_true", help="list instrument specs and exit")
    render.add_argument("--json", action="store_true", help="print one JSON object")
    render.add_argument("--verbose", action="store_true",
                        help="show the hosts' own prints on stderr, live, instead of in <data-dir>/renders/<session>.log")
    render.add_argument("--replace", action="store_true",
                        help="delete the inputs' sessions from --data-dir first (a complete stream is never "
                             "overwritten otherwise: rendering it again fails with STREAM_MISMATCH)")
    render.add_argument("--workers", type=int, metavar="N",
                        help="a batch: render in N worker processes (a directory alone means 1); a bad input is "
                             "a recorded failure and the rest goes on; a rerun skips what is complete")
    render.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="a batch on a Dask distributed cluster")
    render.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="a batch: a render still running after this fails and its process is killed (900)")
    render.add_argument("--max-renders", type=int, default=20, metavar="N",
                        help="a batch: renders per worker process before it is replaced (20)")
    render.set_defaults(run=_lazy("render", "run_render"))

    demo = commands.add_parser("demo", help="render the bundled demo session into a dataset")
    demo.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--verbose", action="store_true", help="show the hosts' own prints on stderr, live")
    demo.set_defaults(run=_lazy("demo", "run_demo"))

    from sendlearn.cli import live  # its module imports no host library; run_live imports jack when it runs

    live.add_parser(commands, DEFAULT_DATA_DIR)

    from sendlearn.cli import sequences  # its module imports nothing heavy; librosa loads when features run

    sequences.add_parsers(commands, DEFAULT_DATA_DIR)

    from sendlearn.cli import (
        export,
        report,  # nothing heavy: writers and matplotlib load when they run
    )

    export.add_parser(commands, DEFAULT_DATA_DIR)
    report.add_parser(commands, DEFAULT_DATA_DIR)

    status = commands.add_parser("status", help="what a data directory holds")
    status.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--server", metavar="URL", help="a running receiver's live streams instead (its /status)")
    status.add_argument("--ca-file", help="CA certificate for a wss:// --server")
    status.add_argument("--token", help="with --server: a token the receiver accepts (default: $SENDLEARN_TOKEN, "
                                        "which other local users cannot read from the process list)")
    status.add_argument("--once", action="store_true", help="with --server: print the panel once, not live")
    status.set_defaults(run=run_status)
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command body from ``sendlearn.cli.<module>``, imported when it runs: render and demo need
    the GPL hosts, which a receiver-only install does not have."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"sendlearn.cli.{module}"), name)(args)

    return run


# --- status -----------------------------------------------------------------------------

def run_status(args: argparse.Namespace) -> int:
    if args.server:
        return _lazy("status_panel", "run_status_panel")(args)
    from sendlearn.dataset import Dataset
    from sendlearn.store.status import open_stream_summaries

    if not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such directory")
    finished = [stream.summary() for stream in Dataset(args.data_dir)]  # through the public reader
    streams = sorted(finished + open_stream_summaries(args.data_dir, {(s["session"], s["stream"]) for s in finished}),
                     key=lambda s: (s["session"], s["stream"]))
    if args.json:
        print(json.dumps({"data_dir": str(args.data_dir), "streams": streams}))
        return 0
    print_table(f"{args.data_dir}: {len(streams)} streams",
                ["session", "stream", "state", "seconds", "blocks", "events", "gaps"],
                [[s["session"], s["stream"], s["state"], f"{s['seconds']:.2f}", s["blocks"], s["events"],
                  "-" if s["gaps"] is None else f"{s['gaps']} ({s['gap_blocks']} blocks)"] for s in streams])
    return 0
