"""Streams of generated audio written through the store's own writer (float32 or 16-bit), for the
quality and report tests that need a signal they know exactly rather than a render."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sendlearn.capture import Block, MidiEvent, Playhead, StreamInfo
from sendlearn.store.writer import StreamWriter
from sendlearn.transport import Quality

RATE, BLOCK = 48000, 512


def write_stream(data_dir: Path, session: str, audio: np.ndarray, quality: Quality = Quality.FLOAT32,
                 meta: dict | None = None, note_every: int = 8) -> None:
    """``audio`` (channels, frames) as stream ``session/synth``, a note on and off every ``note_every`` blocks."""
    channels, frames = audio.shape
    writer = StreamWriter(data_dir, StreamInfo(session, "synth", RATE, channels, BLOCK), meta)
    blocks = []
    for seq, start in enumerate(range(0, frames, BLOCK)):
        n = min(BLOCK, frames - start)
        midi = (MidiEvent(0, b"\x90\x3c\x64"), MidiEvent(n - 1, b"\x80\x3c\x00")) if seq % note_every == 0 else ()
        blocks.append(Block(session, "synth", seq, start, n, RATE, channels, Playhead(seconds=start / RATE, bpm=120.0,
                                                                                    playing=True),
                            midi, (), np.ascontiguousarray(audio[:, start:start + n])))
    writer.add(blocks, quality)
    writer.bye(len(blocks) - 1)
    writer.commit()
    writer.finalise("bye")


def sine(amplitude: float, seconds: float = 2.0, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.tile(amplitude * np.sin(2 * np.pi * hz * t), (2, 1)).astype(np.float32)
