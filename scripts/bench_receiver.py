"""How many real-time streams one receiver process takes, nothing lost, and its memory per stream.

    .venv/bin/python scripts/bench_receiver.py [--streams 16 32 64] [--seconds S]

The receiver is a real `sendlearn serve` process; the streams come from one client process that
drives the shared Protocol for every stream on one event loop (a plugin per stream would cost
the client more than the receiver). Each stream is stereo 48 kHz float32 in 512-frame blocks,
one BLOCK frame per block at real-time pace. A step passes when every stream's dataset is
complete (all blocks, no gaps) and the acknowledged backlog stayed under 2 s.
Targets (DESIGN §8): ≥ 64 streams on 2 cores; ≤ 8 MiB per stream, flat. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

from sendlearn.capture import Block, Playhead
from sendlearn.transport import Ack, Bye, Hello, Protocol, Role

SR, CH, FRAMES = 48000, 2, 512


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_stream(url: str, index: int, seconds: float, audio: np.ndarray, worst: list[float]) -> int:
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
            await asyncio.sleep(max(0.0, start + seq * period - time.monotonic()))
            block = Block("bench", f"s{index:03d}", seq, seq * FRAMES, FRAMES, SR, CH,
                          Playhead(seconds=seq * period, playing=True), (), (), audio)
            protocol.send_blocks([block])
            for frame in protocol.data_to_send():
                await ws.send(frame)
            worst[0] = max(worst[0], (seq - acked) * period)
        protocol.send(Bye(blocks - 1))
        for frame in protocol.data_to_send():
            await ws.send(frame)
        await asyncio.wait_for(reader, 120)
        return acked + 1


def run_step(streams: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", str(port), "--data-dir",
                                   tmp], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert "listening" in server.stdout.readline()
        base_rss, base_cpu = rss_mib(server.pid), cpu_seconds(server.pid)
        audio = np.random.default_rng(0).uniform(-1, 1, (CH, FRAMES)).astype(np.float32)
        worst = [0.0]
        peak = [base_rss]
        samples: list[tuple[float, float]] = []  # (seconds into the run, RSS MiB): flat or growing?

        async def main() -> list[int]:
            async def sample_rss() -> None:
                start = time.monotonic()
                while True:
                    rss = rss_mib(server.pid)
                    peak[0] = max(peak[0], rss)
                    samples.append((time.monotonic() - start, rss))
                    await asyncio.sleep(0.25)
            sampler = asyncio.create_task(sample_rss())
            t0 = time.monotonic()
            acked = await asyncio.gather(*(one_stream(f"ws://127.0.0.1:{port}", i, seconds, audio, worst)
                                           for i in range(streams)))
            sampler.cancel()
            main.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
            return acked

        acked = asyncio.run(main())
        cpu = cpu_seconds(server.pid) - base_cpu
        server.terminate()
        server.wait(60)
        blocks = int(seconds / (FRAMES / SR))
        complete = sum(
            1 for i in range(streams)
            if (d := json.loads((Path(tmp) / "sessions" / "bench" / f"s{i:03d}" / "stream.json").read_text()))
            ["complete"] and d["blocks"] == blocks and not d["gaps"])
    ok = complete == streams and all(a == blocks for a in acked) and worst[0] < 2.0
    # growth over the second half of the run (the first half includes start-up and warm-up)
    half = [(t, r) for t, r in samples if t >= seconds / 2 and t <= seconds]
    growth = ((half[-1][1] - half[0][1]) / max(half[-1][0] - half[0][0], 1e-9) * 60) if len(half) > 1 else 0.0
    return {"streams": streams, "ok": ok, "complete": complete, "worst_ack_backlog_s": worst[0],
            "receiver_rss_growth_mib_per_minute_second_half": growth,
            "receiver_cpu_fraction": cpu / main.elapsed, "receiver_peak_rss_mib": peak[0],  # type: ignore
            "receiver_rss_per_stream_mib": (peak[0] - base_rss) / streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    results = []
    for n in args.streams:
        r = run_step(n, args.seconds)
        results.append(r)
        print(f"{n:3d} streams: {'ok' if r['ok'] else 'FAILED'}; complete {r['complete']}/{n}; worst ACK backlog "
              f"{r['worst_ack_backlog_s']:.2f} s; receiver CPU {r['receiver_cpu_fraction']:.2f} cores; "
              f"RSS {r['receiver_peak_rss_mib']:.0f} MiB ({r['receiver_rss_per_stream_mib']:.2f} MiB/stream, "
              f"{r['receiver_rss_growth_mib_per_minute_second_half']:+.1f} MiB/min in the second half)",
              flush=True)
    best = max((r["streams"] for r in results if r["ok"]), default=0)
    print(json.dumps({"max_realtime_streams_ok": best, "seconds": args.seconds, "steps": results}))


if __name__ == "__main__":
    main()
