"""``sendlearn sequences`` and ``sendlearn quality``: training windows, their features and flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sendlearn.cli.dataset_command import check_data_dir, dataset_parser, task_bars
from sendlearn.cli.signals import interrupted_by_signals


def add_parsers(commands: argparse._SubParsersAction, default_data_dir: Path) -> None:
    sequences = dataset_parser(
        commands, "sequences", default_data_dir, sessions=True,
        help="cut sessions into training windows with features and quality flags",
        description="Cut each session into windows on its clock (window k starts at k*(window-overlap) seconds; "
        "the last one, covering the session's tail or the whole of a shorter session, is padded with silence to the "
        "full length and says how many frames are real: frames_valid), compute every stream's features per window and flag windows that are silent, "
        "clipped, degraded, have stolen notes or too few events. Stored under DATA_DIR/sequences/ (docs/dataset.md).")
    sequences.add_argument("--window", type=float, default=30.0, metavar="SECONDS", help="window length (default 30)")
    sequences.add_argument("--overlap", type=float, default=5.0, metavar="SECONDS",
                           help="seconds shared by neighbouring windows (default 5)")
    sequences.add_argument("--min-events", type=int, default=10, metavar="N",
                           help="windows with fewer MIDI events (all streams) are flagged few_events (default 10)")
    sequences.add_argument("--tail", choices=("pad", "drop"), default="pad",
                           help="pad: a last window covers the tail, padded with silence (default); "
                           "drop: whole windows only, a session shorter than one window yields none")
    sequences.add_argument("--split", default="80/10/10", metavar="TRAIN/VALIDATION/TEST",
                           help="percentages of sessions in train, validation and test, summing to 100 (default "
                           "80/10/10); a session's split comes from a hash of its id, so adding sessions never "
                           "moves one, and all its windows and streams are in it")
    sequences.add_argument("--split-by", metavar="KEY",
                           help="group sessions by the session fact KEY (stream.json meta, e.g. performer or piece) "
                           "instead of their id; sessions without it fall back to their id")
    sequences.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                           help="processes computing windows (default: one per core)")
    sequences.add_argument("--json", action="store_true", help="print one JSON object")
    sequences.set_defaults(run=run_sequences)

    quality = dataset_parser(
        commands, "quality", default_data_dir,
        help="measure every stream and window; write sequences/quality.parquet",
        description="Silence, clipping (flat-topped runs in float audio, full-scale runs in 16/24-bit audio), "
        "level over full scale (reported, not flagged), peak and RMS, note density, polyphony, velocity, pitch and tempo ranges, "
        "complexity, degraded audio, gaps and MIDI-to-audio alignment, per stream and per window (the windows "
        "`sendlearn sequences` cut, else 30 s with 5 s overlap).")
    quality.add_argument("--json", action="store_true", help="print one JSON object")
    quality.set_defaults(run=run_quality)


def _open(args: argparse.Namespace) -> Any:
    from sendlearn.dataset import Dataset

    return Dataset(check_data_dir(args.data_dir))


def _interactive(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty() and not args.json


def run_sequences(args: argparse.Namespace) -> int:
    from sendlearn.cli.output import print_table
    from sendlearn.dataset.sequences import build_sequences
    from sendlearn.dataset.splits import SplitSpec
    from sendlearn.dataset.windows import WindowSpec
    from sendlearn.errors import UsageError

    dataset = _open(args)
    sessions = args.session or dataset.sessions()
    unknown = sorted(set(sessions) - set(dataset.sessions()))
    if unknown:
        raise UsageError(f"--session {unknown[0]}: no such session in {args.data_dir}")
    try:
        spec = WindowSpec(args.window, args.overlap, args.min_events, args.tail)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        split = SplitSpec.parse(args.split, args.split_by)
    except ValueError as exc:
        raise UsageError(f"--split: {exc}") from None
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    results = []
    with interrupted_by_signals() as interrupt, task_bars(_interactive(args)) as bar:
        for session in sessions:
            task = bar.add_task(session, total=None)

            def shown(done: int, total: int, task: Any = task) -> None:
                interrupt.check()
                bar.update(task, completed=done, total=total)

            try:
                results.append(build_sequences(args.data_dir, session, spec, args.workers, shown, split))
            except ValueError as exc:  # streams of one session at different rates: no shared clock
                raise UsageError(str(exc)) from None
            except KeyboardInterrupt:  # SIGINT, SIGTERM or SIGHUP: what is written stays, a rerun resumes
                print(f"sendlearn sequences: stopped in session {session}; run it again to resume", file=sys.stderr)
                return 0
    summary = [_session_summary(dataset, r) for r in results]
    fallback = sum(r.split.fallback for r in results)
    if split.by is not None and results and fallback == len(results):
        print(f"sendlearn sequences: warning: no session has the fact {split.by!r} (stream.json meta); "
              f"splitting by session id instead", file=sys.stderr)
    splits = {"spec": split.text, "by": split.by, "fallback_sessions": fallback if split.by else 0,
              "sessions": {name: sum(s["split"] == name for s in summary) for name in ("train", "validation", "test")}}
    if args.json:
        print(json.dumps({"data_dir": str(args.data_dir), "window": spec.window, "overlap": spec.overlap,
                          "min_events": spec.min_events, "tail": spec.tail, "split": splits, "sessions": summary}))
        return 0
    print_table(f"{args.data_dir}: windows of {spec.window:g} s, {spec.overlap:g} s overlap, split {split.text}"
                + (f" by {split.by}" if split.by else ""),
                ["session", "split", "windows", "flagged", "flags", "computed", "path"],
                [[s["session"], s["split"], s["windows"], s["flagged"],
                  ", ".join(f"{k} {v}" for k, v in s["flags"].items()) or "-",
                  s["computed"], s["path"]] for s in summary])
    if split.by is not None and 0 < fallback < len(results):
        print(f"{fallback} of {len(results)} sessions have no {split.by!r}: split by their id")
    for s in summary:
        if s["windows"] == 0:
            seconds = dataset.session_frames(s["session"]) / dataset.session_rate(s["session"])
            print(f"{s['session']} is {seconds:.1f} s long, shorter than one {spec.window:g} s window "
                  f"(--tail pad keeps it, padded; --window sets the length)")
    return 0


def _session_summary(dataset: Any, result: Any) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for window in dataset.windows(result.session):
        for flag in window.flags:
            counts[flag] = counts.get(flag, 0) + 1
    return {"session": result.session, "split": result.split.split, "split_key": result.split.key,
            "split_fallback": result.split.fallback, "windows": result.windows, "flagged": result.flagged,
            "flags": dict(sorted(counts.items())), "computed": result.computed,
            "audio_seconds": result.audio_seconds, "path": str(result.path)}


def run_quality(args: argparse.Namespace) -> int:
    from sendlearn.cli.output import print_table
    from sendlearn.dataset.sequences import write_quality

    dataset = _open(args)
    path, rows = write_quality(dataset)
    streams = [r for r in rows if r["window"] is None]
    windows = {(r["session"], r["window"]): r["window_flags"] for r in rows if r["window"] is not None}
    flagged = {key: flags for key, flags in windows.items() if flags}
    if args.json:
        print(json.dumps({"data_dir": str(args.data_dir), "path": str(path), "streams": streams,
                          "windows": len(windows), "flagged_windows": [
                              {"session": s, "window": w, "flags": f} for (s, w), f in sorted(flagged.items())]}))
        return 0
    print_table(f"{args.data_dir}: {len(streams)} streams, {len(windows)} windows ({len(flagged)} flagged)",
                ["stream", "s", "peak", "silent", "clip", ">0dBFS", "n/s", "poly", "cx", "lag", "flags"],
                [[f"{r['session']}/{r['stream']}", f"{r['seconds']:.1f}", f"{r['peak']:.2f}",
                  f"{r['silence_ratio']:.0%}", f"{r['clip_ratio']:.1%}", f"{r['over_full_scale_ratio']:.2%}",
                  f"{r['note_density']:.1f}",
                  r["polyphony_max"], f"{r['complexity']:.2f}",
                  "-" if r["alignment_median"] is None else f"{r['alignment_median']:g}",
                  ", ".join(r["flags"]) or "-"] for r in streams])
    print(f"per stream and window: {path}")
    return 0
