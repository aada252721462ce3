"""A short multi-track session with tempo and meter changes, rendered through the real chain
(``sendlearn render`` of a session file: DawDreamer Faust instruments, capture, websocket,
receiver, writer) for the dataset reader, sequences and quality tests.

The truth is worked out here by hand from the conductor this file writes. Tracks:
``lead`` (hard_attack: sample-exact onsets), ``bass``, ``loud`` (+24 dB: over full scale in
float, so not clipped; with cutoff automation), ``quiet`` (-90 dB: silent). No track plays from 3.0 s to 5.0 s, so the window
there (``--window 2 --overlap 0.5``) is empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import mido

from midi_files import conductor, seconds_at, timed_track
from sendlearn.cli.main import main

RATE, TPB = 48000, 480
WINDOW, OVERLAP = 2.0, 0.5
# 120 bpm, then 150 bpm from beat 4 of bar 1 (mid-bar); 3/4 from bar 2; 6/8 from bar 4.
TEMPOS = [(0, 500_000), (1440, 400_000)]
METERS = [(0, 4, 4), (1920, 3, 4), (4800, 6, 8)]
END_TICK = 9600  # 8.3 s
EMPTY = (3.0, 5.0)  # seconds with no MIDI event in any track
TRACKS = {  # name: (instrument, gain_db, seed)
    "lead": ("hard_attack", 0.0, 1),
    "bass": ("bass", 0.0, 2),
    "loud": ("poly_saw", 24.0, 3),
    "quiet": ("poly_saw", -90.0, 4),
}


def sample_at(tick: int) -> int:
    return math.floor(seconds_at(tick, TEMPOS, TPB) * RATE)


def notes(track: str) -> list[tuple[int, int, int, int]]:
    """(on_tick, off_tick, pitch, velocity) of ``track``: none sounding from 2.45 s to 5.1 s; the
    lead has a note across the 1.5 s window boundary and notes 60+ ticks apart (onsets after
    silence)."""
    seed = TRACKS[track][2]
    out, tick, index = [], 7 * seed, 0
    while tick < END_TICK - 300:
        if tick < 2800 or tick > 5760:
            length = 41 + (index * 37 + seed) % 150
            out.append((tick, tick + length, 36 + (index * 7 + seed * 5) % 50, 30 + (index * 13 + seed) % 90))
            tick += length + 60 + (index * 29 + seed) % 90
        else:
            tick = 5761 + seed
        index += 1
    if track == "lead":
        out = [n for n in out if n[1] < 1300 or n[0] > 1700] + [(1344, 1560, 72, 100)]  # 1.4 s to 1.6 s
    return sorted(out)


def write_midi(path: Path, track: str) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    part = []
    for on, off, pitch, velocity in notes(track):
        part += [(on, mido.Message("note_on", note=pitch, velocity=velocity)),
                 (off, mido.Message("note_off", note=pitch, velocity=0))]
    part.append((END_TICK, mido.MetaMessage("end_of_track")))
    midi.tracks += [timed_track(conductor(TEMPOS, METERS)), timed_track(part)]
    midi.save(str(path))


def copy_of_session(tmp_path_factory, name: str) -> Path:  # noqa: ANN001 (pytest's TempPathFactory)
    """A data directory of its own holding the session (rendered once per test run), for tests
    that write sequences/ into it."""
    import shutil

    copy = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(render_session(tmp_path_factory.getbasetemp() / "band"), copy)
    return copy


def render_session(root: Path) -> Path:
    """Render the session into ``root/data`` once; the data directory."""
    data_dir = root / "data"
    if (data_dir / "sessions" / "band").is_dir():
        return data_dir
    root.mkdir(parents=True, exist_ok=True)
    lines = ['name = "band"', f"sample_rate = {RATE}", "block_size = 512"]
    for name, (instrument, gain, _) in TRACKS.items():
        write_midi(root / f"{name}.mid", name)
        lines += ["", "[[track]]", f'name = "{name}"', f'midi = "{name}.mid"',
                  f'instrument = {{ faust = "{instrument}", voices = 4 }}', f"gain_db = {gain}"]
        if name == "loud":
            lines.append('automation = [ { param = "cutoff", points = [[0.0, 0.2], [1.0, 0.2], [4.0, 0.9]] } ]')
    (root / "session.toml").write_text("\n".join(lines) + "\n")
    assert main(["render", str(root / "session.toml"), "--data-dir", str(data_dir), "--json"]) == 0
    return data_dir
