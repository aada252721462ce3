"""``sendlearn render`` over many inputs: a directory, ``--workers N`` or ``--scheduler``.

Each input is one task, run by ``render_input`` in a worker process (``plugin.pool``: recycled
after ``--max-renders``, killed after ``--timeout``), or on a Dask cluster. In a batch a bad
input is a failure recorded with its reason (unreadable, empty, a render that came out
silent or of the wrong length, a timeout, a worker that died) and the batch goes on.

Resumable: streams are written with the receiver's writer straight into ``--data-dir``
(``sendlearn.direct``), and a stream whose ``stream.json`` is complete under the same take id
(``plugin.takes``: a digest of the inputs' content, never their paths) is skipped, so a rerun
renders only what is missing; a stream cut off midway resumes after its last stored block.
With ``--server`` the blocks go over the wire instead (that receiver acknowledges a complete
take at once, but the input is rendered again to find out).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sendlearn.plugin.session import safe_name

SUFFIXES = (".mid", ".midi", ".toml")
JOB = "sendlearn.batch:render_input"
DEFAULT_TIMEOUT = 900.0  # seconds: a 19-minute score renders in about 100 s on a slow core


@dataclass(frozen=True, slots=True)
class Input:
    """One file of a batch, and the session name a ``.mid`` gets (None: named after the file)."""

    path: Path
    name: str | None = None


def find_inputs(paths: Iterable[Path]) -> list[Input]:
    """Files as given; directories searched recursively for .mid, .midi and .toml (sorted). A
    found ``.mid`` is named after its path inside the directory (``a/b.mid`` -> ``a_b``), so
    files of the same name in different folders make different sessions; one that a found
    session file names as a track's ``midi`` is left to that session."""
    found: list[Input] = []
    for path in paths:
        if not path.is_dir():
            found.append(Input(path))
            continue
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        in_sessions = {m for f in files if f.suffix.lower() == ".toml" for m in _session_midi(f)}
        for file in files:
            if file.resolve() in in_sessions:
                continue  # a track of a session file found beside it, not an input of its own
            relative = file.relative_to(path).with_suffix("")
            found.append(Input(file, None if file.suffix.lower() == ".toml" else safe_name("_".join(relative.parts))))
    return found


def _session_midi(session_file: Path) -> set[Path]:
    """The MIDI files a session file's tracks name (none if it cannot be read: its task says why)."""
    try:
        tracks = tomllib.loads(session_file.read_text()).get("track", [])
    except (OSError, ValueError):
        return set()
    return {(session_file.parent / t["midi"]).resolve() for t in tracks if isinstance(t, dict)
            and isinstance(t.get("midi"), str)}


def session_name(item: Input) -> str | None:
    """The session an input writes, when it can be told without rendering (else None)."""
    if item.path.suffix.lower() != ".toml":
        return item.name or safe_name(item.path.stem)
    try:
        name = tomllib.loads(item.path.read_text()).get("name")
    except (OSError, ValueError):
        return None
    return name if isinstance(name, str) else None


