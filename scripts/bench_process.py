"""process() cost on a 512-frame stereo block, and protocol encode/decode per quality level.

    .venv/bin/python scripts/bench_process.py [--blocks N] [--baseline REV --rounds R]

``process()`` is timed twice: alone, and while a sender thread is busy in the same process
(as in ``sendlearn live``, where the capture thread calls ``process`` beside the sender): that
thread takes every block from the hand-off and encodes it into protocol frames at the lossless
and the lossy levels in turn, without pause. ``--baseline REV`` instead measures ``process()`` beside the busy sender only, for this checkout
and git revision REV in turn, each in a process of its own, ``--rounds`` times (a drifting load
weighs on both alike), and prints both medians of the rounds' p99. Prints a table, then one JSON
object as the last line. Targets: median ≤ 20 µs, p99 ≤ 100 µs
(the project's aim for a 512-frame stereo block; README.md's Benchmarks table keeps the last figures).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from sendlearn.capture import Playhead
from sendlearn.plugin import CaptureProcessor
from sendlearn.transport import Hello, Protocol, Quality, Role, Welcome

SR, FRAMES, CHANNELS = 48000, 512, 2
BUSY_BLOCKS, PACE = 10000, 0.0005


def music(seconds: float) -> np.ndarray:
    """A dense, music-like test signal: a few decaying partials re-struck every beat, plus noise."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = np.exp(-6 * (t % 0.5))
    rng = np.random.default_rng(0)
    channels = []
    for phase in (0.0, 1.3):  # left and right differ, as in a real mix
        x = sum(np.sin(2 * np.pi * f * t + phase * k) / (k + 1)
                for k, f in enumerate([110, 220, 330, 440, 587, 880]))
        channels.append(0.3 * env * x + 0.01 * rng.standard_normal(n))
    return np.stack(channels).astype(np.float32)


class BusySender:
    """A thread doing a sender's work without pause: takes blocks, encodes them (every level)."""

    def __init__(self, processor: CaptureProcessor) -> None:
        self.handoff = processor.handoff
        self.stop = threading.Event()
        self.encoded = 0
        self.thread = threading.Thread(target=self._run, name="busy-sender", daemon=True)

    def __enter__(self) -> BusySender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        sender, receiver = Protocol(Role.SENDER), Protocol(Role.RECEIVER)
        sender.send(Hello("bench", "keys", "keys", SR, CHANNELS, FRAMES, "bench"))
        for frame in sender.data_to_send():
            receiver.receive_data(frame)
        receiver.send(Welcome())
        for frame in receiver.data_to_send():
            sender.receive_data(frame)
        levels = list(Quality)
        last = None
        while not self.stop.is_set():
            block = self.handoff.take(timeout=0.0) or last
            if block is None:
                continue
            last = block
            sender.send_blocks([block], levels[self.encoded % len(levels)])
            sender.data_to_send()
            self.encoded += 1


def bench_paced(blocks: int) -> dict[str, float]:
    """``process()`` alone, paced as beside the busy sender: what a call costs after the thread
    slept (cold caches; on a VM the vCPU may have halted), with no other thread at all."""
    processor = CaptureProcessor("bench", "keys", SR, CHANNELS, capacity=1024)
    return summarise(time_process(processor, min(blocks, BUSY_BLOCKS), drain=True, pace=PACE))


def bench_process(blocks: int, busy: bool = False) -> dict[str, float]:
    # the hand-off is drained (by the busy sender, or here), as a live stream's sender drains it
    processor = CaptureProcessor("bench", "keys", SR, CHANNELS, capacity=1024)
    if busy:
        with BusySender(processor) as sender:
            # paced like a capture thread (one block per period, here 0.5 ms apart): between
            # blocks the sender has the GIL, as it would
            times = time_process(processor, min(blocks, BUSY_BLOCKS), drain=False, pace=PACE)
        result = summarise(times)
        result["sender_blocks_encoded"] = sender.encoded
        return result
    return summarise(time_process(processor, blocks, drain=True))


