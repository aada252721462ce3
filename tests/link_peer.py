"""A Link peer for tests/test_link.py, run as a process of its own (as a DAW beside the capture
is): it waits for another peer, then plays a script of tempo and start/stop changes, and
writes what Link's own timeline said all along as JSON lines, each
``[link_time_us, beat, tempo, playing]`` (Link's clock: CLOCK_MONOTONIC_RAW on Linux, the
clock JACK's frame times are on), about every millisecond, then one ``{"events": [...]}``
line: ``[link_time_us, what]`` for each change it made.

python link_peer.py LOG --bpm 123.4 --quantum 4 --wait 20 --script start@0.6 tempo=101.7@1.8 stop@3.2 end@3.8
(times in seconds after the other peer was seen)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from aalink import Link


async def main(args: argparse.Namespace) -> int:
    link = Link(args.bpm)
    link.quantum = args.quantum
    link.start_stop_sync_enabled = True
    link.enabled = True
    rows: list[list[float]] = []
    events: list[list[object]] = []

    def sample() -> None:  # kept only when nothing came between the beat and the times read around it
        before = link.time.total_seconds() * 1e6
        beat = link.beat
        after = link.time.total_seconds() * 1e6
        if after - before <= 200:
            rows.append([(before + after) / 2, beat, link.tempo, bool(link.playing)])

    deadline = time.monotonic() + args.wait
    while link.num_peers < 1:
        if time.monotonic() > deadline:
            print(f"no other Link peer within {args.wait} s", file=sys.stderr, flush=True)
            return 3
        await asyncio.sleep(0.01)
    seen = time.monotonic()
    print("peer seen", flush=True)
    script = []
    for step in args.script:
        what, _, at = step.partition("@")
        script.append((float(at), what))
    for at, what in sorted(script):
        while time.monotonic() < seen + at:
            sample()
            await asyncio.sleep(0.001)
        if what == "start":
            link.playing = True
        elif what == "stop":
            link.playing = False
        elif what.startswith("tempo="):
            link.tempo = float(what[6:])
        elif what != "end":
            raise SystemExit(f"unknown step {what!r}")
        events.append([link.time.total_seconds() * 1e6, what])
        sample()
    with Path(args.log).open("w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
        out.write(json.dumps({"events": events}) + "\n")
    link.enabled = False
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--quantum", type=float, default=4.0)
    parser.add_argument("--wait", type=float, default=20.0)
    parser.add_argument("--script", nargs="+", required=True)
    sys.exit(asyncio.run(main(parser.parse_args())))
