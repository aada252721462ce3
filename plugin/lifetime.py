"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send this process ``signum`` when its parent dies (prctl PR_SET_PDEATHSIG),
    so a JACK process, a jackd we started or a render worker never outlives us. With ``parent``
    (its pid, read before the fork), a parent that died before prctl took effect ends us now.
    Best effort where there is no prctl: a parent's closed pipe still ends an idle child."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)
