"""A JACK client in a process of its own that notes, every cycle, the cycle's first frame and
the moment its callback began on CLOCK_MONOTONIC_RAW (the clock JACK and Link keep time on),
and writes them to OUT (``.npy``) when told to stop (SIGTERM). tests/test_link.py's witness
of when each JACK frame was: in a process of its own so that no other thread of the test's
holds its callback back.

python cycle_witness.py SERVER OUT"""

from __future__ import annotations

import signal
import sys
import threading
import time

import jack
import numpy as np


def main(server: str, out: str) -> None:
    client = jack.Client("cyclewitness", no_start_server=True, servername=server)
    entries = np.zeros((1 << 20, 2), dtype=np.int64)
    count = [0]

    def process(_: int) -> None:
        n = count[0]
        if n < len(entries):
            entries[n] = (client.last_frame_time, time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW))
            count[0] = n + 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.set_process_callback(process)
    client.activate()
    print("ready", flush=True)
    stop.wait()
    client.deactivate()
    client.close()
    np.save(out, entries[:count[0]])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
