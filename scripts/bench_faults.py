"""The audio thread never waits on the link: process() cost with the link stalled against a
healthy link, measured in alternating windows of one run (the receiver is a `sendlearn serve`
process, as it would be on another machine); and the time from a cut link coming
back to the stream being at full quality again (backfill done).

    .venv/bin/python scripts/bench_faults.py [--windows N] [--window-seconds S]

Target (issue 6: the audio thread never waits on the link): p99 stalled / p99 healthy ≤ 1.2
(README.md's Benchmarks table keeps the last figures). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from receiver_process import ReceiverProcess  # noqa: E402  (scripts/, beside this file)

from netproxy import Proxy  # noqa: E402  (the tests' loopback proxy: one implementation)
from sendlearn.capture import Playhead, StreamInfo  # noqa: E402
from sendlearn.plugin import CaptureProcessor  # noqa: E402
from sendlearn.transport import Quality  # noqa: E402
from sendlearn.transport.sender import Sender  # noqa: E402

INFO = StreamInfo("bench", "live", 48000, 2, 256, "live", "bench")


def play(processor: CaptureProcessor, seconds: float, times: list[float], audio: np.ndarray) -> None:
    """Real-time pace: one block per block period, timing each process() call."""
    period = INFO.block_size / INFO.sample_rate
    start = time.monotonic()
    for n in range(int(seconds / period)):
        t0 = time.perf_counter_ns()
        processor.process(audio, [(0, b"\x90\x3c\x64")], Playhead(playing=True))
        times.append((time.perf_counter_ns() - t0) / 1000.0)
        time.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    args = parser.parse_args()
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (INFO.channels, INFO.block_size)).astype(np.float32)
    healthy: list[float] = []
    stalled: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, ReceiverProcess(Path(tmp)) as receiver, \
            Proxy(receiver.port) as proxy:
        processor = CaptureProcessor.for_stream(INFO, realtime=True, capacity=8192)
        sender = Sender(proxy.url, INFO, processor.handoff, adaptive=True, backfill_timeout=120).start()
        play(processor, 1.0, [], audio)  # warm up
        for _ in range(args.windows):
            play(processor, args.window_seconds, healthy, audio)
            proxy.stall(True)
            play(processor, args.window_seconds, stalled, audio)
            proxy.stall(False)
        # a cut: the link is down for 2 s, then back; how long until all audio is full quality?
        proxy.refusing = True
        proxy.cut()
        play(processor, 2.0, [], audio)
        proxy.refusing = False
        back = time.monotonic()
        recovered = None
        while time.monotonic() - back < 60:
            play(processor, 0.1, [], audio)
            if sender.level is Quality.FLOAT32 and not sender.outbox.needs_backfill and sender.backlog_seconds < 0.5:
                recovered = time.monotonic() - back
                break
        sender.close(timeout=120)
        dropped = processor.dropped
    h99, s99 = float(np.percentile(healthy, 99)), float(np.percentile(stalled, 99))
    result = {
        "process_p50_us_healthy": float(np.median(healthy)), "process_p99_us_healthy": h99,
        "process_p50_us_stalled": float(np.median(stalled)), "process_p99_us_stalled": s99,
        "p99_ratio_stalled_vs_healthy": s99 / h99, "blocks_dropped": dropped,
        "seconds_to_full_quality_after_cut": recovered, "ladder_steps": len(sender.ladder.steps),
        "blocks_backfilled": sender.blocks_backfilled, "connections": sender.connections,
    }
    print(f"process() p99: healthy {h99:.1f} µs, stalled {s99:.1f} µs, ratio {s99 / h99:.2f}; "
          f"dropped {dropped}; full quality {recovered if recovered is None else round(recovered, 2)} s "
          f"after the link came back; {sender.blocks_backfilled} blocks backfilled")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
