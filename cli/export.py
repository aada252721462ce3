"""``sendlearn export FORMAT``: training windows as parquet, webdataset, hdf5, tfrecord or pytorch files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sendlearn.cli.dataset_command import check_data_dir, dataset_parser, task_bars
from sendlearn.cli.signals import interrupted_by_signals

FORMATS = ("parquet", "webdataset", "hdf5", "tfrecord", "pytorch", "tokens")
TOKENIZERS = ("REMI", "TSD", "MIDILike", "Structured", "CPWord", "Octuple", "MMM", "PerTok")  # miditok's


def add_parser(commands: argparse._SubParsersAction, default_data_dir: Path) -> None:
    export = dataset_parser(
        commands, "export", default_data_dir, sessions=True,
        help="write training windows in a format training code reads (docs/export.md)",
        description="One sample per (session, stream, window): the windows `sendlearn sequences` stored (else 30 s "
        "with 5 s overlap), their lossless audio, MIDI events, playhead, automation, features and flags. Flagged "
        "windows are left out unless --include-flagged. Layouts: docs/export.md.")
    export.add_argument("format", choices=FORMATS)
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="an empty or new directory")
    export.add_argument("--include-flagged", action="store_true",
                        help="also windows flagged silent, clipped, degraded, gaps, empty or few_events")
    export.add_argument("--no-features", action="store_true", help="leave features out (no librosa needed)")
    export.add_argument("--window", type=float, metavar="SECONDS",
                        help="cut windows of this length instead of the stored ones")
    export.add_argument("--overlap", type=float, metavar="SECONDS")
    export.add_argument("--json", action="store_true", help="print one JSON object")
    tokens = export.add_argument_group("tokens", "sendlearn export tokens (docs/export.md, \"tokens\")")
    tokens.add_argument("--tokenizer", metavar="NAME", help=f"miditok tokenizer: {'|'.join(TOKENIZERS)}")
    tokens.add_argument("--tokenizer-config", type=Path, metavar="FILE.json",
                        help="miditok TokenizerConfig arguments over Send Learn's defaults (tempos, meters, "
                        "pedals, bends and programs on)")
    tokens.add_argument("--merge-streams", action="store_true",
                        help="one multitrack sequence per window (a track and a program per stream)")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from sendlearn.dataset.errors import UnknownSession
    from sendlearn.dataset.export import export, writer
    from sendlearn.errors import UsageError

    check_data_dir(args.data_dir)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {args.out}: not an empty directory (an export never mixes with other files)")
    writer(args.format)  # a missing library is a MissingExtra naming the export extra
    options = _tokens_options(args)
    interactive = sys.stderr.isatty() and not args.json
    with interrupted_by_signals() as interrupt, task_bars(interactive) as bar:
        task = bar.add_task(f"export {args.format}", total=None)

        def shown(done: int, total: int) -> None:
            interrupt.check()
            bar.update(task, completed=done, total=total)

        try:
            result = export(args.format, args.data_dir, args.out, sessions=args.session,
                            include_flagged=args.include_flagged, with_features=not args.no_features,
                            window=args.window, overlap=args.overlap, progress=shown, **options)
            interrupt.check()
        except UnknownSession as exc:
            raise UsageError(f"--session: {exc}") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:  # SIGINT, SIGTERM, SIGHUP: the writer removed what it had begun
            _remove_contents(args.out)  # a signal lost in a finaliser came as the export was published
            print(f"sendlearn export: stopped; nothing of the {args.format} export is left in {args.out}",
                  file=sys.stderr)
            return 0
    summary = result.as_dict()
    if not result.samples:
        summary["why_empty"] = _why_empty(args, result.skipped_windows)
        print(f"sendlearn export: nothing to export: {summary['why_empty']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{result.samples} samples ({result.audio_seconds / 3600:.3f} h of audio) written to {args.out} as "
          f"{args.format}; {result.skipped_windows} flagged windows left out"
          + ("" if args.include_flagged or not result.skipped_windows else " (--include-flagged takes them)"))
    for path in result.files[:10]:
        print(f"  {path}")
    if len(result.files) > 10:
        print(f"  ... {len(result.files) - 10} more")
    return 0


def _remove_contents(out: Path) -> None:
    """Everything in ``out``, which was empty (or absent) when the export began."""
    import shutil

    for path in out.iterdir() if out.is_dir() else ():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _tokens_options(args: argparse.Namespace) -> dict[str, Any]:
    """The tokens export's options, checked before anything is read: an unknown tokenizer, a config
    file that is not JSON or that miditok refuses, --merge-streams with a tokenizer that cannot."""
    from sendlearn.errors import UsageError

    given = [flag for flag, value in (("--tokenizer", args.tokenizer), ("--tokenizer-config", args.tokenizer_config),
                                      ("--merge-streams", args.merge_streams)) if value]
    if args.format != "tokens":
        if given:
            raise UsageError(f"{given[0]} is for `sendlearn export tokens` only")
        return {}
    if args.tokenizer is None:
        raise UsageError(f"export tokens needs --tokenizer: one of {', '.join(TOKENIZERS)}")
    if args.tokenizer not in TOKENIZERS:
        raise UsageError(f"--tokenizer {args.tokenizer}: unknown; one of {', '.join(TOKENIZERS)}")
    config = None
    if args.tokenizer_config is not None:
        try:
            config = json.loads(args.tokenizer_config.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--tokenizer-config {args.tokenizer_config}: {exc}") from None
        if not isinstance(config, dict):
            raise UsageError(f"--tokenizer-config {args.tokenizer_config}: not a JSON object of TokenizerConfig "
                             "arguments")
    from sendlearn.dataset.export.tokens import build_tokenizer, merges

    try:
        tokenizer = build_tokenizer(args.tokenizer, config)
    except UsageError as exc:
        raise UsageError(f"--tokenizer-config {args.tokenizer_config}: {exc}") from None
    if args.merge_streams and not merges(tokenizer):
        raise UsageError(f"--merge-streams: {args.tokenizer} with this config writes one sequence per track (a "
                         "multitrack sequence needs use_programs and one_token_stream_for_programs on); leave "
                         "--merge-streams out for one sequence per stream")
    return {"tokenizer": args.tokenizer, "tokenizer_config": config, "merge_streams": args.merge_streams}


def _why_empty(args: argparse.Namespace, skipped: int) -> str:
    from sendlearn.dataset import Dataset

    if skipped:
        return f"all {skipped} windows are flagged (--include-flagged takes them; `sendlearn quality` says why)"
    dataset = Dataset(args.data_dir)
    sessions = args.session or dataset.sessions()
    if not sessions:
        return f"{args.data_dir} holds no finished stream"
    lengths = ", ".join(f"{s} {dataset.session_frames(s) / dataset.session_rate(s):.1f} s" for s in sessions)
    return (f"no session is as long as one window ({lengths}); cut shorter ones with `sendlearn sequences "
            f"--window SECONDS --overlap SECONDS` (or --window here)")
