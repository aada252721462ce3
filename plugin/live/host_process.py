"""What the two audio processes (``jack_host.py``, ``portaudio_host.py``) share: how they keep
the GIL free for their one real-time callback, and the signals that stop them."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
from typing import Any

MIN_SLOT_FRAMES = 2048  # a slot holds periods up to this (or the starting period, if larger)
SWITCH_INTERVAL = 0.0005  # seconds: the callback waits at most this for the GIL (see settle)
STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1}  # SIGUSR1: sent to ourselves on "stop"


def settle() -> None:
    """This process runs one Python callback that needs the GIL within a period (2.7 ms at
    128/48k), on JACK's real-time thread. Any other thread here that holds the GIL when the
    callback needs it is an ordinary thread, which a loaded machine may preempt for a whole
    time slice while the callback waits: so no other thread here runs Python unless it must
    (the main thread sleeps in ``sigwait``, the command reader in ``read``; rtmidi's callback
    runs on its own real-time thread; xruns are counted in the capturing process). A 0.5 ms
    switch interval bounds how long any of them holds the GIL. The collector never runs: objects
    alive now are frozen out of its reach and the callback makes no cycles, so automatic
    collection is off. The ring is allocated and mapped before the first period (ring.py).
    Not ``mlockall``: with ``MCL_CURRENT | MCL_FUTURE`` the virtual port's messages came out
    duplicated and lost under two CPU hogs (tests/test_live.py, 3 runs in 5; 0 in 5 without)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    gc.collect()
    gc.freeze()
    gc.disable()


def tell_parent(message: dict[str, Any]) -> None:
    """One JSON line to the parent on stdout. A parent already gone (Ctrl-C on a batch takes the
    worker first) has closed the pipe: nobody is left to tell, and a traceback on the shared
    stderr would be noise in the user's terminal (seen beside two CPU hogs), so it is dropped,
    and stdout pointed at /dev/null so the exit's own flush stays quiet."""
    try:
        print(json.dumps(message), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def stop_on_command() -> None:
    """A thread reading the parent's commands on stdin: "stop", or stdin closed (the parent
    gone), sends this process SIGUSR1, which the main thread's ``sigwait`` takes."""

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        os.kill(os.getpid(), signal.SIGUSR1)

    threading.Thread(target=read_commands, daemon=True).start()
