"""``sendlearn report`` on corpora of many sessions: its time and the page's size.

    .venv/bin/python scripts/bench_report.py [--sessions 30 300] [--max-windows 200] [--max-sessions 12]

Data: three short MIDI files (120 bpm 4/4 for 70 s: two whole windows and a padded one; 90 then 140 bpm, 3/4, 16 s; 100 bpm 6/8, 7 s: shorter
than one 30 s window, so it is one padded window) rendered once through ``sendlearn render`` (the default
Faust synth, 48 kHz stereo) and cut by ``sendlearn sequences`` (30 s windows, 5 s overlap). A corpus of N
sessions is those three copied under new ids (files hard-linked; stream.json and sequences.json rewritten
with the new id), so every session is a real render with its stored windows and features.

Each row: ``build_report`` with the defaults (at most 200 windows measured, 12 sessions in detail) in this
process, numba compiled beforehand; seconds (the best of ``--runs``), the HTML page's and report.json's
bytes. The page should stay under 5 MB at 1,000 sessions, and the time grow with the windows measured,
not with the sessions. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import mido

from sendlearn.capture.midi import delta_track
from sendlearn.cli.main import main
from sendlearn.dataset.features import warm_up
from sendlearn.dataset.report import build_report

PIECES = {  # name: (seconds, [(second, bpm)], (num, den))
    "march": (70.0, [(0.0, 120.0)], (4, 4)),
    "waltz": (16.0, [(0.0, 90.0), (8.0, 140.0)], (3, 4)),
    "jig": (7.0, [(0.0, 100.0)], (6, 8)),
}
TPB = 480


def write_midi(path: Path, seconds: float, tempi: list[tuple[float, float]], meter: tuple[int, int]) -> None:
    """Chords of three notes every beat over the tempo map, pitches from the piece's length."""
    timed: list[tuple[int, mido.Message | mido.MetaMessage]] = [
        (0, mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1]))]
    tick, now, step = 0, 0.0, 0
    for index, (_, bpm) in enumerate(tempi):
        timed.append((tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
        until = tempi[index + 1][0] if index + 1 < len(tempi) else seconds - 0.5
        while now < until:
            for k, pitch in enumerate((48 + step % 12, 55 + step % 7, 64 + step % 5)):
                timed += [(tick, mido.Message("note_on", note=pitch, velocity=60 + 10 * k)),
                          (tick + TPB * 3 // 4, mido.Message("note_off", note=pitch))]
            tick += TPB
            now += 60.0 / bpm
            step += 1
    midi = mido.MidiFile(type=0, ticks_per_beat=TPB)
    midi.tracks.append(delta_track(sorted(timed, key=lambda item: item[0])))
    midi.save(str(path))


def quiet(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0, argv


def render_base(root: Path) -> Path:
    inputs = root / "midi"
    inputs.mkdir()
    for name, (seconds, tempi, meter) in PIECES.items():
        write_midi(inputs / f"{name}.mid", seconds, tempi, meter)
    data_dir = root / "base"
    quiet(["render", str(inputs), "--data-dir", str(data_dir), "--json"])
    quiet(["sequences", "--data-dir", str(data_dir), "--workers", "2", "--json"])
    return data_dir


def _copy_tree(source: Path, target: Path, rewrite: str, session: str) -> None:
    for path in source.rglob("*"):
        goal = target / path.relative_to(source)
        if path.is_dir():
            goal.mkdir(parents=True, exist_ok=True)
        elif path.name == rewrite:
            goal.parent.mkdir(parents=True, exist_ok=True)
            goal.write_text(json.dumps({**json.loads(path.read_text()), "session": session}))
        else:
            goal.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, goal)


def make_corpus(base: Path, root: Path, sessions: int) -> Path:
    """``sessions`` sessions: the base's, round robin, each under a new id."""
    data_dir = root / f"corpus-{sessions}"
    names = sorted(p.name for p in (base / "sessions").iterdir())
    for k in range(sessions):
        name = names[k % len(names)]
        new = f"{name}-{k:05d}"
        _copy_tree(base / "sessions" / name, data_dir / "sessions" / new, "stream.json", new)
        _copy_tree(base / "sequences" / name, data_dir / "sequences" / new, "sequences.json", new)
    return data_dir


def run(data_dir: Path, out: Path, args: argparse.Namespace) -> dict[str, float | int]:
    best = None
    for _ in range(args.runs):
        started = time.perf_counter()
        report = build_report(data_dir, out, args.max_windows, max_sessions=args.max_sessions)
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return {"sessions": len(report["sessions"]), "windows": report["windows"],
            "windows_measured": report["windows_measured"], "sessions_detailed": len(report["sessions_detailed"]),
            "seconds": round(best, 2), "html_bytes": out.stat().st_size,
            "json_bytes": out.with_suffix(".json").stat().st_size}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--max-windows", type=int, default=200)
    parser.add_argument("--max-sessions", type=int, default=12)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="build the corpora here and keep them (else a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        base = render_base(root)
        warm_up()
        rows = []
        for n in args.sessions:
            data_dir = make_corpus(base, root, n)
            rows.append(run(data_dir, root / f"report-{n}.html", args))
        columns = list(rows[0])
        print(" | ".join(f"{c:>17}" for c in columns))
        for row in rows:
            print(" | ".join(f"{row[c]:>17}" for c in columns))
        print(json.dumps({"bench": "report", "max_windows": args.max_windows, "max_sessions": args.max_sessions,
                          "rows": rows, "data": str(root) if args.keep else None}))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main_bench()
