"""Every long-running command ends the same way on SIGINT, SIGTERM and SIGHUP: cleanly.

A command either takes the signal as Ctrl-C (``interrupted_by_signals``: KeyboardInterrupt,
which its own code turns into a clean end) or as a request to stop (``stopped_by_signals``:
an event its loop watches). SIGINT is set explicitly too: a process started in the
background inherits it ignored. Only the main thread can take signals; elsewhere (a test
running a command on a thread) both do nothing and the caller stops the command.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _handled(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in ENDING}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupted_by_signals() -> contextlib.AbstractContextManager[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread."""
    return _handled(_interrupt)


def stopped_by_signals(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """SIGINT, SIGTERM and SIGHUP set ``stop``."""
    return _handled(lambda signum, frame: stop.set())
