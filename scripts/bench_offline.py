"""Offline render through the whole chain against the bare render of the same session.

    .venv/bin/python scripts/bench_offline.py [--runs 5] [--session plugin/demo/session.toml]
    .venv/bin/python scripts/bench_offline.py --processes --minutes 20 [--runs 3]

``--processes``: whole processes, wall time, interleaved: ``sendlearn render song.mid --data-dir D``
of a generated MINUTES-long MIDI file (the default instrument) against a bare process that
renders the same notes with the same instrument through DawDreamer and writes a float WAV
(soundfile), and nothing else. Aim: render <= 1.2x bare (issue 21), judged by the median of
each run's render/bare pair (the two ran back to back), which drift in the machine's speed
changes least; best-of and median of each mode are printed beside it.

bare:  what rendering the session's audio costs anyway: per track, the tempo map, the
       instrument render (DawDreamer, ``plugin.render.render_stream``), effects (pedalboard,
       the whole stream in one call) and gain, and the render check. Nothing is captured,
       sent or written.
chain: ``sendlearn render``'s own path (``sendlearn.plugin.offline.send.capture_session``): the same
       render, then CaptureProcessor -> hand-off -> store sink -> dataset files (fsynced, renamed
       into place).

The modes run interleaved (the order flips every run, after one warm-up of each) so drift in
machine load hits both. Memory: one run per mode in a fresh subprocess, peak RSS (VmHWM)
minus RSS once every library is imported; tracemalloc would miss DawDreamer's and
libsndfile's C++ allocations, which are most of it. Target: chain <= 1.5x bare (the aim for
"render + capture + send + receive + write, vs the bare render"; README.md's Benchmarks table
keeps the last figure). Last line: one JSON object (the hosts' own prints go to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sendlearn.cli.host_logs import HostOutput
from sendlearn.plugin.chain.feed import apply_gain, automation_curve, automation_points, check_render
from sendlearn.plugin.offline.dawdreamer import render_stream
from sendlearn.plugin.offline.render import stream_parts
from sendlearn.plugin.session.reader import Session, load_session
from sendlearn.plugin.session.timeline import Timeline

DEMO = Path(__file__).resolve().parent.parent / "plugin" / "demo" / "session.toml"
TARGET = 1.5


def apply_effects(audio: np.ndarray, sample_rate: int, effects: Sequence[tuple[str, Mapping[str, object]]]) -> np.ndarray:
    """pedalboard's built-in effects, in order, over the whole stream in one call; length kept."""
    if not effects:
        return audio
    import pedalboard

    board = pedalboard.Pedalboard([getattr(pedalboard, name)(**options) for name, options in effects])
    out = np.ascontiguousarray(board(audio, sample_rate, reset=True), dtype=np.float32)
    if out.shape != audio.shape:
        raise RuntimeError(f"effects changed the audio's shape from {audio.shape} to {out.shape}")
    return out


def bare(session: Session) -> float:
    """Render every stream's audio as render_session does, and stop there; returns seconds of audio."""
    audio_seconds = 0.0
    for track in session.tracks:
        if track.recorded:  # a recording: read it and run its chain once (two streams: dry and wet)
            from sendlearn.plugin.chain.recording import read_recording

            audio = read_recording(track)
            apply_gain(apply_effects(audio, session.sample_rate, [(e.name, dict(e.options)) for e in track.effects]),
                       track.gain_db)
            audio_seconds += 2 * audio.shape[1] / session.sample_rate
            continue
        timeline = Timeline(track.midi, session.sample_rate)
        for part in stream_parts(track, timeline):
            frames = timeline.length
            params = automation_points(track.instrument_lanes(), timeline, frames)
            curves = {name: automation_curve(points, frames) for name, points in params.items()}
            audio = render_stream(track.instrument, part.events, frames, session.sample_rate, timeline=timeline,
                                  automation=curves)
            audio = apply_gain(apply_effects(audio, session.sample_rate,
                                             [(e.name, dict(e.options)) for e in track.effects]), track.gain_db)
            problem = check_render(audio, frames)
            if problem is not None:
                raise RuntimeError(f"{track.name}: {problem}")
            audio_seconds += frames / session.sample_rate
    return audio_seconds


