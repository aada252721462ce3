"""Wire size of a 16-bit stream against a FLAC file of the same audio, and the receiver's
write throughput, over a real loopback websocket into a real data directory.

    .venv/bin/python scripts/bench_wire.py [--seconds S]

Target: 16-bit lossless wire bytes ≤ 1.1× the FLAC file (the project's aim; README.md's Benchmarks
table keeps the last figures). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Quality
from sendlearn.transport.codec import dequantize, quantize
from sendlearn.transport.sender import Sender

SR, CHANNELS, BLOCK = 48000, 2, 512


def dense(seconds: float) -> np.ndarray:
    """Chords re-struck every half second with a noise floor: every block has signal."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(1)
    out = []
    for phase in (0.0, 0.7):
        x = sum(np.sin(2 * np.pi * f * t + phase * k) / (k + 1)
                for k, f in enumerate([130.8, 164.8, 196.0, 261.6, 329.6, 392.0]))
        out.append(0.25 * np.exp(-3 * (t % 0.5)) * x + 0.005 * rng.standard_normal(t.size))
    return np.stack(out).astype(np.float32)


def sparse(seconds: float) -> np.ndarray:
    """Short plucks with digital silence between them, as a lone melody track has."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros((CHANNELS, n), np.float32)
    rng = np.random.default_rng(2)
    for start in np.arange(0.0, seconds, 1.0):
        i0, i1 = int(start * SR), min(n, int((start + 0.25) * SR))
        f = rng.choice([220.0, 261.6, 329.6, 392.0])
        pluck = 0.4 * np.exp(-20 * (t[i0:i1] - start)) * np.sin(2 * np.pi * f * t[i0:i1])
        out[:, i0:i1] = pluck.astype(np.float32)
    return out


def flac_size(audio: np.ndarray) -> int:
    buffer = io.BytesIO()
    soundfile.write(buffer, quantize(audio, 16).T.astype(np.int16), SR, format="FLAC", subtype="PCM_16")
    return len(buffer.getvalue())


def stream(audio: np.ndarray, quality: Quality, data_dir: Path, name: str) -> dict[str, float]:
    info = StreamInfo("bench", name, SR, CHANNELS, BLOCK, name, "bench")
    with ReceiverThread(data_dir) as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=False, capacity=4096)
        sender = Sender(receiver.url, info, processor.handoff, quality=quality).start()
        t0 = time.perf_counter()
        for start in range(0, audio.shape[1] - BLOCK + 1, BLOCK):
            ppq = start / SR * 2.0  # 120 bpm, 4/4: a playhead that moves, as a host's does
            playhead = Playhead(seconds=start / SR, ppq=ppq, bpm=120.0, bar=int(ppq // 4) + 1,
                                beat=ppq % 4 + 1, playing=True)
            midi = [(0, b"\x90\x3c\x40")] if start % SR < BLOCK else []
            processor.process(audio[:, start:start + BLOCK], midi, playhead)
        sender.close(timeout=600)
        elapsed = time.perf_counter() - t0
    blocks = audio.shape[1] // BLOCK
    stored, _ = soundfile.read(data_dir / "sessions" / "bench" / name /
                               ("audio.wav" if quality is Quality.FLOAT32 else "audio.flac"),
                               dtype="float32", always_2d=True)
    expected = audio[:, :blocks * BLOCK]
    if quality is Quality.PCM16:
        expected = dequantize(quantize(expected, 16), 16)
    assert np.array_equal(stored.T, expected), "the dataset's audio is not what was sent"
    return {"wire_bytes": sender.bytes_sent, "audio_bytes": sender.audio_bytes_sent, "seconds": elapsed, "blocks": blocks,
            "blocks_per_s": blocks / elapsed, "realtime_factor": blocks * BLOCK / SR / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result: dict[str, object] = {"seconds_of_audio": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in (("dense", dense), ("sparse", sparse)):
            audio = make(args.seconds)
            flac = flac_size(audio[:, : audio.shape[1] // BLOCK * BLOCK])
            pcm16 = stream(audio, Quality.PCM16, Path(tmp), f"{label}-16")
            result[f"{label}_16bit_wire_vs_flac"] = pcm16["wire_bytes"] / flac
            result[f"{label}_flac_bytes"] = flac
            result[f"{label}_16bit_wire_bytes"] = pcm16["wire_bytes"]
            result[f"{label}_16bit_audio_payload_vs_flac"] = pcm16["audio_bytes"] / flac
            print(f"{label:6} 16-bit: wire {pcm16['wire_bytes']:>10} B (audio payload {pcm16['audio_bytes']:>10} B), "
                  f"FLAC file {flac:>10} B: wire/FLAC {pcm16['wire_bytes'] / flac:.3f}, "
                  f"audio/FLAC {pcm16['audio_bytes'] / flac:.3f}")
        full = stream(dense(args.seconds), Quality.FLOAT32, Path(tmp), "throughput")
    print(f"float32 stream into the receiver: {full['blocks_per_s']:.0f} blocks/s, "
          f"{full['realtime_factor']:.1f}x real time ({BLOCK}-frame stereo blocks at {SR} Hz)")
    result.update({"receiver_blocks_per_s": full["blocks_per_s"], "receiver_realtime_factor": full["realtime_factor"]})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
