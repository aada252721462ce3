"""A sender process for the crash loop: one deterministic stream, resumable on its spool.

    python tests/crash_sender.py URL SPOOL_DIR STREAM BLOCKS PACE_SECONDS

Block n's audio and events depend only on (STREAM, n), so a test can check every byte.
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


def info(stream: str) -> StreamInfo:
    return StreamInfo("crash", stream, 48000, 2, FRAMES, stream, "crash-test")


def block_audio(stream: str, seq: int) -> np.ndarray:
    rng = np.random.default_rng((zlib.crc32(stream.encode()), seq))
    return rng.uniform(-1, 1, (2, FRAMES)).astype(np.float32)


def block_midi(seq: int) -> list[tuple[int, bytes]]:
    return [(seq % FRAMES, bytes((0x90, 36 + seq % 48, 1 + seq % 126)))]


def main() -> None:
    url, spool_dir, stream, blocks, pace = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    spool = Spool(spool_dir, info(stream))
    first = spool.next_seq
    processor = CaptureProcessor.for_stream(info(stream), realtime=False, first_seq=first,
                                            start_sample=first * FRAMES)
    sender = Sender(url, info(stream), processor.handoff, spool=spool, give_up_after=90).start()
    for seq in range(first, blocks):
        processor.process(block_audio(stream, seq), block_midi(seq), Playhead(seconds=seq * FRAMES / 48000,
                                                                              playing=True))
        time.sleep(pace)
    sender.close(timeout=180)
    print(f"done connections={sender.connections}", flush=True)


if __name__ == "__main__":
    main()