@dataclass
class BatchResult:
    """What a batch did: every stream's outcome, the inputs skipped as complete, failures."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0  # inputs rendered and written whole
    skipped: int = 0  # inputs complete before this run
    failed: int = 0  # inputs with any failure
    audio_seconds: float = 0.0  # rendered in this run
    peak_rss_kib: dict[int, int] = field(default_factory=dict)  # by worker process
    audio_by_worker: dict[int, float] = field(default_factory=dict)  # seconds rendered, by worker process
    interrupted: bool = False

    def add_failure(self, path: str, reason: str, session: str | None = None, stream: str | None = None) -> None:
        self.failures.append({"input": path, "session": session, "stream": stream, "reason": reason})


# --- the job: one input, in a worker process ------------------------------------------------


def render_input(payload: dict[str, Any]) -> dict[str, Any]:
    """Render one input into ``payload["data_dir"]`` (or to ``payload["server"]``).

    Returns ``{"skipped": bool, "error": reason or None, "outcomes": [stream outcomes]}``."""
    from sendlearn.plugin.session import SessionError

    path = Path(payload["input"])
    if path.suffix.lower() not in SUFFIXES:
        return {"skipped": False, "error": "not a .mid MIDI file or a .toml session file", "outcomes": []}
    try:
        session = _load(path, payload)
    except (SessionError, OSError, EOFError, ValueError, KeyError) as exc:
        return {"skipped": False, "error": _unreadable(path, exc), "outcomes": []}
    if payload["server"] is not None:
        from sendlearn.render import capture_session

        outcomes = capture_session(session, payload["server"], token=payload["token"],
                                   input_name=payload.get("shown", str(path)))
        return {"skipped": False, "error": None, "outcomes": [asdict(o) for o in outcomes]}
    data_dir = Path(payload["data_dir"])
    if _all_complete(session, data_dir):
        return {"skipped": True, "error": None, "outcomes": []}
    outcomes = capture_direct(session, data_dir, payload.get("shown", str(path)))
    return {"skipped": False, "error": None, "outcomes": [asdict(o) for o in outcomes]}


def _load(path: Path, payload: dict[str, Any]) -> Any:
    from sendlearn.plugin.instrument import DEFAULT_INSTRUMENT
    from sendlearn.plugin.session import load_session, session_from_midi
    from sendlearn.plugin.timeline import Timeline

    if path.suffix.lower() == ".toml":
        session = load_session(path, sample_rate=payload["sample_rate"], block_size=payload["block_size"])
    else:
        session = session_from_midi(path, payload["instrument"] or DEFAULT_INSTRUMENT,
                                    sample_rate=payload["sample_rate"] or 48000,
                                    block_size=payload["block_size"] or 512, name=payload["name"])
    for track in session.tracks:
        if track.midi is not None:
            Timeline(track.midi, session.sample_rate)  # raises on a file mido cannot read
    return session


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why an input cannot be rendered, without its path (the failure names the input)."""
    from sendlearn.plugin.session import SessionError

    if isinstance(exc, SessionError):
        return f"{exc.key}: {exc.problem}" if exc.key else exc.problem
    if path.is_file() and path.stat().st_size == 0:
        return "empty file"
    return f"not a readable MIDI file ({str(exc) or type(exc).__name__})"


def expected_streams(session: Any) -> list[tuple[Any, str]]:
    """(track, stream id) of every stream the session writes."""
    from sendlearn.plugin.offline import stream_parts
    from sendlearn.plugin.session import dry_stream_name, wet_stream_name
    from sendlearn.plugin.timeline import Timeline

    streams = []
    for track in session.tracks:
        if track.recorded:
            streams += [(track, dry_stream_name(track.name)), (track, wet_stream_name(track.name))]
        else:
            parts = stream_parts(track, Timeline(track.midi, session.sample_rate))
            streams += [(track, part.stream) for part in parts]
    return streams


def _all_complete(session: Any, data_dir: Path) -> bool:
    from sendlearn.direct import is_complete
    from sendlearn.plugin.takes import take_id

    streams = expected_streams(session)
    return bool(streams) and all(
        is_complete(data_dir, session.name, stream, take_id(session, track, stream)) for track, stream in streams)


