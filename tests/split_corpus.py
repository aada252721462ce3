"""A corpus of small rendered sessions for the splits and examples tests: plain MIDI files of a few
seconds each (a melody drawn from the session's name), rendered through the real chain with the
default instrument, one session (and stream) per file, named after it."""

from __future__ import annotations

import random
from pathlib import Path

import mido

from sendlearn.cli.main import main


def write_melody(path: Path, seconds: float, seed: str) -> Path:
    """A type-0 file at 120 bpm: quarter and eighth notes of a C major scale for ``seconds``."""
    rng = random.Random(seed)
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    ticks, pending = int(seconds * 2 * 480), 0
    at = 0
    while at + 240 <= ticks:
        length = rng.choice([240, 480])
        pitch, velocity = rng.choice(scale) + 12 * rng.choice([-1, 0, 0, 1]), rng.randint(60, 110)
        track.append(mido.Message("note_on", note=pitch, velocity=velocity, time=pending))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=length - 20))
        pending, at = 20, at + length
    midi.save(str(path))
    return path


def render_corpus(data_dir: Path, names: list[str], seconds: float = 4.0) -> Path:
    """Render a session per name into ``data_dir`` (which may already hold others)."""
    folder = data_dir.parent / f"midi-{'-'.join(names)}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_melody(folder / f"{name}.mid", seconds, name)
    assert main(["render", str(folder), "--data-dir", str(data_dir), "--workers", "2", "--json"]) == 0
    return data_dir
