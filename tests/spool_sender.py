"""A sender process resumable on its spool, for the fault and crash tests: one deterministic stream.

    python tests/spool_sender.py URL SPOOL_DIR SESSION STREAM BLOCKS [PACE_SECONDS]

Block n's audio and events depend only on (STREAM, n), so a test can check every byte, and a
restarted process that resumes at the spool's ``next_seq`` produces exactly what the killed
one would have. It prints ``resuming at N`` when it starts and ``done sent=… connections=…``.
"""

from __future__ import annotations

import sys
import time
import zlib

import numpy as np

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.transport.sender import Sender
from sendlearn.transport.spool import Spool

FRAMES = 256
RATE = 48000


def info(session: str, stream: str) -> StreamInfo:
    return StreamInfo(session, stream, RATE, 2, FRAMES, stream, "spool-sender")


def block_audio(stream: str, seq: int) -> np.ndarray:
    rng = np.random.default_rng((zlib.crc32(stream.encode()), seq))
    return rng.uniform(-1, 1, (2, FRAMES)).astype(np.float32)


def block_midi(seq: int) -> list[tuple[int, bytes]]:
    return [(seq % FRAMES, bytes((0x90, 36 + seq % 48, 1 + seq % 126)))]


def main() -> None:
    url, spool_dir, session, stream, blocks = sys.argv[1:6]
    pace = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    stream_info = info(session, stream)
    spool = Spool(spool_dir, stream_info)
    first = spool.next_seq
    processor = CaptureProcessor.for_stream(stream_info, realtime=False, first_seq=first, start_sample=first * FRAMES)
    sender = Sender(url, stream_info, processor.handoff, spool=spool, give_up_after=90).start()
    print(f"resuming at {first}", flush=True)
    for seq in range(first, int(blocks)):
        processor.process(block_audio(stream, seq), block_midi(seq), Playhead(seconds=seq * FRAMES / RATE, playing=True))
        if pace:
            time.sleep(pace)
    sender.close(timeout=180)
    print(f"done sent={sender.blocks_sent} connections={sender.connections}", flush=True)


if __name__ == "__main__":
    main()
