"""Host prints go into a log per input, never onto the terminal (README.md, "Usage").

DawDreamer, Faust, FluidSynth and plugins print to the C stdout and stderr (file descriptors 1
and 2): "Attempting to load VST", "Steal playing voice", a plugin's own chatter. On a terminal
they scroll through the progress bar, and in a batch of thousands they drown what failed. So a
command that renders points descriptors 1 and 2 at the log of the input being rendered,
``<data-dir>/renders/<session>.log``, and keeps Python's ``sys.stdout`` and ``sys.stderr`` (the
table, ``--json``'s one object, the bars and messages) on the real ones. A log that stays empty
is removed, so ``renders/`` lists exactly the inputs whose hosts printed. ``--verbose`` sends
the hosts' prints to stderr, live, instead.

File descriptors are the process's: the command points them from its main thread, one input at
a time (``render`` renders its inputs one after another; a batch worker one input at a time).
"""

from __future__ import annotations

import ctypes
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

LOGS = "renders"


class HostOutput:
    """While entered: Python's stdout and stderr write to the terminal's descriptors, and the C
    descriptors 1 and 2 go to stderr (``input`` points them at a log for one input's render).
    ``log_dir`` None (``--verbose``): no logs, the hosts print to stderr."""

    def __init__(self, log_dir: Path | None) -> None:
        self.log_dir = log_dir
        self._saved: tuple[int, int] | None = None
        self._python: tuple[TextIO, TextIO] | None = None

    def __enter__(self) -> Self:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _flush_c()
        out, err = os.dup(1), os.dup(2)
        self._saved, self._python = (out, err), (sys.stdout, sys.stderr)
        sys.stdout = _on(sys.stdout, 1, out)
        sys.stderr = _on(sys.stderr, 2, err)
        os.dup2(err, 1)  # between inputs (and with --verbose) the hosts' stdout is stderr: stdout is ours
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._saved is None or self._python is None:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _flush_c()
        sys.stdout, sys.stderr = self._python
        out, err = self._saved
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        self._saved = None

    @contextmanager
    def input(self, session: str) -> Iterator[Path | None]:
        """During the render of one input: descriptors 1 and 2 append to its log; yields the log's
        path (None with ``--verbose``), which is gone afterwards if it is empty."""
        if self.log_dir is None or self._saved is None:
            yield None
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{session}.log"
        # appended to, never truncated: a second render of the same input (a batch run twice at
        # once on one data dir) must not wipe what the first is writing
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _flush_c()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            yield path
        finally:
            _flush_c()
            err = self._saved[1]
            os.dup2(err, 1)
            os.dup2(err, 2)
            try:
                if path.stat().st_size == 0:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:  # the other render of this input removed it, empty
                pass


def printed(log: Path | None) -> str | None:
    """The log's path when its host printed something, else None."""
    return str(log) if log is not None and log.is_file() else None


def report_host_logs(logs: dict[str, str | None]) -> None:
    """One line on stderr naming the inputs whose hosts printed, and where it went."""
    printed = {name: log for name, log in logs.items() if log}
    if printed:
        shown = ", ".join(f"{name} ({log})" for name, log in list(printed.items())[:5])
        more = f" and {len(printed) - 5} more" if len(printed) > 5 else ""
        print(f"hosts printed while rendering {len(printed)} input(s): {shown}{more}", file=sys.stderr)


def _on(stream: TextIO, fd: int, saved: int) -> TextIO:
    """``stream`` rewritten onto ``saved`` when it writes to descriptor ``fd`` (a terminal, a
    pipe); a captured stream (pytest's capsys, a StringIO) is left as it is."""
    try:
        if stream.fileno() != fd:
            return stream
    except (AttributeError, OSError, ValueError):
        return stream
    return io.TextIOWrapper(io.FileIO(saved, "w", closefd=False), encoding=stream.encoding, errors=stream.errors,
                            line_buffering=bool(getattr(stream, "line_buffering", False)), write_through=True)


def _flush_c() -> None:
    """Flush C stdio's buffers (a host's printf to a file is block-buffered), so what a host
    printed lands in the log it was printed into."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
