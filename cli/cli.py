"""The ``sendlearn`` command. Subcommands import their layer only when they run, so the
receiver's commands work without the GPL hosts installed."""

from __future__ import annotations

import argparse
import sys

from sendlearn import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendlearn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sendlearn {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.run(args))
