"""A sender process for fault tests: a deterministic stream, resumable on its spool.

    python tests/fault_sender.py URL SPOOL_DIR BLOCKS [PACE_SECONDS]

Block n's audio and events depend only on n, so a restarted process that resumes at the
spool's ``next_seq`` produces exactly what the killed one would have.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.transport.sender import Sender
from sendlearn.transport.spool import Spool

INFO = StreamInfo("faults", "keys", 48000, 2, 256, "Keys", "fault-test")


def block_audio(seq: int) -> np.ndarray:
    return np.random.default_rng(seq).uniform(-1, 1, (INFO.channels, INFO.block_size)).astype(np.float32)


def block_midi(seq: int) -> list[tuple[int, bytes]]:
    return [(seq % INFO.block_size, bytes((0x90, 36 + seq % 48, 1 + seq % 126)))]


def main() -> None:
    url, spool_dir, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pace = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    spool = Spool(spool_dir, INFO)
    first = spool.next_seq
    processor = CaptureProcessor.for_stream(INFO, realtime=False, first_seq=first,
                                            start_sample=first * INFO.block_size)
    sender = Sender(url, INFO, processor.handoff, spool=spool, give_up_after=60).start()
    print(f"resuming at {first}", flush=True)
    for seq in range(first, blocks):
        processor.process(block_audio(seq), block_midi(seq), Playhead(seconds=seq * 256 / 48000, playing=True))
        if pace:
            time.sleep(pace)
    sender.close(timeout=120)
    print(f"done sent={sender.blocks_sent} connections={sender.connections}", flush=True)


if __name__ == "__main__":
    main()
