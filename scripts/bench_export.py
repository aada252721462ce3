"""Export throughput and memory: hours of audio per minute per format, and peak RSS, with the export
allowed less memory than the dataset it exports.

    python scripts/bench_export.py [--minutes 40] [--streams 2] [--limit-mb 512] [--formats parquet ...]
                                   [--tokenizer REMI]

Builds a data directory (one session of ``--streams`` stereo float32 48 kHz streams, ``--minutes`` of
audio in all, sent through the real sender and receiver; tones, noise and MIDI notes), runs
``sendlearn sequences`` (30 s windows, 5 s overlap; features computed once, not timed), then each
``sendlearn export FORMAT --include-flagged`` (``tokens`` with ``--tokenizer``, REMI by default: its
hours are the audio of the windows it tokenized) in a process of its own whose data segment is capped at
``--limit-mb`` (RLIMIT_DATA: an export that held the dataset would fail). RSS is sampled every 0.1 s:
the table shows the peak and the RSS at a quarter, half and three quarters of the run (flat = bounded).
Prints a table, then one JSON object as its last line. Ends cleanly on SIGINT, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RATE, BLOCK, CHANNELS = 48000, 4096, 2
FORMATS = ["parquet", "webdataset", "hdf5", "tfrecord", "pytorch", "tokens"]


def build_dataset(data_dir: Path, minutes: float, streams: int) -> float:
    """The bench session; seconds it took."""
    from sendlearn.capture import Playhead, StreamInfo
    from sendlearn.plugin import CaptureProcessor
    from sendlearn.server.receiver import ReceiverThread
    from sendlearn.transport.sender import Sender

    started = time.perf_counter()
    blocks = int(minutes * 60 * RATE / streams) // BLOCK
    rng = np.random.default_rng(0)
    loop = 10 * RATE  # ten seconds of "music", read from a different place every block
    t = np.arange(loop) / RATE
    music = np.stack([0.2 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2 for f in (220.0, 330.0)])
    music = (music + rng.normal(0, 0.02, music.shape)).astype(np.float32)
    with ReceiverThread(data_dir) as receiver:
        for s in range(streams):
            info = StreamInfo("bench", f"track{s}", RATE, CHANNELS, BLOCK)
            processor = CaptureProcessor.for_stream(info, realtime=False)
            sender = Sender(receiver.url, info, processor.handoff).start()
            for i in range(blocks):
                start = i * BLOCK
                at = (start * 7 + s * 12345) % (loop - BLOCK)
                pitch = 48 + (i * 5 + s * 7) % 36
                midi = [(0, bytes([0x90, pitch, 90])), (BLOCK // 2, bytes([0x80, pitch, 0]))]
                ppq = start / RATE * 2.0
                playhead = Playhead(seconds=start / RATE, ppq=ppq, bpm=120.0, bar=int(ppq // 4) + 1,
                                    beat=ppq % 4 + 1.0, playing=True)
                processor.process(music[:, at:at + BLOCK], midi, playhead)
            sender.close(timeout=600)
    return time.perf_counter() - started


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_export(fmt: str, data_dir: Path, out: Path, limit: int, tokenizer: str = "REMI") -> dict[str, Any]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    command = [sys.executable, "-m", "sendlearn", "export", fmt, "--data-dir", str(data_dir), "--out", str(out),
               "--include-flagged", "--json"] + (["--tokenizer", tokenizer] if fmt == "tokens" else [])
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap)
    samples: list[tuple[float, int]] = []
    try:
        while child.poll() is None:
            samples.append((time.perf_counter() - started, _rss(child.pid)))
            time.sleep(0.1)
    except BaseException:
        child.terminate()
        child.wait()
        raise
    elapsed = time.perf_counter() - started
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"export {fmt} failed ({child.returncode}): {stderr.decode()[-800:]}")
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    peak = max((r for _, r in samples), default=0)

    def at(fraction: float) -> int:
        later = [r for t, r in samples if t >= fraction * elapsed]
        return later[0] if later else 0

    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    hours = summary["audio_seconds"] / 3600
    return {"format": fmt, "seconds": round(elapsed, 2), "audio_hours": round(hours, 4),
            "hours_per_minute": round(hours / (elapsed / 60), 3), "peak_rss_mb": round(peak / 2**20, 1),
            "rss_mb_25_50_75": [round(at(f) / 2**20, 1) for f in (0.25, 0.5, 0.75)], "samples": summary["samples"],
            "out_mb": round(size / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=40.0, help="minutes of audio in the dataset, all streams")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--limit-mb", type=int, default=512, help="data segment each export may use")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    parser.add_argument("--tokenizer", default="REMI", help="miditok tokenizer of the tokens row")
    parser.add_argument("--data-dir", type=Path, help="keep the dataset here (reused when it holds the session)")
    args = parser.parse_args()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    scratch = Path(tempfile.mkdtemp(prefix="bench_export-"))
    data_dir = args.data_dir or scratch / "data"
    results: list[dict[str, Any]] = []
    try:
        built = 0.0
        if not (data_dir / "sessions" / "bench").is_dir():
            built = build_dataset(data_dir, args.minutes, args.streams)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sendlearn", "sequences", "--data-dir", str(data_dir), "--workers", "2",
                        "--json"], check=True, stdout=subprocess.DEVNULL)
        sequenced = time.perf_counter() - started
        audio = sum(f.stat().st_size for f in (data_dir / "sessions").rglob("audio.*"))
        print(f"dataset: {audio / 2**20:.0f} MiB of audio ({args.minutes:g} min, {args.streams} streams; built in "
              f"{built:.0f} s, sequences {sequenced:.0f} s); each export capped at {args.limit_mb} MiB of data")
        for fmt in args.formats:
            out = scratch / f"out-{fmt}"
            results.append(run_export(fmt, data_dir, out, args.limit_mb * 2**20, args.tokenizer))
            shutil.rmtree(out, ignore_errors=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'format':<11} {'h/min':>7} {'seconds':>8} {'peak RSS MiB':>13} {'RSS at 25/50/75 %':>20} {'out MiB':>8}")
    for r in results:
        print(f"{r['format']:<11} {r['hours_per_minute']:>7.2f} {r['seconds']:>8.1f} {r['peak_rss_mb']:>13.0f} "
              f"{'/'.join(f'{v:.0f}' for v in r['rss_mb_25_50_75']):>20} {r['out_mb']:>8.0f}")
    audio_mb = round(audio / 2**20, 1) if results else None
    print(json.dumps({"bench": "export", "dataset_audio_mb": audio_mb, "limit_mb": args.limit_mb,
                      "minutes": args.minutes, "streams": args.streams, "formats": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