def capture_direct(session: Any, data_dir: Path, input_name: str) -> list[Any]:
    """Render ``session`` and write each stream straight into ``data_dir`` (``DirectStream``)."""
    from sendlearn.direct import DirectStream
    from sendlearn.plugin import CaptureProcessor
    from sendlearn.plugin.offline import render_session
    from sendlearn.render import _outcome, render_take

    streams: dict[str, DirectStream] = {}

    def open_stream(info: Any) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=False)
        streams[info.stream] = DirectStream(data_dir, info, processor.handoff, render_take(session, info))
        return processor

    try:
        results = render_session(session, open_stream)
    except BaseException:
        for stream in streams.values():  # work files kept for a resume; the failure is the task's
            stream.finish(False)
        raise
    outcomes = []
    for result in results:
        outcome = _outcome(input_name, session, result)
        stream = streams.get(result.stream)
        if stream is not None:
            problem = stream.finish(result.ok)
            if result.ok and problem is not None:
                outcome.ok, outcome.reason = False, problem
            outcome.extra = {"resumed": stream.resumed, "blocks_written": stream.written}
        if outcome.ok:
            outcome.path = str(data_dir / "sessions" / session.name / result.stream)
        outcomes.append(outcome)
    for name, stream in streams.items():  # a stream opened but missing from the results: its render raised
        if all(r.stream != name for r in results):
            stream.finish(False)
    return outcomes


# --- the driver: inputs to tasks, tasks to results ----------------------------------------------


def run_batch(inputs: list[Input], options: dict[str, Any], *, workers: int, scheduler: str | None,
              timeout: float | None, max_tasks: int, progress: Any = None) -> BatchResult:
    """Every input through the pool (``workers`` processes) or the Dask cluster at ``scheduler``.

    ``options`` holds the payload's common keys (instrument, sample_rate, block_size, data_dir,
    server, token). ``progress(result)`` is called after each input. SIGINT (and whatever the
    caller turns into KeyboardInterrupt) stops it: renders in flight are killed, their streams
    left to resume, and the result says ``interrupted``."""
    result = BatchResult()
    tasks: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, Path] = {}
    for index, item in enumerate(inputs):
        name = session_name(item)
        if name is not None and name in seen:
            result.failed += 1
            result.add_failure(str(item.path), f"session {name!r} is also written by {seen[name]}; "
                               "rename one (each session must come from one input)", name)
            continue
        if name is not None:
            seen[name] = item.path
        tasks.append((index, {**options, "input": str(item.path.resolve()), "shown": str(item.path),
                              "name": item.name}))
    try:
        for done in _execute(tasks, workers=workers, scheduler=scheduler, timeout=timeout, max_tasks=max_tasks):
            _take(result, inputs[done.key], done)
            if progress is not None:
                progress(result)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def _execute(tasks: list[tuple[int, dict[str, Any]]], *, workers: int, scheduler: str | None,
             timeout: float | None, max_tasks: int) -> Iterator[Any]:
    from sendlearn.plugin.pool import WorkerPool, run_on_dask

    if scheduler is None:
        with WorkerPool(JOB, workers, max_tasks=max_tasks, timeout=timeout) as pool:
            yield from pool.run(tasks)
        return
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        yield from run_on_dask(client, JOB, tasks, timeout=timeout, max_tasks=max_tasks)


def _take(result: BatchResult, item: Input, done: Any) -> None:
    path = str(item.path)
    if done.worker:
        result.peak_rss_kib[done.worker] = max(result.peak_rss_kib.get(done.worker, 0), done.peak_rss_kib)
    if done.error is not None:
        result.failed += 1
        result.add_failure(path, done.error, session_name(item))
        return
    value = done.value
    if value["skipped"]:
        result.skipped += 1
        return
    if value["error"] is not None:
        result.failed += 1
        result.add_failure(path, value["error"], session_name(item))
        return
    outcomes = value["outcomes"]
    result.outcomes += outcomes
    seconds = sum(o["seconds"] for o in outcomes if o["ok"])
    result.audio_seconds += seconds
    result.audio_by_worker[done.worker] = result.audio_by_worker.get(done.worker, 0.0) + seconds
    bad = [o for o in outcomes if not o["ok"]]
    for o in bad:
        result.add_failure(path, o["reason"], o["session"], o["stream"])
    if bad or not outcomes:
        result.failed += 1
        if not outcomes:
            result.add_failure(path, "the input made no stream")
    else:
        result.done += 1
