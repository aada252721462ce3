"""``sendlearn report``: a self-contained HTML page about a data directory (and its JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction, default_data_dir: Path) -> None:
    report = commands.add_parser(
        "report", help="write a self-contained HTML report of a data directory (and its JSON beside it)",
        description="A corpus at a glance: hours per tempo (quarter notes), sessions per meter, hours per session, "
        "note density, one box per feature over the measured windows, quality histograms and windows per flag; a "
        "table of every session; streams and tempo over time for a few sessions chosen evenly; one window's piano "
        "roll over its waveform with detected onsets. Plots embedded as PNG data URIs.")
    report.add_argument("--data-dir", type=Path, default=default_data_dir, metavar="DIR")
    report.add_argument("--out", type=Path, default=Path("report.html"), metavar="FILE",
                        help="the HTML file (default report.html); FILE with .json is written beside it")
    report.add_argument("--max-windows", type=int, default=200, metavar="N",
                        help="windows measured for the histograms, evenly spread (default 200)")
    report.add_argument("--max-sessions", type=int, default=12, metavar="N",
                        help="sessions shown in detail (their streams, tempo and meter), evenly chosen (default 12)")
    report.add_argument("--json", action="store_true", help="print one JSON object (paths and counts)")
    report.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sendlearn.cli.signals import interrupted_by_signals
    from sendlearn.errors import UsageError

    if not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such directory")
    if args.max_windows < 1:
        raise UsageError("--max-windows must be at least 1")
    if args.max_sessions < 1:
        raise UsageError("--max-sessions must be at least 1")
    from sendlearn.dataset.report import build_report  # without the export extra: a MissingExtra (main)
    interactive = sys.stderr.isatty() and not args.json
    with interrupted_by_signals(), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                        disable=not interactive) as bar:
        task = bar.add_task("measuring windows", total=None)
        try:
            report = build_report(args.data_dir, args.out, args.max_windows,
                                  lambda done, total: bar.update(task, completed=done, total=total),
                                  max_sessions=args.max_sessions)
        except KeyboardInterrupt:
            print("sendlearn report: stopped; no report written", file=sys.stderr)
            return 0
    summary = {"html": str(args.out), "json": str(args.out.with_suffix(".json")), "bytes": args.out.stat().st_size,
               "sessions": len(report["sessions"]), "sessions_detailed": len(report["sessions_detailed"]),
               "streams": len(report["streams"]),
               "windows": report["windows"], "windows_measured": report["windows_measured"],
               "images": report["images"], "splits": report["splits"]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"report of {len(report['sessions'])} sessions ({len(report['sessions_detailed'])} in detail), "
              f"{report['windows']} windows ({report['windows_measured']} measured): {args.out}, "
              f"{summary['bytes'] / 1e6:.1f} MB (and {summary['json']})")
        for name, split in report["splits"].items():
            print(f"  {name}: {split['hours']:.3f} h, {split['windows']} windows, {split['sessions']} sessions")
    return 0
