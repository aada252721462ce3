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


class Interrupt:
    """Whether an ending signal came. The KeyboardInterrupt its handler raises is lost when it lands
    in a finaliser or a weakref callback (Python prints "Exception ignored" and goes on), so a
    command calls ``check`` where it goes on (its progress) and before it keeps anything."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came, even one whose first raise was swallowed."""
        if self.signum is not None:
            raise KeyboardInterrupt


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


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[Interrupt]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread; what it yields
    raises it again on ``check`` (see Interrupt)."""
    interrupt = Interrupt()
    with _handled(interrupt):
        yield interrupt


def stopped_by_signals(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """SIGINT, SIGTERM and SIGHUP set ``stop``."""
    return _handled(lambda signum, frame: stop.set())
