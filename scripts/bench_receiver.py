"""How many real-time streams a receiver takes with nothing lost, and what each costs.

    .venv/bin/python scripts/bench_receiver.py [--streams 16 32 64 96] [--seconds S] [--workers W] [--senders P]
        [--baseline REV] [--profile FILE] [--dir DIR]

The receiver is a real `sendlearn serve --workers W` (W processes on one port). The streams come
from P sender processes, each driving the shared Protocol for its share of the streams on one
event loop (a plugin per stream would cost the client more than the receiver); they code every
frame before the clock starts, so on a shared machine the load generator takes little of the
CPU it measures. Each stream is stereo 48 kHz float32 in 512-frame blocks, one BLOCK frame per
block at real-time pace. N is stepped up; a step holds when every stream's dataset is complete
(all blocks, no gaps) and the ACK lag p99 is at most 1 s. ``--baseline REV`` runs each step
twice, first against the receiver of git revision REV, so both see the same machine load. An ACK waits for an fsync: on a busy
disk the fsyncs, not the CPU, set the limit (``--dir /dev/shm`` leaves them out). Reports the largest N held, the
receiver's CPU (cores, all its processes) and peak RSS per stream, and the ACK lag p99 (how far
the durable point trailed the newest block sent, sampled at every block). Stops at the first
step that fails. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from baseline import baseline_tree  # scripts/baseline.py, beside this script
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sendlearn.capture import Block, Playhead
from sendlearn.transport import Ack, Bye, Hello, Protocol, Role, State

SR, CH, FRAMES = 48000, 2, 512


def stream_frames(index: int, blocks: int, audio: np.ndarray) -> tuple[bytes, list[bytes], bytes]:
    """A stream's HELLO, its BLOCK frames (one block each) and its BYE, coded before the clock
    starts: the senders are the load generator, and what they cost is not what is measured."""
    protocol = Protocol(Role.SENDER, compression_level=0)
    protocol.send(Hello("bench", f"s{index:03d}", "", SR, CH, FRAMES, "bench"))
    (hello,) = protocol.data_to_send()
    protocol.state = State.STREAMING  # as after a WELCOME: the frames are coded, not sent, here
    frames = []
    period = FRAMES / SR
    for seq in range(blocks):
        block = Block("bench", f"s{index:03d}", seq, seq * FRAMES, FRAMES, SR, CH,
                      Playhead(seconds=seq * period, playing=True), (), (), audio)
        protocol.send_blocks([block])
        frames.extend(protocol.data_to_send())
    protocol.send(Bye(blocks - 1))
    (bye,) = protocol.data_to_send()
    return hello, frames, bye


async def one_stream(url: str, index: int, coded: tuple[bytes, list[bytes], bytes], lags: list[float],
                     late: list[float]) -> int:
    try:
        return await stream_into(url, index, coded, lags, late)
    except (ConnectionClosed, OSError, TimeoutError):
        return -1  # cut (a receiver far behind misses its pings): the step fails, the others go on


async def stream_into(url: str, index: int, coded: tuple[bytes, list[bytes], bytes], lags: list[float],
                      late: list[float]) -> int:
    hello, frames, bye = coded
    protocol = Protocol(Role.SENDER, compression_level=0)
    async with connect(url, compression=None, max_size=None) as ws:
        protocol.send(Hello("bench", f"s{index:03d}", "", SR, CH, FRAMES, "bench"))
        protocol.data_to_send()  # the same HELLO, coded before the clock started
        await ws.send(hello)
        protocol.receive_data(await ws.recv())
        protocol.events_received()
        acked = -1

        async def read_acks() -> None:
            nonlocal acked
            async for data in ws:
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Ack):
                        acked = max(acked, event.through)

        reader = asyncio.create_task(read_acks())
        period = FRAMES / SR
        start = time.monotonic() + (index % 50) * period / 50  # spread the streams over a period
        for seq, frame in enumerate(frames):
            wait = start + seq * period - time.monotonic()
            late[0] = max(late[0], -wait)  # the sender itself behind real time (its own CPU)
            await asyncio.sleep(max(0.0, wait))
            await ws.send(frame)
            lags.append((seq - acked) * period)
        await ws.send(bye)
        await asyncio.wait_for(reader, 120)
        return acked + 1


def sender_process(url: str, indexes: list[int], seconds: float, out: Any, ready: Any, go: Any) -> None:
    """One sender process: its streams on one event loop; puts (acked counts, lag samples, late, CPU s)."""
    audio = np.random.default_rng(0).uniform(-1, 1, (CH, FRAMES)).astype(np.float32)
    blocks = int(seconds / (FRAMES / SR))
    coded = {i: stream_frames(i, blocks, audio) for i in indexes}
    lags: list[float] = []
    late = [0.0]
    ready.put(True)
    go.wait()
    cpu = time.process_time()

    async def run() -> list[int]:
        return await asyncio.gather(*(one_stream(url, i, coded[i], lags, late) for i in indexes))

    acked = asyncio.run(run())
    out.put((acked, lags, late[0], time.process_time() - cpu))


def tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def tree_cpu(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def tree_rss_mib(pid: int) -> float:
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / (1 << 20)


def run_step(streams: int, seconds: float, workers: int, senders: int, where: str | None,
             profile: str | None = None, code: Path | None = None) -> dict[str, Any]:
    """One step: ``streams`` streams into a fresh receiver (of the package tree ``code``, if
    given: the baseline of a side-by-side run)."""
    # --profile: one receiver process under cProfile (it writes its figures when SIGTERM ends it)
    python = [sys.executable]
    if profile:  # a .txt figure file: pyinstrument (sampling, light); anything else: cProfile's stats
        python += (["-m", "pyinstrument", "-r", "text", "-o", profile] if profile.endswith(".txt")
                   else ["-m", "cProfile", "-o", profile])
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        server = subprocess.Popen([*python, "-m", "sendlearn", "serve", "--port", "0", "--data-dir", tmp,
                                   "--workers", str(workers), "--max-connections-per-address", str(streams + 16)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split("listening on ")[1].split(",")[0]
        time.sleep(1.0)  # the workers settle
        context = multiprocessing.get_context("spawn")
        out, ready, go = context.Queue(), context.Queue(), context.Event()
        shares = [list(range(streams))[k::senders] for k in range(senders)]
        procs = [context.Process(target=sender_process, args=(url, share, seconds, out, ready, go))
                 for share in shares if share]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=600)  # every sender has coded its frames
        base_rss, base_cpu = tree_rss_mib(server.pid), tree_cpu(server.pid)
        started = time.monotonic()
        go.set()
        peak = base_rss
        results = []
        while len(results) < len(procs):
            try:
                results.append(out.get(timeout=0.25))
            except queue.Empty:
                peak = max(peak, tree_rss_mib(server.pid))
                if not any(p.is_alive() for p in procs) and out.empty():
                    break
        elapsed = time.monotonic() - started
        cpu = tree_cpu(server.pid) - base_cpu
        for proc in procs:
            proc.join(60)
        server.terminate()
        server.wait(120)
        blocks = int(seconds / (FRAMES / SR))
        complete = 0
        for i in range(streams):
            path = Path(tmp) / "sessions" / "bench" / f"s{i:03d}" / "stream.json"
            if path.exists():
                d = json.loads(path.read_text())
                complete += bool(d["complete"] and d["blocks"] == blocks and not d["gaps"])
    acked = [a for r in results for a in r[0]]
    lags = sorted(lag for r in results for lag in r[1])
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("inf")
    worst = lags[-1] if lags else float("inf")
    ok = complete == streams and len(acked) == streams and all(a == blocks for a in acked) and p99 <= 1.0
    return {"streams": streams, "ok": ok, "complete": complete, "ack_lag_p99_s": p99, "worst_ack_backlog_s": worst,
            "senders_late_s": max((r[2] for r in results), default=0.0),
            "senders_cores": sum(r[3] for r in results) / elapsed,
            "receiver_cores": cpu / elapsed, "receiver_cpu_per_stream": cpu / elapsed / streams,
            "receiver_peak_rss_mib": peak, "receiver_rss_per_stream_mib": (peak - base_rss) / streams}


def row(label: str, r: dict[str, Any]) -> str:
    return (f"{label:>9} {r['streams']:4d} {'held' if r['ok'] else 'FAILED':>6} {r['complete']:4d} "
            f"{r['ack_lag_p99_s'] * 1000:8.0f} {r['worst_ack_backlog_s']:7.2f} {r['receiver_cores']:6.2f} "
            f"{r['receiver_cpu_per_stream'] * 1000:7.1f} {r['senders_cores']:6.2f} {r['senders_late_s']:6.2f} "
            f"{r['receiver_rss_per_stream_mib']:6.2f} {r['load_before']:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="receiver processes (serve --workers)")
    parser.add_argument("--senders", type=int, default=4, help="sender processes")
    parser.add_argument("--dir", help="where the data directories go (default: the temporary directory); "
                        "/dev/shm takes the disk's fsyncs out of the measure")
    parser.add_argument("--profile", metavar="FILE", help="run one receiver process (--workers 1) under cProfile, "
                        "its figures written to FILE (FILE.txt: under pyinstrument, if installed)")
    parser.add_argument("--baseline", metavar="REV", help="also measure the receiver of git revision REV, each "
                        "step side by side with this checkout's (same run, same machine load)")
    parser.add_argument("--keep-going", action="store_true", help="measure every step, not only up to the first failure")
    args = parser.parse_args()
    if args.profile:
        args.workers = 1
    receivers: list[tuple[str, Path | None]] = [("this", None)]
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            receivers.insert(0, (args.baseline[:9], baseline_tree(args.baseline, Path(scratch))))
        print(f"{'receiver':>9} {'N':>4} {'':>6} {'done':>4} {'p99 ms':>8} {'worst s':>7} {'cores':>6} "
              f"{'mc/str':>7} {'send c':>6} {'late s':>6} {'MiB/st':>6} {'load':>5}", flush=True)
        results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in receivers}
        for step, n in enumerate(args.streams):
            # ABBA: the machine's load drifts, so which receiver goes first alternates
            for label, code in (receivers if step % 2 == 0 else receivers[::-1]):
                load = os.getloadavg()[0]  # other work on the machine: the figures are shared-CPU ones
                r = run_step(n, args.seconds, args.workers, args.senders, args.dir, args.profile, code)
                r["load_before"] = load
                results[label].append(r)
                print(row(label, r), flush=True)
            if not results["this"][-1]["ok"] and not args.keep_going:
                break
    summary: dict[str, Any] = {}
    for label, steps in results.items():
        held = [r for r in steps if r["ok"]]
        best = max(held, key=lambda r: r["streams"]) if held else None
        summary[label] = {"max_realtime_streams_held": best["streams"] if best else 0,
                          "cpu_per_stream_cores": best["receiver_cpu_per_stream"] if best else None,
                          "rss_per_stream_mib": best["receiver_rss_per_stream_mib"] if best else None,
                          "ack_lag_p99_s": best["ack_lag_p99_s"] if best else None, "steps": steps}
    this = summary.pop("this")
    print(json.dumps({**this, "workers": args.workers, "dir": args.dir or tempfile.gettempdir(),
                      "senders": args.senders, "seconds": args.seconds, "cpus": os.sched_getaffinity(0).__len__(),
                      "baseline": {"revision": args.baseline, **summary[args.baseline[:9]]} if args.baseline else None}))


if __name__ == "__main__":
    main()
