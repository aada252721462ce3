"""How many real-time streams a receiver takes with nothing lost, and what each costs.

    .venv/bin/python scripts/bench_receiver.py [--streams 16 32 64 96] [--seconds S] [--workers W] [--senders P]

The receiver is a real `sendlearn serve --workers W` (W processes on one port). The streams come
from P sender processes, each driving the shared Protocol for its share of the streams on one
event loop (a plugin per stream would cost the client more than the receiver). Each stream is
stereo 48 kHz float32 in 512-frame blocks, one BLOCK frame per block at real-time pace. N is
stepped up; a step holds when every stream's dataset is complete (all blocks, no gaps) and no
stream's acknowledged backlog passed 2 s (it fell behind). An ACK waits for an fsync: on a busy
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
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from websockets.asyncio.client import connect

from sendlearn.capture import Block, Playhead
from sendlearn.transport import Ack, Bye, Hello, Protocol, Role

SR, CH, FRAMES = 48000, 2, 512


async def one_stream(url: str, index: int, seconds: float, audio: np.ndarray, lags: list[float],
                     late: list[float]) -> int:
    protocol = Protocol(Role.SENDER, compression_level=0)
    async with connect(url, compression=None, max_size=None) as ws:
        protocol.send(Hello("bench", f"s{index:03d}", "", SR, CH, FRAMES, "bench"))
        for frame in protocol.data_to_send():
            await ws.send(frame)
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
        blocks = int(seconds / period)
        start = time.monotonic() + (index % 50) * period / 50  # spread the streams over a period
        for seq in range(blocks):
            wait = start + seq * period - time.monotonic()
            late[0] = max(late[0], -wait)  # the sender itself behind real time (its own CPU)
            await asyncio.sleep(max(0.0, wait))
            block = Block("bench", f"s{index:03d}", seq, seq * FRAMES, FRAMES, SR, CH,
                          Playhead(seconds=seq * period, playing=True), (), (), audio)
            protocol.send_blocks([block])
            for frame in protocol.data_to_send():
                await ws.send(frame)
            lags.append((seq - acked) * period)
        protocol.send(Bye(blocks - 1))
        for frame in protocol.data_to_send():
            await ws.send(frame)
        await asyncio.wait_for(reader, 120)
        return acked + 1


def sender_process(url: str, indexes: list[int], seconds: float, out: Any) -> None:
    """One sender process: its streams on one event loop; puts (acked counts, lag samples, late)."""
    audio = np.random.default_rng(0).uniform(-1, 1, (CH, FRAMES)).astype(np.float32)
    lags: list[float] = []
    late = [0.0]

    async def run() -> list[int]:
        return await asyncio.gather(*(one_stream(url, i, seconds, audio, lags, late) for i in indexes))

    acked = asyncio.run(run())
    out.put((acked, lags, late[0]))


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
             profile: str | None = None) -> dict[str, Any]:
    # --profile: one receiver process under cProfile (it writes its figures when SIGTERM ends it)
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        server = subprocess.Popen([*python, "-m", "sendlearn", "serve", "--port", "0", "--data-dir", tmp,
                                   "--workers", str(workers), "--max-connections-per-address", str(streams + 16)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = server.stdout.readline()
        url = line.split("listening on ")[1].split(",")[0]
        time.sleep(1.0)  # the workers settle
        base_rss, base_cpu = tree_rss_mib(server.pid), tree_cpu(server.pid)
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        shares = [list(range(streams))[k::senders] for k in range(senders)]
        procs = [context.Process(target=sender_process, args=(url, share, seconds, out)) for share in shares if share]
        started = time.monotonic()
        for proc in procs:
            proc.start()
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
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan")
    worst = lags[-1] if lags else float("nan")
    ok = complete == streams and len(acked) == streams and all(a == blocks for a in acked) and worst < 2.0
    return {"streams": streams, "ok": ok, "complete": complete, "ack_lag_p99_s": p99, "worst_ack_backlog_s": worst,
            "senders_late_s": max((r[2] for r in results), default=0.0),
            "receiver_cores": cpu / elapsed, "receiver_cpu_per_stream": cpu / elapsed / streams,
            "receiver_peak_rss_mib": peak, "receiver_rss_per_stream_mib": (peak - base_rss) / streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="receiver processes (serve --workers)")
    parser.add_argument("--senders", type=int, default=4, help="sender processes")
    parser.add_argument("--dir", help="where the data directories go (default: the temporary directory); "
                        "/dev/shm takes the disk's fsyncs out of the measure")
    parser.add_argument("--profile", metavar="FILE", help="run one receiver process (--workers 1) under cProfile, "
                        "its figures written to FILE")
    args = parser.parse_args()
    if args.profile:
        args.workers = 1
    results = []
    for n in args.streams:
        r = run_step(n, args.seconds, args.workers, args.senders, args.dir, args.profile)
        results.append(r)
        print(f"{n:3d} streams: {'held' if r['ok'] else 'FAILED'}; complete {r['complete']}/{n}; ACK lag p99 "
              f"{r['ack_lag_p99_s'] * 1000:.0f} ms (worst {r['worst_ack_backlog_s']:.2f} s); receiver "
              f"{r['receiver_cores']:.2f} cores ({r['receiver_cpu_per_stream'] * 1000:.1f} mcores/stream); "
              f"RSS {r['receiver_peak_rss_mib']:.0f} MiB ({r['receiver_rss_per_stream_mib']:.2f} MiB/stream); "
              f"senders late by {r['senders_late_s']:.2f} s", flush=True)
        if not r["ok"]:
            break
    held = [r for r in results if r["ok"]]
    best = max(held, key=lambda r: r["streams"]) if held else None
    print(json.dumps({"max_realtime_streams_held": best["streams"] if best else 0, "workers": args.workers,
                      "dir": args.dir or tempfile.gettempdir(),
                      "senders": args.senders, "seconds": args.seconds,
                      "cpu_per_stream_cores": best["receiver_cpu_per_stream"] if best else None,
                      "rss_per_stream_mib": best["receiver_rss_per_stream_mib"] if best else None,
                      "ack_lag_p99_s": best["ack_lag_p99_s"] if best else None, "steps": results}))


if __name__ == "__main__":
    main()
