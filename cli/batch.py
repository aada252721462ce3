"""The batch job: one input rendered in a worker process (``sendlearn.cli.batch:render_input``).

``plugin.batch`` runs it per input, in ``plugin.pool``'s worker processes or on a Dask cluster.
It is where the render (``plugin``) meets its sink (``cli.sinks``), which plugin may not import:
the same ``capture_session`` as ``render FILE``, into the store or over the link; an Ardour
session goes to ``render_ardour_input`` (render_ardour.py), Ardour's own render into that sink.

Resumable: streams are written by the store sink straight into ``--data-dir``, and a stream
whose ``stream.json`` is complete under the same take id (``plugin.takes``: a digest of the
inputs' content, never their paths) is skipped, so a rerun renders only what is missing; a
stream cut off midway resumes after its last stored block. With ``--server`` the blocks go
over the wire instead (that receiver acknowledges a complete take at once, but the input is
rendered again to find out).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sendlearn.cli.host_logs import HostOutput, printed
from sendlearn.cli.sinks import choose_sink
from sendlearn.plugin.offline.render import session_streams
from sendlearn.plugin.offline.send import capture_session
from sendlearn.plugin.session.inputs import (
    SUFFIXES,
    LoadedInput,
    find_inputs,
    is_ardour_path,
    load_input,
    midi_problem,
)
from sendlearn.plugin.session.reader import SessionError
from sendlearn.plugin.session.takes import take_id
from sendlearn.plugin.session.timeline import MIDI_ERRORS
from sendlearn.store.sink import is_complete
from sendlearn.transport.tls import client_context

SENDER = "sendlearn render (store, batch worker)"

__all__ = ["find_inputs", "render_input"]  # find_inputs (plugin.inputs) stays importable here


def render_input(payload: dict[str, Any]) -> dict[str, Any]:
    """Render one input into ``payload["data_dir"]`` (or to ``payload["server"]``).

    Returns ``{"skipped": bool, "error": reason or None, "outcomes": [stream outcomes]}``."""
    path = Path(payload["input"])
    if is_ardour_path(path):  # its own jackd and Ardour, in this worker process
        from sendlearn.cli.render_ardour import render_ardour_input

        return render_ardour_input(payload, writer=SENDER)
    if path.suffix.lower() not in SUFFIXES:
        return {"skipped": False, "error": "not a .mid MIDI file or a .toml session file", "outcomes": []}
    try:
        loaded = load_input(path, instrument=payload["instrument"], sample_rate=payload["sample_rate"],
                            block_size=payload["block_size"], name=payload["name"])
    except (SessionError, *MIDI_ERRORS) as exc:
        return {"skipped": False, "error": _unreadable(path, exc), "outcomes": []}
    shown = payload.get("shown", str(path))
    server = payload["server"]
    data_dir = None if server is not None else Path(payload["data_dir"])
    if data_dir is not None and _all_complete(loaded, data_dir):
        return {"skipped": True, "error": None, "outcomes": []}
    sink = choose_sink(server, data_dir, writer=SENDER, token=payload["token"],
                       ssl_context=client_context(payload.get("ca_file")) if server is not None else None)
    log_dir = payload.get("log_dir")
    with HostOutput(Path(log_dir) if log_dir else None) as host, host.input(loaded.session.name) as log:
        outcomes = capture_session(loaded.session, sink, input_name=shown, timelines=loaded.timelines)
    for outcome in outcomes:
        outcome.extra["host_log"] = printed(log)
    if data_dir is not None:
        for outcome in outcomes:
            if outcome.ok:
                outcome.path = str(data_dir / "sessions" / loaded.session.name / outcome.stream)
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
