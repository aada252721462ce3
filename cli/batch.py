"""The batch job: one input rendered in a worker process (``sendlearn.cli.batch:render_input``).

``plugin.batch`` runs it per input, in ``plugin.pool``'s worker processes or on a Dask cluster.
It puts together what no layer below may join: the render (``plugin``) and the receiver's
writer (``server.direct``), which may not import each other.

Resumable: streams are written with the receiver's writer straight into ``--data-dir``
(``server.direct``), and a stream whose ``stream.json`` is complete under the same take id
(``plugin.takes``: a digest of the inputs' content, never their paths) is skipped, so a rerun
renders only what is missing; a stream cut off midway resumes after its last stored block.
With ``--server`` the blocks go over the wire instead (that receiver acknowledges a complete
take at once, but the input is rendered again to find out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sendlearn.capture import StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.plugin.offline.render import render_session, session_streams
from sendlearn.plugin.offline.send import Outcome, capture_session
from sendlearn.plugin.session.inputs import SUFFIXES, LoadedInput, find_inputs, load_input, midi_problem
from sendlearn.plugin.session.reader import Session, SessionError
from sendlearn.plugin.session.takes import render_take, take_id
from sendlearn.plugin.session.timeline import MIDI_ERRORS, Timeline
from sendlearn.store.direct import DirectStream, is_complete
from sendlearn.transport.tls import client_context

__all__ = ["capture_direct", "find_inputs", "render_input"]  # find_inputs (plugin.inputs) stays importable here


def render_input(payload: dict[str, Any]) -> dict[str, Any]:
    """Render one input into ``payload["data_dir"]`` (or to ``payload["server"]``).

    Returns ``{"skipped": bool, "error": reason or None, "outcomes": [stream outcomes]}``."""
    path = Path(payload["input"])
    if path.suffix.lower() not in SUFFIXES:
        return {"skipped": False, "error": "not a .mid MIDI file or a .toml session file", "outcomes": []}
    try:
        loaded = load_input(path, instrument=payload["instrument"], sample_rate=payload["sample_rate"],
                            block_size=payload["block_size"], name=payload["name"])
    except (SessionError, *MIDI_ERRORS) as exc:
        return {"skipped": False, "error": _unreadable(path, exc), "outcomes": []}
    shown = payload.get("shown", str(path))
    if payload["server"] is not None:
        outcomes = capture_session(loaded.session, payload["server"], token=payload["token"], input_name=shown,
                                   timelines=loaded.timelines, ssl_context=client_context(payload.get("ca_file")))
        return {"skipped": False, "error": None, "outcomes": [asdict(o) for o in outcomes]}
    data_dir = Path(payload["data_dir"])
    if _all_complete(loaded, data_dir):
        return {"skipped": True, "error": None, "outcomes": []}
    outcomes = capture_direct(loaded.session, data_dir, shown, loaded.timelines)
    return {"skipped": False, "error": None, "outcomes": [asdict(o) for o in outcomes]}


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why an input cannot be rendered, without its path (the failure names the input)."""
    if isinstance(exc, SessionError) and isinstance(exc.__cause__, MIDI_ERRORS):
        exc = exc.__cause__  # a MIDI file mido cannot read (read_timelines): said as mido says it
    elif isinstance(exc, SessionError):
        return f"{exc.key}: {exc.problem}" if exc.key else exc.problem
    if path.is_file() and path.stat().st_size == 0:
        return "empty file"
    return f"not a readable MIDI file ({midi_problem(exc)})"


def _all_complete(loaded: LoadedInput, data_dir: Path) -> bool:
    session = loaded.session
    streams = session_streams(session, loaded.timelines)
    return bool(streams) and all(
        is_complete(data_dir, session.name, stream, take_id(session, track, stream)) for track, stream in streams)


def capture_direct(session: Session, data_dir: Path, input_name: str,
                   timelines: Mapping[str, Timeline] | None = None) -> list[Outcome]:
    """Render ``session`` and write each stream straight into ``data_dir`` (``DirectStream``):
    one outcome per stream, as ``plugin.send.capture_session`` gives for a receiver."""
    streams: dict[str, DirectStream] = {}

    def open_stream(info: StreamInfo) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=False)
        streams[info.stream] = DirectStream(data_dir, info, processor.handoff, render_take(session, info))
        return processor

    try:
        results = render_session(session, open_stream, timelines=timelines)
    except BaseException:
        for opened in streams.values():  # work files kept for a resume; the failure is the task's
            opened.finish(False)
        raise
    outcomes = []
    for result in results:
        outcome = Outcome.of(input_name, session, result)
        stream = streams.get(result.stream)
        if stream is not None:
            problem = stream.finish(result.ok)
            if result.ok and problem is not None:
                outcome.ok, outcome.reason = False, problem
            outcome.extra = {"resumed": stream.resumed, "blocks_written": stream.written}
        if outcome.ok:
            outcome.path = str(data_dir / "sessions" / session.name / result.stream)
        outcomes.append(outcome)
    for name, opened in streams.items():  # a stream opened but missing from the results: its render raised
        if all(r.stream != name for r in results):
            opened.finish(False)
    return outcomes