def time_process(processor: CaptureProcessor, blocks: int, drain: bool, pace: float = 0.0) -> np.ndarray:
    audio = music(1.0)[:, :FRAMES].copy()
    midi = [(0, b"\x90\x3c\x64"), (100, b"\xb0\x01\x20"), (300, b"\x80\x3c\x00")]
    playhead = Playhead(seconds=1.0, ppq=2.0, bpm=120.0, playing=True)
    times = np.empty(blocks)
    for i in range(blocks):
        t0 = time.perf_counter_ns()
        processor.process(audio, midi, playhead)
        times[i] = time.perf_counter_ns() - t0
        if pace:
            time.sleep(pace)
        if drain and len(processor.handoff) > 1000:
            while processor.handoff.take() is not None:
                pass
    return times[blocks // 10:] / 1000.0  # warm-up excluded


def summarise(times: np.ndarray) -> dict[str, float]:
    block_us = FRAMES / SR * 1e6
    return {"process_median_us": float(np.median(times)), "process_p99_us": float(np.percentile(times, 99)),
            "process_median_pct_of_block": float(np.median(times) / block_us * 100)}


def bench_protocol(seconds: float = 10.0) -> dict[str, dict[str, float]]:
    signal = music(seconds)
    processor = CaptureProcessor("bench", "keys", SR, CHANNELS, capacity=100000)
    for start in range(0, signal.shape[1] - FRAMES + 1, FRAMES):
        processor.process(signal[:, start:start + FRAMES], [(0, b"\x90\x3c\x64")], Playhead(playing=True))
    blocks = []
    while (b := processor.handoff.take()) is not None:
        blocks.append(b)
    raw = FRAMES * CHANNELS * 4
    results = {}
    for quality in Quality:
        sender, receiver = Protocol(Role.SENDER), Protocol(Role.RECEIVER)
        sender.send(Hello("bench", "keys", "keys", SR, CHANNELS, FRAMES, "bench"))
        for frame in sender.data_to_send():
            receiver.receive_data(frame)
        receiver.send(Welcome())
        for frame in receiver.data_to_send():
            sender.receive_data(frame)
        t0 = time.perf_counter()
        size = sum(sender.send_blocks([b], quality) for b in blocks)
        encode_s = time.perf_counter() - t0
        frames = sender.data_to_send()
        t0 = time.perf_counter()
        for frame in frames:
            receiver.receive_data(frame)
        decode_s = time.perf_counter() - t0
        assert receiver.close_code is None, receiver.close_reason
        results[quality.name] = {"encode_blocks_per_s": len(blocks) / encode_s,
                                 "decode_blocks_per_s": len(blocks) / decode_s,
                                 "bytes_per_block": size / len(blocks),
                                 "ratio_vs_raw_f32": size / len(blocks) / raw}
    return results


def side_by_side(revision: str, rounds: int) -> None:
    """``process()`` beside a busy sender: this checkout against ``revision``, in turn."""
    import os
    import statistics
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from baseline import baseline_tree  # scripts/baseline.py, beside this script

    runs: dict[str, list[dict[str, float]]] = {revision: [], "this": []}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {revision: baseline_tree(revision, Path(scratch)), "this": None}
        for k in range(rounds):
            for label, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": str(tree)} if tree is not None else None
                done = subprocess.run([sys.executable, __file__, "--busy-only"], capture_output=True, text=True,
                                      env=env, check=True)
                runs[label].append(json.loads(done.stdout.splitlines()[-1]))
                got = runs[label][-1]
                print(f"round {k + 1} {label:>9}: median {got['process_median_us']:6.1f} µs, "
                      f"p99 {got['process_p99_us']:6.1f} µs; paced alone p99 {got['paced_alone']['process_p99_us']:6.1f} µs",
                      flush=True)
    summary = {label: {"p99_us": [round(r["process_p99_us"], 1) for r in found],
                       "median_of_p99_us": round(statistics.median(r["process_p99_us"] for r in found), 1),
                       "median_of_median_us": round(statistics.median(r["process_median_us"] for r in found), 1),
                       "paced_alone_median_of_p99_us": round(statistics.median(r["paced_alone"]["process_p99_us"]
                                                                               for r in found), 1)}
               for label, found in runs.items()}
    for label, figures in summary.items():
        print(f"{label:>9}: p99 median of rounds {figures['median_of_p99_us']} µs, "
              f"median {figures['median_of_median_us']} µs; paced alone p99 {figures['paced_alone_median_of_p99_us']} µs")
    print(json.dumps({"block_frames": FRAMES, "channels": CHANNELS, "baseline": revision, "rounds": rounds,
                      "busy_sender": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=50000)
    parser.add_argument("--baseline", metavar="REV", help="also measure git revision REV, side by side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy-only", action="store_true", help=argparse.SUPPRESS)  # one side of --baseline
    args = parser.parse_args()
    if args.busy_only:
        print(json.dumps({**bench_process(args.blocks, busy=True), "paced_alone": bench_paced(args.blocks)}))
        return
    if args.baseline:
        side_by_side(args.baseline, args.rounds)
        return
    process = bench_process(args.blocks)
    busy = bench_process(args.blocks, busy=True)
    paced = bench_paced(args.blocks)
    protocol = bench_protocol()
    print(f"process(): median {process['process_median_us']:.1f} µs, p99 {process['process_p99_us']:.1f} µs "
          f"({process['process_median_pct_of_block']:.2f}% of a {FRAMES}-frame block at {SR} Hz)")
    print(f"process() beside a busy sender thread: median {busy['process_median_us']:.1f} µs, "
          f"p99 {busy['process_p99_us']:.1f} µs ({busy['sender_blocks_encoded']} blocks encoded meanwhile)")
    print(f"process() paced the same, alone (no other thread): median {paced['process_median_us']:.1f} µs, "
          f"p99 {paced['process_p99_us']:.1f} µs")
    print(f"{'quality':8} {'enc blk/s':>10} {'dec blk/s':>10} {'bytes/blk':>10} {'vs f32':>7}")
    for name, r in protocol.items():
        print(f"{name:8} {r['encode_blocks_per_s']:10.0f} {r['decode_blocks_per_s']:10.0f} "
              f"{r['bytes_per_block']:10.0f} {r['ratio_vs_raw_f32']:7.3f}")
    print(json.dumps({"block_frames": FRAMES, "channels": CHANNELS, "sample_rate": SR, **process,
                      "busy_sender": busy, "paced_alone": paced, "protocol": protocol}))


if __name__ == "__main__":
    main()
