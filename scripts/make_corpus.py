"""Write a varied General MIDI corpus with mido, for batch tests and benchmarks (no downloads).

Each file is a type-1 score of a few parts: melodic parts on GM programs (a program change per
channel), drums on channel 10 (GM kit notes), bass; a tempo map with changes and a meter that
changes (4/4, 3/4, 7/8, 6/8); velocities, note lengths, sustain pedal and a pitch bend here
and there; lengths spread between ``--seconds MIN MAX``. Seeded: the same arguments write the
same bytes.

    python scripts/make_corpus.py OUT_DIR [--files 50] [--seconds 5 60] [--seed 1] [--nested] [--dense]

``--nested`` spreads the files over sub-folders (as real corpora are), two of them with the
same file name. ``--dense`` writes what stresses an instrument's polyphony, as a quartet or a
piano score does: every file has all four parts plus a chords part (4-7 note chords that
overlap their neighbours), and sample 0 holds, on every channel, a note-off, a program change,
a pitch-wheel and a controller beside the parts' first notes and a chord. Prints one JSON object: the files, their total and longest seconds.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import mido

from sendlearn.capture.midi import delta_track

TPB = 480
METERS = [(4, 4), (3, 4), (7, 8), (6, 8), (5, 4)]
DRUM_NOTES = [35, 36, 38, 40, 42, 44, 46, 49, 51]  # kicks, snares, hats, crash, ride
SCALE = [0, 2, 3, 5, 7, 8, 10]


def make_file(path: Path, rng: random.Random, seconds: float, dense: bool = False) -> float:
    """One score of about ``seconds``; returns its length in seconds (from its tempo map)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    tick, elapsed, tempo_events = 0, 0.0, []
    while elapsed < seconds:  # sections of 1-2 bars, each with its own tempo and meter
        bpm = rng.uniform(70, 170)
        num, den = rng.choice(METERS)
        bars = 1 if seconds - elapsed < 8 else rng.randint(1, 2)  # a file ends within a bar of its length
        beat_ticks = TPB * 4 // den
        length = bars * num * beat_ticks
        tempo_events.append((tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
        tempo_events.append((tick, mido.MetaMessage("time_signature", numerator=num, denominator=den)))
        elapsed += length / TPB * 60.0 / bpm
        tick += length
    end = tick
    midi.tracks.append(_track(tempo_events, end))  # the conductor
    root = rng.randint(36, 60)
    parts = [("lead", rng.choice([0, 4, 24, 40, 56, 73, 80]), 0), ("pad", rng.choice([48, 52, 88, 89]), 1),
             ("bass", rng.choice([32, 33, 38]), 2), ("drums", 0, 9)][: 4 if dense else rng.randint(2, 4)]
    if all(channel != 9 for _, _, channel in parts):
        parts.append(("drums", 0, 9))
    for _, program, channel in parts:
        midi.tracks.append(_part(rng, channel, program, root, end))
    if dense:
        midi.tracks.append(_chords(rng, 3, rng.choice([0, 19, 48, 61]), root, end))
        midi.tracks.append(_sample_zero(rng, root, end))
    midi.save(str(path))
    return elapsed


def _part(rng: random.Random, channel: int, program: int, root: int, end: int) -> mido.MidiTrack:
    events: list[tuple[int, mido.Message]] = []
    if channel != 9:
        events.append((0, mido.Message("program_change", channel=channel, program=program)))
    step = {0: TPB // 2, 1: TPB * 2, 2: TPB, 9: TPB // 2}.get(channel, TPB)
    tick = 0
    while tick < end - step:
        if channel == 9:
            note = rng.choice(DRUM_NOTES)
        else:
            octave = {0: 24, 1: 12, 2: -12}.get(channel, 0)
            note = max(0, min(127, root + octave + rng.choice(SCALE) + 12 * rng.randint(0, 1)))
        if rng.random() < 0.85:
            length = max(1, int(step * rng.uniform(0.3, 1.0)))
            velocity = rng.randint(40, 120)
            events.append((tick, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
            events.append((tick + length, mido.Message("note_off", channel=channel, note=note)))
        if channel == 0 and rng.random() < 0.05:
            events.append((tick, mido.Message("pitchwheel", channel=channel, pitch=rng.randint(-4096, 4096))))
        if channel == 1 and rng.random() < 0.1:
            down = rng.random() < 0.5
            events.append((tick, mido.Message("control_change", channel=channel, control=64, value=127 if down else 0)))
        tick += step
    return _track(events, end)


def _chords(rng: random.Random, channel: int, program: int, root: int, end: int) -> mido.MidiTrack:
    """4-7 note chords, one every half bar or so, each held past the next one's start."""
    events: list[tuple[int, mido.Message]] = [(0, mido.Message("program_change", channel=channel, program=program))]
    tick = 0
    while tick < end - TPB:
        size = rng.randint(4, 7)
        base = root + rng.choice(SCALE)
        notes = sorted({max(0, min(127, base + 12 * (k // 3) + (0, 4, 7)[k % 3])) for k in range(size)})
        length = min(end - tick, int(TPB * rng.uniform(1.5, 3.0)))
        for note in notes:
            events.append((tick, mido.Message("note_on", channel=channel, note=note, velocity=rng.randint(70, 127))))
            events.append((tick + length, mido.Message("note_off", channel=channel, note=note)))
        tick += rng.choice([TPB, TPB * 2])
    return _track(_unique_notes(events), end)


def _sample_zero(rng: random.Random, root: int, end: int) -> mido.MidiTrack:
    """On tick 0 of every channel: a note-off of a note not playing, a program change, a
    pitch-wheel and a controller; and a chord on channel 4 held for a beat."""
    events: list[tuple[int, mido.Message]] = []
    for channel in range(16):
        events += [(0, mido.Message("note_off", channel=channel, note=rng.randint(0, 127))),
                   (0, mido.Message("pitchwheel", channel=channel, pitch=rng.randint(-8192, 8191))),
                   (0, mido.Message("control_change", channel=channel, control=7, value=rng.randint(80, 127)))]
        if channel != 9:
            events.append((0, mido.Message("program_change", channel=channel, program=rng.randint(0, 127))))
    for note in sorted({root + step for step in (0, 4, 7, 12, 16, 19, 24)}):
        events.append((0, mido.Message("note_on", channel=4, note=note, velocity=rng.randint(60, 127))))
        events.append((min(TPB, end), mido.Message("note_off", channel=4, note=note)))
    return _track(events, end)


def _unique_notes(events: list[tuple[int, mido.Message]]) -> list[tuple[int, mido.Message]]:
    """Drop a note-on whose pitch is still held on its channel (and its note-off), so chords
    that overlap never restart a sounding key."""
    out: list[tuple[int, mido.Message]] = []
    held: dict[tuple[int, int], int] = {}  # (channel, note) -> tick it is released
    skip: set[tuple[int, int, int]] = set()
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        if msg.type == "note_on":
            key = (msg.channel, msg.note)
            if held.get(key, -1) > tick:
                offs = [t for t, m in events if m.type == "note_off" and (m.channel, m.note) == key and t > tick]
                skip.add((msg.channel, msg.note, min(offs)))
                continue
            offs = [t for t, m in events if m.type == "note_off" and (m.channel, m.note) == key and t > tick]
            held[key] = min(offs) if offs else tick
        elif msg.type == "note_off" and (msg.channel, msg.note, tick) in skip:
            skip.discard((msg.channel, msg.note, tick))
            continue
        out.append((tick, msg))
    return out


def _track(events: list[tuple[int, mido.Message | mido.MetaMessage]], end: int) -> mido.MidiTrack:
    return delta_track(sorted(events, key=lambda e: (e[0], e[1].type == "note_on")), end)  # offs before ons


def make_corpus(out: Path, files: int, seconds: tuple[float, float], seed: int = 1,
                nested: bool = False, dense: bool = False) -> list[tuple[Path, float]]:
    """Write ``files`` scores under ``out``; returns (path, seconds) of each."""
    rng = random.Random(seed)
    written = []
    for index in range(files):
        folder = out / f"set{index % 3}" if nested else out
        folder.mkdir(parents=True, exist_ok=True)
        name = "song.mid" if nested and index < 2 else f"song{index:04d}.mid"
        path = folder / name
        written.append((path, make_file(path, rng, rng.uniform(*seconds), dense)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--seconds", type=float, nargs=2, default=(5.0, 60.0), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nested", action="store_true", help="spread files over sub-folders")
    parser.add_argument("--dense", action="store_true",
                        help="all parts plus overlapping chords, and events on sample 0 on every channel")
    args = parser.parse_args()
    written = make_corpus(args.out, args.files, tuple(args.seconds), args.seed, args.nested, args.dense)
    print(json.dumps({"files": [str(p) for p, _ in written], "seconds": round(sum(s for _, s in written), 3),
                      "longest_seconds": round(max((s for _, s in written), default=0.0), 3)}))


if __name__ == "__main__":
    main()
