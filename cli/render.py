"""``sendlearn render`` and ``sendlearn demo``: sessions rendered offline through the whole chain.

Every input is loaded and checked before anything renders, so bad input (exit 2) never
leaves half a dataset behind. Each track then goes render -> CaptureProcessor -> Sender ->
websocket -> receiver -> dataset: the same path a live plugin's blocks take, so what an
offline render proves (alignment, determinism) holds for the data a user gets.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sendlearn.cli import print_table
from sendlearn.errors import MissingExtra, SendLearnError, UsageError
from sendlearn.plugin.offline import Progress, TrackResult, render_session
from sendlearn.plugin.session import Session, SessionError, load_session, session_from_midi
from sendlearn.plugin.timeline import Timeline

# The in-process receiver ACKs after each commit, and a sender says BYE only once every block
# is ACKed: at the service's 0.25 s each stream idles ~0.25 s at its end, longer than the
# stream's own send (0.15 s for the demo's 24 s tracks). A local receiver commits more often.
LOCAL_COMMIT_INTERVAL = 0.05

SPEC_FORMS = [
    ("faust:NAME", "a bundled Faust instrument (below)"),
    ("faust:FILE.dsp", "your own polyphonic Faust file (uses freq, gain, gate)"),
    ("plugin:PATH", "a VST2 .so or a .vst3 that DawDreamer loads"),
    ("soundfont:PATH[:PROGRAM]", "a soundfont through FluidSynth; PROGRAM forces one GM program"),
    ("gm", "General MIDI through FluidSynth, one stream per MIDI channel"),
]


@dataclass
class Outcome:
    """One stream's fate: the render's figures, then what the link made of it."""

    input: str
    session: str
    track: str
    stream: str
    host: str
    seconds: float
    frames: int
    blocks: int
    events: int
    ok: bool
    reason: str | None = None
    lag: int | None = None  # FluidSynth's onset lag in frames; None for sample-exact hosts
    bytes_sent: int = 0
    path: str | None = None  # the stream's folder, when we know the data directory
    extra: dict[str, Any] = field(default_factory=dict)


# --- loading: all of it before any render -------------------------------------------------


def load_inputs(paths: Sequence[Path], *, instrument: str | None, sample_rate: int | None,
                block_size: int | None) -> list[tuple[Path, Session]]:
    """Each INPUT as a session; any problem is a UsageError naming the file."""
    if instrument is not None:
        from sendlearn.plugin.instrument import parse_instrument

        try:
            parse_instrument(instrument)
        except ValueError as exc:
            raise UsageError(f"--instrument {instrument}: {exc}") from None
        if not any(p.suffix.lower() == ".mid" for p in paths):
            raise UsageError("--instrument applies to .mid inputs; a session file names its own instruments")
    loaded: list[tuple[Path, Session]] = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix not in (".mid", ".midi", ".toml"):
            hint = (" (a recording goes in a session file as a track with audio = \"FILE\": docs/session.md)"
                    if suffix in (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3") else "")
            raise UsageError(f"{path}: not a .mid MIDI file or a .toml session file{hint}")
        if not path.is_file():
            raise UsageError(f"{path}: {'no such file' if not path.exists() else 'not a file'}")
        try:
            if suffix == ".toml":
                session = load_session(path, sample_rate=sample_rate, block_size=block_size)
            else:
                session = session_from_midi(path, instrument or _default_instrument(),
                                            sample_rate=sample_rate or 48000, block_size=block_size or 512)
        except SessionError as exc:
            raise UsageError(str(exc)) from None
        _check_midi_files(path, session)
        loaded.append((path, session))
    _check_unique(loaded)
    _check_hosts(loaded)
    return loaded


def _check_hosts(loaded: list[tuple[Path, Session]]) -> None:
    # A receiver-only install has no DawDreamer: say so instead of failing every track.
    from importlib.util import find_spec

    for path, session in loaded:
        if any(t.host == "dawdreamer" for t in session.tracks) and find_spec("dawdreamer") is None:
            raise MissingExtra("dawdreamer", f"{path}: rendering")


def _default_instrument() -> str:
    from sendlearn.plugin.instrument import DEFAULT_INSTRUMENT

    return DEFAULT_INSTRUMENT


def _check_midi_files(path: Path, session: Session) -> None:
    # A MIDI file mido cannot read is bad input (exit 2), not a failed render (exit 1).
    for index, track in enumerate(session.tracks):
        if track.midi is None:
            continue
        try:
            Timeline(track.midi, session.sample_rate)
        except (OSError, EOFError, ValueError, KeyError) as exc:
            where = "" if session.path is None else f"track[{index}].midi: "
            why = str(exc) or type(exc).__name__  # mido raises EOFError() with no message for a short file
            raise UsageError(f"{path}: {where}{track.midi} is not a readable MIDI file ({why})") from None


def _check_unique(loaded: list[tuple[Path, Session]]) -> None:
    # Two inputs writing the same session/track would overwrite each other's stream.
    seen: dict[tuple[str, str], Path] = {}
    for path, session in loaded:
        for track in session.tracks:
            key = (session.name, track.name)
            if key in seen:
                raise UsageError(f"{path}: session {key[0]!r} track {key[1]!r} is also in {seen[key]}; "
                                 "each stream must come from one input (rename a file or a session)")
            seen[key] = path


# --- the chain ----------------------------------------------------------------------------


def capture_session(session: Session, url: str, *, token: str | None = None, progress: Progress | None = None,
                    input_name: str = "", compression_level: int = 3,
                    ssl_context: ssl.SSLContext | None = None) -> list[Outcome]:
    """Render ``session`` and stream every track to the receiver at ``url``.

    A stream counts as good only when the render passed its checks and the receiver has
    acknowledged every block durably (``Sender.close`` waits for that). ``compression_level``
    0 sends frames uncompressed: right for a loopback receiver, where zstd costs CPU on both
    ends and saves no time.
    """
    from sendlearn.plugin import CaptureProcessor
    from sendlearn.transport.sender import Sender, SenderError

    senders: dict[str, Sender] = {}

    def open_stream(info: Any) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=False)  # offline: wait, never drop
        senders[info.stream] = Sender(url, info, processor.handoff, token=token, take=render_take(session, info),
                                      ssl_context=ssl_context,
                                      compression_level=compression_level).start()
        return processor

    # If the render raises, the senders are left unclosed on purpose: closing sends BYE,
    # which would mark a half-rendered stream complete. Unclosed, it ends "connection lost".
    results = render_session(session, open_stream, progress=progress)
    send_errors: dict[str, str] = {}
    for stream, sender in senders.items():
        try:
            sender.close()
        except SenderError as exc:
            send_errors[stream] = f"send failed: {exc}"
    outcomes = []
    for result in results:
        outcome = _outcome(input_name, session, result)
        sender = senders.get(result.stream)
        if sender is not None:
            outcome.bytes_sent = sender.bytes_sent
            if result.ok and result.stream in send_errors:
                outcome.ok, outcome.reason = False, send_errors[result.stream]
            elif result.ok and sender.blocks_acked != result.blocks:
                outcome.ok = False
                outcome.reason = f"receiver acknowledged {sender.blocks_acked} of {result.blocks} blocks"
        outcomes.append(outcome)
    return outcomes


def render_take(session: Session, info: Any) -> str:
    """The take id of an offline render: a digest of what determines its blocks (the session's
    clock, the track's settings, the content of its MIDI, audio and instrument files, the render
    libraries' versions; ``plugin.takes``). Renders are deterministic, so the same inputs make the
    same take: a render that was cut off resumes where the receiver stopped, and one already
    complete is acknowledged at once instead of written again."""
    from sendlearn.plugin.takes import take_id

    track = next(t for t in session.tracks if info.track == t.name)
    return take_id(session, track, info.stream)


def _outcome(input_name: str, session: Session, result: TrackResult) -> Outcome:
    return Outcome(input_name, session.name, result.track, result.stream, result.host, result.seconds,
                   result.frames, result.blocks, result.events, result.ok, result.reason, result.lag)


@contextmanager
def receiver_url(server: str | None, data_dir: Path) -> Iterator[str]:
    """The URL blocks go to: ``server``, or an in-process receiver writing to ``data_dir``."""
    if server is not None:
        yield server
        return
    from sendlearn.server.receiver import ReceiverThread

    try:
        receiver = ReceiverThread(data_dir, commit_interval=LOCAL_COMMIT_INTERVAL).start()  # creates data_dir
    except OSError as exc:
        raise UsageError(f"--data-dir {data_dir}: {exc.strerror or exc}") from None
    try:
        yield receiver.url
    finally:
        receiver.stop()


def check_server(url: str, ssl_context: ssl.SSLContext | None = None) -> None:
    """Fail fast on a receiver that is not there, instead of spooling a whole render for it."""
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--server {url}: expected a ws:// or wss:// URL")
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        # a bare open and close: the receiver sees a connection without HELLO and drops it quietly
        with connect(url, open_timeout=10, compression=None, ssl=ssl_context):
            pass
    except InvalidURI as exc:
        raise UsageError(f"--server {url}: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerDown(f"cannot reach the receiver at {url}: {exc}") from None


class ServerDown(SendLearnError):
    """The receiver named by --server did not answer: a failure (exit 1), not bad input."""


# --- progress -----------------------------------------------------------------------------


class ProgressView:
    """Rich bars on stderr while stdout is a terminal; nothing otherwise.

    One bar counts inputs; one shows the stream being captured, removed when it is done, so
    a thousand-file render keeps a two-line display."""

    def __init__(self, inputs: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
                                 transient=True)
        self.files = self.progress.add_task("inputs", total=inputs)
        self.current: tuple[str, Any] | None = None

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def for_session(self, session: Session) -> Progress:
        def update(stream: str, done: int, total: int) -> None:
            name = f"{session.name}/{stream}"
            if self.current is None or self.current[0] != name:
                self._drop_current()
                self.current = (name, self.progress.add_task(name, total=total))
            self.progress.update(self.current[1], completed=done)
        return update

    def input_done(self) -> None:
        self._drop_current()
        self.progress.advance(self.files)

    def _drop_current(self) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current[1])
            self.current = None


def show_progress(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty() and not args.json


# --- render -------------------------------------------------------------------------------


def run_render(args: argparse.Namespace) -> int:
    if args.list_instruments:
        return list_instruments(args.json)
    if not args.inputs:
        raise UsageError("give one or more INPUT files (.mid or .toml), or --list-instruments")
    from sendlearn.render_batch import is_batch, run_batch_command

    if is_batch(args):
        return run_batch_command(args)
    loaded = load_inputs(args.inputs, instrument=args.instrument, sample_rate=args.sample_rate,
                         block_size=args.block_size)
    # a wss:// --server signed by a CA of its own
    context = ssl.create_default_context(cafile=args.ca_file) if getattr(args, "ca_file", None) else None
    if args.server is not None:
        try:
            check_server(args.server, context)
        except ServerDown as exc:
            return _fail_early(args, str(exc))
    data_dir = None if args.server is not None else args.data_dir.resolve()
    if args.replace:
        if data_dir is None:
            raise UsageError("--replace works on a --data-dir; a --server keeps what it has")
        remove_sessions(data_dir, [session.name for _, session in loaded])
    outcomes, elapsed = render_all(loaded, args.server, data_dir, args.token, show_progress(args), context)
    report(args, outcomes, data_dir, elapsed)
    return 0 if all(o.ok for o in outcomes) else 1


def remove_sessions(data_dir: Path, names: list[str]) -> None:
    """Delete these sessions' folders, so a render writes them afresh (a receiver never
    overwrites a complete stream with another take of it)."""
    import shutil

    from sendlearn.server.layout import stream_dir

    for name in set(names):
        folder = stream_dir(data_dir, name, "x").parent
        if folder.is_dir():
            shutil.rmtree(folder)


def render_all(loaded: list[tuple[Path, Session]], server: str | None, data_dir: Path | None,
               token: str | None, progress: bool,
               ssl_context: ssl.SSLContext | None = None) -> tuple[list[Outcome], float]:
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with receiver_url(server, data_dir or Path()) as url, ProgressView(len(loaded), progress) as view:
        for path, session in loaded:
            outcomes += capture_session(session, url, token=token, progress=view.for_session(session),
                                        input_name=str(path), compression_level=3 if server else 0,
                                        ssl_context=ssl_context)
            view.input_done()
    if data_dir is not None:
        for outcome in outcomes:
            folder = data_dir / "sessions" / outcome.session / outcome.stream
            if outcome.ok and (folder / "stream.json").is_file():
                outcome.path = str(folder)
    return outcomes, time.monotonic() - started


def summary(outcomes: list[Outcome], data_dir: Path | None, server: str | None, elapsed: float) -> dict[str, Any]:
    streams = []
    for o in outcomes:
        entry = asdict(o)
        entry.update(entry.pop("extra"))
        streams.append(entry)
    return {
        "ok": all(o.ok for o in outcomes),
        "data_dir": str(data_dir) if data_dir is not None else None,
        "server": server,
        "elapsed_seconds": round(elapsed, 3),
        "streams": streams,
        "failures": [{"input": o.input, "session": o.session, "stream": o.stream, "reason": o.reason}
                     for o in outcomes if not o.ok],
    }


def report(args: argparse.Namespace, outcomes: list[Outcome], data_dir: Path | None, elapsed: float) -> None:
    server = getattr(args, "server", None)
    for o in outcomes:  # on stderr in both modes: a person watching sees what failed and why
        if not o.ok:
            print(f"{o.input}: {o.stream}: {o.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary(outcomes, data_dir, server, elapsed)))
        return
    good = sum(o.ok for o in outcomes)
    print_table(f"{good} of {len(outcomes)} streams ok in {elapsed:.1f} s",
                ["session", "stream", "seconds", "blocks", "events", "result"],
                [[o.session, o.stream, f"{o.seconds:.2f}", o.blocks, o.events,
                  "ok" if o.ok else f"failed: {o.reason}"] for o in outcomes])
    print(f"written to {data_dir}" if data_dir is not None else f"sent to {server}")


def _fail_early(args: argparse.Namespace, reason: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "data_dir": None, "server": args.server, "elapsed_seconds": 0.0,
                          "streams": [], "failures": [{"input": None, "session": None, "stream": None,
                                                       "reason": reason}]}))
    print(f"sendlearn render: {reason}", file=sys.stderr)
    return 1


def list_instruments(as_json: bool) -> int:
    from sendlearn.plugin.instrument import DEFAULT_INSTRUMENT
    from sendlearn.plugin.instrument import list_instruments as bundled

    rows = bundled()
    if as_json:
        print(json.dumps({"default": DEFAULT_INSTRUMENT, "instruments": [{"spec": s, "description": d} for s, d in rows],
                          "spec_forms": [{"spec": s, "description": d} for s, d in SPEC_FORMS]}))
        return 0
    print_table("--instrument SPEC forms", ["spec", "what"], [list(r) for r in SPEC_FORMS])
    print_table(f"bundled instruments (default {DEFAULT_INSTRUMENT})", ["spec", "what"], [list(r) for r in rows])
    return 0
