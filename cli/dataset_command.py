"""What the commands that read a data directory share: their first arguments, the check that
the directory is there, and their progress bars (``sendlearn sequences``, ``quality``, ``export``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sendlearn.errors import UsageError


def dataset_parser(commands: argparse._SubParsersAction, name: str, default_data_dir: Path, *,
                   sessions: bool = False, **options: Any) -> argparse.ArgumentParser:
    """Subcommand ``name`` (``options``: help, description) reading ``--data-dir``; with
    ``sessions``, ``--session S`` (repeatable) picks sessions."""
    parser: argparse.ArgumentParser = commands.add_parser(name, **options)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir, metavar="DIR")
    if sessions:
        parser.add_argument("--session", action="append", metavar="S", help="only this session (repeatable)")
    return parser


def check_data_dir(data_dir: Path) -> Path:
    """``data_dir``, or a UsageError when it is not a directory."""
    if not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    return data_dir


def task_bars(enabled: bool) -> Any:
    """A rich ``Progress``: per task its description, bar, count and time; drawn only when ``enabled``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)
