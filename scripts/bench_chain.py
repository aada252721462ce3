"""A recorded track's effect chain streamed through capture, against the same chain run once.

    .venv/bin/python scripts/bench_chain.py [--seconds 60] [--runs 5] [--block-size 512]

one-shot: ``pedalboard.Pedalboard(effects)(take, sr)``, the whole take in one call: what the
          chain's audio costs anyway.
streamed: what ``sendlearn render`` does with a recorded track (plugin/chain/recording.py): the
          chain's latency measured, then the take fed block by block through the
          ``AlignedChain`` (``reset=False``, blocks split at every automation point), the dry
          and the wet block each through a ``CaptureProcessor`` (blocks copied and handed off;
          a thread drains them as the sender would). Nothing is sent or written.
chain only: the streamed chain of ``streamed`` without any capture (latency measured, blocks
          pushed and taken): what streaming the chain costs by itself.
The modes run interleaved (the order flips every run, after one warm-up of each). Per block,
in a separate pass: the chain's cost (push + take, with the automation splits) and
``CaptureProcessor.process``'s cost for the wet block. Figures are ratios and per-block
times measured side by side in one run; the machine's load moves them. Last line: one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import numpy as np

from sendlearn.capture import StreamInfo
from sendlearn.plugin.chain.effects import AlignedChain, Change
from sendlearn.plugin.chain.feed import BlockFeeder, feed_through_chain, track_chain
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.reader import Automation, Effect, effect_ids
from sendlearn.plugin.session.timeline import Timeline, steady_timeline

RATE, CHANNELS = 48000, 2
EFFECTS = (
    Effect("Gain", (("gain_db", 0.0),), "g"),
    Effect("Compressor", (("threshold_db", -18.0), ("ratio", 3.0))),
    Effect("Chorus", (("mix", 0.3),)),
    Effect("Delay", (("delay_seconds", 0.375), ("feedback", 0.3), ("mix", 0.25))),
    Effect("Reverb", (("room_size", 0.5), ("wet_level", 0.25))),
)


def chain_effects() -> list[Effect]:
    return [Effect(e.name, e.options, i) for e, i in zip(EFFECTS, effect_ids(list(EFFECTS)), strict=True)]


def lanes(seconds: float) -> tuple[Automation, ...]:
    """A gain step every 2 s (inside blocks, off the grid) and a reverb ramp over the whole take."""
    steps: list[tuple[float, float]] = []
    for k in range(int(seconds // 2)):
        at = 2.0 * k + 0.3001
        steps += [(at, -6.0 * (k % 2)), (at, -6.0 * ((k + 1) % 2))]
    return (Automation("g.gain_db", tuple(steps) or ((0.0, 0.0),)),
            Automation("reverb.room_size", ((0.0, 0.2), (seconds, 0.8))))


def take(seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(0)
    env = np.exp(-6 * (t % 0.5))
    return np.stack([0.3 * env * np.sin(2 * np.pi * 220 * t + p) + 0.02 * rng.standard_normal(n)
                     for p in (0.0, 1.3)]).astype(np.float32)


def one_shot(audio: np.ndarray) -> float:
    import pedalboard

    board = pedalboard.Pedalboard([getattr(pedalboard, e.name)(**dict(e.options)) for e in EFFECTS])
    started = time.perf_counter()
    board(audio, RATE)
    return time.perf_counter() - started


def _drained(info: StreamInfo) -> tuple[CaptureProcessor, threading.Thread]:
    processor = CaptureProcessor.for_stream(info, realtime=False, capacity=256)

    def drain() -> None:  # as the sender's thread does: wait for blocks until the stream is closed and empty
        while not processor.handoff.finished:
            processor.handoff.take(timeout=0.05)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return processor, thread


def _chain(audio: np.ndarray, block_size: int) -> tuple[Timeline, list[Change], AlignedChain]:
    """The take's clock, the chain's parameter changes and the chain, as plugin/chain/recording.py
    makes them (``track_chain``: latency measured, then aligned)."""
    timeline = steady_timeline(120.0, (4, 4), RATE)
    frames = audio.shape[1]
    moves, _, chain = track_chain(chain_effects(), lanes(frames / RATE), timeline, frames, CHANNELS, block_size)
    return timeline, moves, chain


def _moves_in(moves: list[Change], c: int, start: int, end: int) -> tuple[list[Change], int]:
    """The changes from index ``c`` on that fall before ``end``, at their offsets from ``start``."""
    here = []
    while c < len(moves) and moves[c][0] < end:
        here.append((moves[c][0] - start, moves[c][1], moves[c][2]))
        c += 1
    return here, c


def streamed(audio: np.ndarray, block_size: int) -> float:
    started = time.perf_counter()
    timeline, moves, chain = _chain(audio, block_size)
    (dry_p, dry_t), (wet_p, wet_t) = (_drained(StreamInfo("bench", name, RATE, CHANNELS, block_size))
                                      for name in ("gtr-dry", "gtr-wet"))
    playheads: dict = {}  # as plugin/chain/recording.py does
    dry, wet = BlockFeeder(dry_p, (), (), timeline, playheads=playheads), BlockFeeder(wet_p, (), moves, timeline,
                                                                                       playheads=playheads)
    feed_through_chain(audio, chain, moves, block_size, wet, dry=dry)
    for processor, thread in ((dry_p, dry_t), (wet_p, wet_t)):
        processor.close()
        thread.join()
    return time.perf_counter() - started


def chain_only(audio: np.ndarray, block_size: int) -> float:
    """The streamed chain without capture: latency measured, blocks pushed (split at the
    automation) and taken; no processor, no playhead."""
    started = time.perf_counter()
    _, moves, chain = _chain(audio, block_size)
    frames = audio.shape[1]
    c = 0
    for start in range(0, frames, block_size):
        end = min(start + block_size, frames)
        here, c = _moves_in(moves, c, start, end)
        chain.push(audio[:, start:end], here)
        chain.take(chain.ready)
    return time.perf_counter() - started


def per_block(audio: np.ndarray, block_size: int) -> dict[str, float]:
    """Per-block cost of the chain (push + take) and of the wet CaptureProcessor.process."""
    timeline, moves, chain = _chain(audio, block_size)
    frames = audio.shape[1]
    processor = CaptureProcessor("bench", "gtr-wet", RATE, CHANNELS, capacity=frames // block_size + 2,
                                 realtime=False)
    chain_ns, capture_ns = [], []
    c = 0
    for start in range(0, frames - block_size + 1, block_size):
        end = start + block_size
        here, c = _moves_in(moves, c, start, end)
        t0 = time.perf_counter_ns()
        chain.push(audio[:, start:end], here)
        out = chain.take(block_size)
        t1 = time.perf_counter_ns()
        processor.process(out, (), timeline.playhead_at(start), [(o, p, v) for o, p, v in here])
        t2 = time.perf_counter_ns()
        chain_ns.append(t1 - t0)
        capture_ns.append(t2 - t1)
    skip = len(chain_ns) // 10  # warm-up
    chain_us, capture_us = np.array(chain_ns[skip:]) / 1000, np.array(capture_ns[skip:]) / 1000
    return {"chain_median_us": float(np.median(chain_us)), "chain_p99_us": float(np.percentile(chain_us, 99)),
            "process_median_us": float(np.median(capture_us)), "process_p99_us": float(np.percentile(capture_us, 99)),
            "block_us": block_size / RATE * 1e6, "automation_changes": len(moves)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=512)
    args = parser.parse_args()
    audio = take(args.seconds)
    modes = {"one-shot": lambda: one_shot(audio), "chain only, streamed": lambda: chain_only(audio, args.block_size),
             "streamed": lambda: streamed(audio, args.block_size)}
    for run_mode in modes.values():  # warm-up: libraries loaded, caches warm
        run_mode()
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in (list(modes) if run % 2 == 0 else list(reversed(modes))):
            times[mode].append(modes[mode]())
    ratios = [s / o for s, o in zip(times["streamed"], times["one-shot"], strict=True)]
    chain_ratios = [s / o for s, o in zip(times["chain only, streamed"], times["one-shot"], strict=True)]
    blocks = per_block(audio, args.block_size)
    from sendlearn.cli.output import print_table

    print_table(f"{args.seconds:g} s stereo take, {len(EFFECTS)} effects, {args.block_size}-frame blocks, "
                f"{args.runs} runs", ["what", "median", "min", "max"],
                [[f"{mode} seconds", f"{statistics.median(v):.3f}", f"{min(v):.3f}", f"{max(v):.3f}"]
                 for mode, v in times.items()]
                + [["chain only / one-shot", f"{statistics.median(chain_ratios):.2f}x", f"{min(chain_ratios):.2f}x",
                    f"{max(chain_ratios):.2f}x"],
                   ["streamed / one-shot", f"{statistics.median(ratios):.2f}x", f"{min(ratios):.2f}x",
                    f"{max(ratios):.2f}x"]])
    print_table("per block", ["what", "median µs", "p99 µs", "of the block's duration"],
                [["chain (push + take)", f"{blocks['chain_median_us']:.1f}", f"{blocks['chain_p99_us']:.1f}",
                  f"{blocks['chain_median_us'] / blocks['block_us']:.1%}"],
                 ["CaptureProcessor.process", f"{blocks['process_median_us']:.1f}", f"{blocks['process_p99_us']:.1f}",
                  f"{blocks['process_median_us'] / blocks['block_us']:.1%}"]])
    print(json.dumps({
        "bench": "chain", "seconds": args.seconds, "block_size": args.block_size, "runs": args.runs,
        "effects": [e.name for e in EFFECTS], "automation_changes": blocks["automation_changes"],
        "one_shot_seconds": times["one-shot"], "streamed_seconds": times["streamed"],
        "chain_only_seconds": times["chain only, streamed"],
        "chain_only_median_ratio": round(statistics.median(chain_ratios), 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_of_medians": round(statistics.median(times["streamed"]) / statistics.median(times["one-shot"]), 3),
        "per_block_us": {k: round(v, 2) for k, v in blocks.items() if k.endswith("_us")},
    }))


if __name__ == "__main__":
    main()
