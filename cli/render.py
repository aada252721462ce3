"""``sendlearn render``: MIDI and session files rendered offline through the whole chain (Ardour
sessions: render_ardour.py).

Every input is loaded and checked before anything renders, so bad input (exit 2) never
leaves half a dataset behind. Each track then goes render -> CaptureProcessor -> sink
(``plugin.offline.send``): the store, writing straight into ``--data-dir``, or the link to
``--server`` (``cli.sinks``). A directory (other than an Ardour session's), ``--workers``,
``--scheduler`` or Ardour sessions beside other inputs make it a batch (render_batch.py). ``sendlearn demo`` (demo.py) renders its session through here too.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from sendlearn.cli.host_logs import LOGS, HostOutput, printed
from sendlearn.cli.output import print_table
from sendlearn.cli.progress import ProgressView
from sendlearn.cli.render_report import attach_paths, report, show_progress
from sendlearn.cli.sinks import choose_sink
from sendlearn.errors import MissingExtra, UsageError
from sendlearn.plugin.offline.send import Outcome, capture_session
from sendlearn.plugin.session.inputs import SUFFIXES, LoadedInput, load_input
from sendlearn.transport.link import ServerDown, check_server
from sendlearn.transport.tls import client_context

SENDER = "sendlearn render (store)"  # stream.json's ``sender`` for what this command writes to --data-dir

SPEC_FORMS = [
    ("faust:NAME", "a bundled Faust instrument (below)"),
    ("faust:FILE.dsp", "your own polyphonic Faust file (uses freq, gain, gate)"),
    ("plugin:PATH", "a VST2 .so or a .vst3 that DawDreamer loads"),
    ("soundfont:PATH[:PROGRAM]", "a soundfont through FluidSynth; PROGRAM forces one GM program"),
    ("gm", "General MIDI through FluidSynth, one stream per MIDI channel"),
]
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")


# --- the command ----------------------------------------------------------------------------


def run_render(args: argparse.Namespace) -> int:
    if args.list_instruments:
        return list_instruments(args.json)
    if not args.inputs:
        raise UsageError("give one or more INPUT files (.mid or .toml), or --list-instruments")
    from sendlearn.cli.render_batch import is_batch, run_batch_command
    from sendlearn.plugin.session.inputs import is_ardour_path

    ardour = [is_ardour_path(p) for p in args.inputs]
    if is_batch(args) or (any(ardour) and not all(ardour)):
        return run_batch_command(args)  # the renders run in worker processes, each input on its own
    if all(ardour):  # Ardour sessions (folders or .ardour files): Ardour renders them
        from sendlearn.cli.render_ardour import run_ardour_render

        return run_ardour_render(args)
    loaded = load_inputs(args.inputs, instrument=args.instrument, sample_rate=args.sample_rate,
                         block_size=args.block_size)
    # a wss:// --server signed by a CA of its own
    context = client_context(args.ca_file)
    if args.server is not None:
        try:
            check_server(args.server, context)
        except ServerDown as exc:
            return _fail_early(args, str(exc))
    data_dir = None if args.server is not None else args.data_dir.resolve()
    if args.replace:
        if data_dir is None:
            raise UsageError("--replace works on a --data-dir; a --server keeps what it has")
        from sendlearn.store.sink import remove_sessions

        remove_sessions(data_dir, [item.session.name for item in loaded])
    with host_output(args) as host:
        outcomes, elapsed = render_all(loaded, args.server, data_dir, args.token, show_progress(args), context,
                                       host=host)
        report(args, outcomes, data_dir, elapsed)
    return 0 if all(o.ok for o in outcomes) else 1


def load_inputs(paths: Sequence[Path], *, instrument: str | None, sample_rate: int | None,
                block_size: int | None) -> list[LoadedInput]:
    """Each INPUT as a session with its timelines; any problem is a UsageError naming the file
    (a SessionError is one)."""
    if instrument is not None:
        from sendlearn.plugin.session.instrument import parse_instrument

        try:
            parse_instrument(instrument)
        except ValueError as exc:
            raise UsageError(f"--instrument {instrument}: {exc}") from None
        if not any(p.suffix.lower() == ".mid" for p in paths):
            raise UsageError("--instrument applies to .mid inputs; a session file names its own instruments")
    loaded: list[LoadedInput] = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            hint = (" (a recording goes in a session file as a track with audio = \"FILE\": docs/session.md)"
                    if suffix in AUDIO_SUFFIXES else "")
            raise UsageError(f"{path}: not a .mid MIDI file or a .toml session file{hint}")
        if not path.is_file():
            raise UsageError(f"{path}: {'no such file' if not path.exists() else 'not a file'}")
        loaded.append(load_input(path, instrument=instrument, sample_rate=sample_rate, block_size=block_size))
    _check_unique(loaded)
    _check_hosts(loaded)
    return loaded


def _check_hosts(loaded: list[LoadedInput]) -> None:
    # A receiver-only install has no DawDreamer: say so instead of failing every track.
    from importlib.util import find_spec

    for item in loaded:
        if any(t.host == "dawdreamer" for t in item.session.tracks) and find_spec("dawdreamer") is None:
            raise MissingExtra("dawdreamer", f"{item.path}: rendering")


def _check_unique(loaded: list[LoadedInput]) -> None:
    # Two inputs writing the same session/track would overwrite each other's stream.
    seen: dict[tuple[str, str], Path] = {}
    for item in loaded:
        for track in item.session.tracks:
            key = (item.session.name, track.name)
            if key in seen:
                raise UsageError(f"{item.path}: session {key[0]!r} track {key[1]!r} is also in {seen[key]}; "
                                 "each stream must come from one input (rename a file or a session)")
            seen[key] = item.path


def host_output(args: argparse.Namespace) -> HostOutput:
    """Where the hosts' own prints go for this command: a log per input under the data dir
    (``--server`` too: ``--data-dir``'s default), or stderr with ``--verbose``."""
    return HostOutput(None if args.verbose else args.data_dir.resolve() / LOGS)


def render_all(loaded: list[LoadedInput], server: str | None, data_dir: Path | None, token: str | None,
               progress: bool, ssl_context: ssl.SSLContext | None = None,
               writer: str = SENDER, host: HostOutput | None = None) -> tuple[list[Outcome], float]:
    """Every input through ``capture_session``, to ``server`` or straight into ``data_dir``;
    the outcomes and the seconds it took. ``writer`` names the command in stream.json; ``host``
    (entered) puts each input's host prints in its log, named in its outcomes' ``host_log``."""
    started = time.monotonic()
    sink = choose_sink(server, data_dir, writer=writer, token=token, ssl_context=ssl_context)
    outcomes: list[Outcome] = []
    with ProgressView(len(loaded), progress) as view:
        for item in loaded:
            with host.input(item.session.name) if host is not None else nullcontext() as log:
                done = capture_session(item.session, sink, progress=view.for_session(item.session.name),
                                       input_name=str(item.path), timelines=item.timelines)
            for outcome in done:
                outcome.extra["host_log"] = printed(log)
            outcomes += done
            view.input_done()
    attach_paths(outcomes, data_dir)
    return outcomes, time.monotonic() - started


def _fail_early(args: argparse.Namespace, reason: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "data_dir": None, "server": args.server, "elapsed_seconds": 0.0,
                          "streams": [], "failures": [{"input": None, "session": None, "stream": None,
                                                       "reason": reason}]}))
    print(f"sendlearn render: {reason}", file=sys.stderr)
    return 1


def list_instruments(as_json: bool) -> int:
    from sendlearn.plugin.session.instrument import DEFAULT_INSTRUMENT
    from sendlearn.plugin.session.instrument import list_instruments as bundled

    rows = bundled()
    if as_json:
        print(json.dumps({"default": DEFAULT_INSTRUMENT, "instruments": [{"spec": s, "description": d} for s, d in rows],
                          "spec_forms": [{"spec": s, "description": d} for s, d in SPEC_FORMS]}))
        return 0
    print_table("--instrument SPEC forms", ["spec", "what"], [list(r) for r in SPEC_FORMS])
    print_table(f"bundled instruments (default {DEFAULT_INSTRUMENT})", ["spec", "what"], [list(r) for r in rows])
    return 0
