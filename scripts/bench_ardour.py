"""``sendlearn render`` of an Ardour session vs Ardour's own ``ardour7-export``, side by side.

    .venv/bin/python scripts/bench_ardour.py [--seconds 120] [--runs 3] [--period 1024]

Builds a session with headless Ardour (tests/ardour.py's ``build_song``: one MIDI track with ACE
Reasonable Synth and notes recorded into it), sets its session range to ``--seconds``, then, in
turning order so a drifting load weighs on both alike, ``--runs`` times each:

1. ``sendlearn render SESSION --data-dir D --json`` as a whole process (jackd, Ardour loading the
   copy, the bridge, freewheel, the store writing one stream per track and ``master``), and the
   freewheeling capture alone (its ``render_seconds``: from the bridge starting to the range
   captured);
2. ``ardour7-export -b float`` of the same session and range, as a whole process.

Prints real-time factors (song seconds / wall seconds) for each, then one JSON object as the
last line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # build_song: the same session builder the tests use

from ardour import build_song  # noqa: E402

SUPERCLOCK = 282240000  # Ardour 7's superclock ticks per second (session file positions "a<ticks>")


def set_range(song: Path, seconds: float) -> None:
    file = song / "song.ardour"
    text = file.read_text()
    text, count = re.subn(r'(<Location [^>]*end=")a\d+("[^>]*flags="IsSessionRange")',
                          lambda m: f"{m.group(1)}a{round(seconds * SUPERCLOCK)}{m.group(2)}", text)
    if count != 1:
        raise SystemExit(f"{file}: no session range to set")
    file.write_text(text)


def timed(command: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--period", type=int, default=1024)
    args = parser.parse_args()
    sendlearn = str(Path(sys.executable).parent / "sendlearn")
    with tempfile.TemporaryDirectory(prefix="bench-ardour-") as tmp:
        work = Path(tmp)
        song = build_song(work / "build")
        set_range(song, args.seconds)
        rows: dict[str, list[float]] = {"render": [], "capture": [], "export": []}
        crashes: list[str] = []
        for run in range(args.runs):
            order = ["render", "export"] if run % 2 == 0 else ["export", "render"]
            for what in order:
                if what == "render":
                    wall, out = timed([sendlearn, "render", str(song), "--data-dir", str(work / f"data-{run}"),
                                       "--json", "--block-size", str(args.period)])
                    summary = json.loads(out)
                    if not summary["ok"]:
                        raise SystemExit(f"render failed: {summary['failures']}")
                    rows["render"].append(wall)
                    rows["capture"].append(summary["streams"][0]["render_seconds"])
                else:
                    for attempt in range(3):  # ardour7-export 7.3 now and then aborts (free(): invalid next size)
                        copy = work / f"export-{run}-{attempt}"
                        shutil.copytree(song, copy)
                        try:
                            wall, _ = timed(["ardour7-export", "-b", "float", "-o", str(copy / "out.wav"),
                                             str(copy), "song"])
                            break
                        except SystemExit as exc:
                            crashes.append(str(exc)[:200])
                    else:
                        raise SystemExit(f"ardour7-export failed {attempt + 1} times: {crashes[-1]}")
                    rows["export"].append(wall)
        result = {"song_seconds": args.seconds, "period": args.period, "runs": args.runs}
        print(f"{args.seconds:g} s of song, period {args.period}, {args.runs} runs (median; best)")
        for what, label in (("render", "sendlearn render, whole process"),
                            ("capture", "  of which the freewheeling capture"),
                            ("export", "ardour7-export -b float, whole process")):
            median, best = statistics.median(rows[what]), min(rows[what])
            print(f"{label:42s} {median:7.2f} s  {args.seconds / median:6.1f}x real time  (best {args.seconds / best:.1f}x)")
            result[what] = {"seconds": [round(s, 3) for s in rows[what]], "rt_factor_median": round(args.seconds / median, 2)}
        result["export_crashes"] = crashes
        if crashes:
            print(f"ardour7-export aborted {len(crashes)} times (run again): {crashes[0]}")
        result["render_vs_export"] = round(statistics.median(rows["render"]) / statistics.median(rows["export"]), 2)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