def chain(session: Session, data_dir: Path) -> float:
    """The CLI's path into ``data_dir``; returns seconds of audio written."""
    from sendlearn.cli.sinks import choose_sink
    from sendlearn.plugin.offline.send import capture_session

    sink = choose_sink(None, data_dir, writer="bench_offline")  # as render_all does for --data-dir
    outcomes = capture_session(session, sink)
    failed = [f"{o.stream}: {o.reason}" for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError("; ".join(failed))
    return sum(o.seconds for o in outcomes)


def timed(mode: str, session: Session, scratch: Path, run: int) -> tuple[float, float]:
    started = time.perf_counter()
    audio = bare(session) if mode == "bare" else chain(session, scratch / f"run{run}")
    return time.perf_counter() - started, audio


# --- memory, one mode per fresh process ----------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(mode: str, session_path: Path) -> None:
    """Import everything either mode loads, note RSS, run once, report the peak above it."""
    import dawdreamer  # noqa: F401  (the render imports these lazily: load them before the baseline)
    import pedalboard  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import soundfile  # noqa: F401

    import sendlearn.plugin.offline.send  # noqa: F401
    import sendlearn.store.sink  # noqa: F401

    session = load_session(session_path)
    baseline = _status_kib("VmRSS")
    with HostOutput(None), tempfile.TemporaryDirectory(prefix="sendlearn-bench-") as tmp:
        _, audio = timed(mode, session, Path(tmp), 0)
    peak = _status_kib("VmHWM")
    print(json.dumps({"mode": mode, "baseline_kib": baseline, "peak_kib": peak, "audio_seconds": audio}))


def memory(mode: str, session_path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--session", str(session_path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- whole processes: sendlearn render vs a bare DawDreamer render + WAV write --------------

PROCESS_TARGET = 1.2


def write_long_midi(path: Path, minutes: float) -> int:
    """A MINUTES-long piano part at 120 bpm (chords and a melody, 4 notes a beat); its note count."""
    import mido

    tpb, notes = 480, 0
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)])
    beats = int(minutes * 120)
    pending = 0
    for beat in range(beats):
        chord = [48 + (beat // 4) % 12, 55 + (beat // 4) % 12, 60 + (beat * 7) % 12 + 12]
        for i, note in enumerate(chord):
            track.append(mido.Message("note_on", note=note, velocity=70 + i * 10, time=pending if i == 0 else 0))
            pending = 0
        track.append(mido.Message("note_off", note=chord[0], velocity=0, time=tpb * 3 // 4))
        for note in chord[1:]:
            track.append(mido.Message("note_off", note=note, velocity=0, time=0))
        pending = tpb // 4
        notes += len(chord)
    midi = mido.MidiFile(type=0, ticks_per_beat=tpb)
    midi.tracks.append(track)
    midi.save(path)
    return notes


def bare_file(midi: Path, wav: Path) -> None:
    """The bare process: the same notes, the same instrument, through DawDreamer, to a float WAV."""
    import soundfile

    from sendlearn.plugin.offline.dawdreamer import render_stream
    from sendlearn.plugin.session.inputs import load_input

    loaded = load_input(midi)  # the default instrument, as ``sendlearn render song.mid`` picks it
    (track,) = loaded.session.tracks
    timeline = loaded.timelines[track.name] if track.name in loaded.timelines else Timeline(track.midi, 48000)
    (part,) = stream_parts(track, timeline)
    rate = loaded.session.sample_rate
    audio = render_stream(track.instrument, part.events, timeline.length, rate, timeline=timeline)
    soundfile.write(wav, audio.T, rate, subtype="FLOAT")


def run_process(mode: str, midi: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one whole process. CPU time is what a
    busy machine changes least: other work on the cores stretches the wall time, not it."""
    out.mkdir(parents=True, exist_ok=True)
    if mode == "bare":
        command = [sys.executable, __file__, "--bare-file", str(midi), str(out / "bare.wav")]
    else:
        command = [sys.executable, "-m", "sendlearn", "render", str(midi), "--data-dir", str(out / "data"), "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime


def measure_processes(args: argparse.Namespace) -> None:
    times: dict[str, list[float]] = {"bare": [], "render": []}
    cpu: dict[str, list[float]] = {"bare": [], "render": []}
    with tempfile.TemporaryDirectory(prefix="sendlearn-bench-") as tmp:
        scratch = Path(tmp)
        midi = scratch / "song.mid"
        notes = write_long_midi(midi, args.minutes)
        for warm in ("bare", "render"):  # page cache, Faust's first compile
            run_process(warm, midi, scratch / f"warm-{warm}")
        for run in range(args.runs):
            for mode in (("bare", "render") if run % 2 == 0 else ("render", "bare")):
                wall, used = run_process(mode, midi, scratch / f"{mode}-{run}")
                times[mode].append(wall)
                cpu[mode].append(used)
    best = {mode: min(t) for mode, t in times.items()}
    median = {mode: statistics.median(t) for mode, t in times.items()}
    print(f"{'process':<10}{'runs (s)':<40}{'best':>8}{'median':>8}")
    for mode in ("bare", "render"):
        print(f"{mode:<10}{' '.join(f'{t:.2f}' for t in times[mode]):<40}{best[mode]:>8.2f}{median[mode]:>8.2f}")
    ratio = best["render"] / best["bare"]
    cpu_ratio = min(cpu["render"]) / min(cpu["bare"])
    # each run's two processes ran back to back: their ratio is what drift in the machine's speed
    # (this VM's bare render took 16 to 24 s within ten minutes) changes least
    paired = [render / bare for render, bare in zip(times["render"], times["bare"], strict=True)]
    paired_median = statistics.median(paired)
    print(f"{args.minutes:g} min of MIDI ({notes} notes): render/bare {paired_median:.2f}x median of the runs' "
          f"pairs ({' '.join(f'{r:.2f}' for r in paired)}), {ratio:.2f}x best-of, "
          f"{median['render'] / median['bare']:.2f}x median (target <= {PROCESS_TARGET}x); "
          f"CPU seconds {min(cpu['bare']):.2f} bare, {min(cpu['render']):.2f} render: {cpu_ratio:.2f}x")
    print(json.dumps({
        "bench": "offline_processes", "minutes": args.minutes, "notes": notes, "runs": args.runs,
        "bare_seconds": [round(t, 3) for t in times["bare"]], "render_seconds": [round(t, 3) for t in times["render"]],
        "paired_ratios": [round(r, 3) for r in paired], "paired_median_ratio": round(paired_median, 3),
        "best_ratio": round(ratio, 3), "median_ratio": round(median["render"] / median["bare"], 3),
        "bare_cpu_seconds": [round(t, 3) for t in cpu["bare"]],
        "render_cpu_seconds": [round(t, 3) for t in cpu["render"]], "best_cpu_ratio": round(cpu_ratio, 3),
        "target_ratio": PROCESS_TARGET, "within_target": paired_median <= PROCESS_TARGET,
        "bare": "DawDreamer render of the notes (default instrument) + soundfile float WAV, one process",
        "render": "sendlearn render song.mid --data-dir D --json, one process",
    }))


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--session", type=Path, default=DEMO)
    parser.add_argument("--processes", action="store_true", help="whole processes on a long MIDI file")
    parser.add_argument("--minutes", type=float, default=20.0, help="--processes: the MIDI file's length")
    parser.add_argument("--child", choices=["bare", "chain"], help=argparse.SUPPRESS)
    parser.add_argument("--bare-file", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_file:
        with HostOutput(None):
            bare_file(*args.bare_file)
        return
    if args.processes:
        measure_processes(args)
        return
    if args.child:
        child(args.child, args.session)
        return
    with HostOutput(None):
        measure(args)


def measure(args: argparse.Namespace) -> None:

    session = load_session(args.session)
    times: dict[str, list[float]] = {"bare": [], "chain": []}
    with tempfile.TemporaryDirectory(prefix="sendlearn-bench-") as tmp:
        scratch = Path(tmp)
        timed("bare", session, scratch, -1)  # warm-up: imports, first Faust compile, page cache
        _, audio_seconds = timed("chain", session, scratch, -2)
        for run in range(args.runs):
            order = ("bare", "chain") if run % 2 == 0 else ("chain", "bare")
            line = []
            for mode in order:
                seconds, _ = timed(mode, session, scratch, run)
                times[mode].append(seconds)
                line.append(f"{mode} {seconds:.3f} s")
            print(f"run {run + 1}: " + ", ".join(line) + f"  ratio {times['chain'][-1] / times['bare'][-1]:.2f}")

    ratios = [c / b for b, c in zip(times["bare"], times["chain"], strict=True)]
    median_bare, median_chain = statistics.median(times["bare"]), statistics.median(times["chain"])
    print(f"{len(session.tracks)} tracks, {audio_seconds:.1f} s of stream audio; median bare {median_bare:.3f} s, "
          f"chain {median_chain:.3f} s; median ratio chain/bare {statistics.median(ratios):.2f}x (target <= {TARGET}x)")

    mem = {mode: memory(mode, args.session) for mode in ("bare", "chain")}
    minutes = audio_seconds / 60
    peak_mib = {mode: (m["peak_kib"] - m["baseline_kib"]) / 1024 for mode, m in mem.items()}
    for mode in ("bare", "chain"):
        print(f"memory {mode}: peak {peak_mib[mode]:.1f} MiB above the imported baseline "
              f"({mem[mode]['baseline_kib'] / 1024:.0f} MiB), {peak_mib[mode] / minutes:.1f} MiB per minute of audio")
    print(json.dumps({
        "bench": "offline",
        "session": str(args.session),
        "tracks": len(session.tracks),
        "audio_seconds": round(audio_seconds, 3),
        "runs": args.runs,
        "bare_seconds": [round(t, 4) for t in times["bare"]],
        "chain_seconds": [round(t, 4) for t in times["chain"]],
        "median_bare_seconds": round(median_bare, 4),
        "median_chain_seconds": round(median_chain, 4),
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_of_medians": round(median_chain / median_bare, 3),
        "target_ratio": TARGET,
        "within_target": statistics.median(ratios) <= TARGET,
        "peak_mib": {mode: round(v, 1) for mode, v in peak_mib.items()},
        "peak_mib_per_audio_minute": {mode: round(v / minutes, 1) for mode, v in peak_mib.items()},
        "memory_method": "VmHWM minus VmRSS after imports, one run per mode in a fresh subprocess; "
                         "audio minutes = sum of the streams' lengths",
    }))


if __name__ == "__main__":
    main()
