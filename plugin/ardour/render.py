"""An Ardour session rendered through the capture chain, in JACK freewheel.

    copy the session to a temp folder (the user's folder is never written)
    -> a private ``jackd -d dummy`` at the session's rate, period ``period``
    -> Ardour headless loads the copy, follows JACK's transport as its timebase master
    -> the live bridge joins the graph: every route's audio outputs, one stream per track and
       ``master`` (``SessionWindow`` splits and cuts them)
    -> Ardour locates to the start, JACK freewheels, Ardour rolls until the range is captured
    -> stop, tear everything down, finish (or abort) each stream in the sink

Ardour and jackd die with us (PR_SET_PDEATHSIG), and every exit path, a stop request included,
tears down what it started. A stream is finished (complete) only when the whole range reached
it; otherwise it is aborted, so a rerun under the same take completes it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import jack

from sendlearn.capture import Playhead, StreamInfo
from sendlearn.capture.block import MAX_PARAM_NAME
from sendlearn.capture.sink import Sink, SinkStream
from sendlearn.errors import SendLearnError
from sendlearn.plugin.ardour.automation import Lane, interpolation_fact, range_points, read_lanes, too_long
from sendlearn.plugin.ardour.headless import CLIENT, LUA, ArdourError, ArdourProcess
from sendlearn.plugin.ardour.session import ArdourSession, Route
from sendlearn.plugin.ardour.tempo_map import map_playheads
from sendlearn.plugin.ardour.window import SessionWindow, Slice
from sendlearn.plugin.live.bridge import BridgeError, JackBridge
from sendlearn.plugin.live.runner import DummyServer
from sendlearn.plugin.offline.errors import RenderError
from sendlearn.plugin.offline.send import OFFLINE_HANDOFF_BLOCKS, Outcome, Refused
from sendlearn.plugin.processor import CaptureProcessor

PERIOD = 1024  # JACK frames per cycle, the default
MASTER = "master"
START_ATTEMPTS = 3  # jackd drops Ardour's client in about one start in three (tests/ardour.py says why)
STALL_SECONDS = 60.0  # no frame captured for this long while rolling: Ardour or the graph hung
TAKE_FORMAT = 1
WORK_PREFIX = "sendlearn-ardour-"  # then the rendering process's pid: a folder of a dead one is swept

Progress = Callable[[str, int, int], None]  # (stream, frames done, frames in all)


class ArdourRenderError(RenderError):
    """An Ardour session that could not be rendered: nothing to render, missing plugins, Ardour
    died or never rolled. Exit 1, one line naming the session and what went wrong."""


@dataclass(frozen=True)
class Stream:
    name: str
    route: Route


def stream_name(route: Route) -> str:
    """A track's stream is named after it (characters a stream id cannot hold become ``_``);
    the master bus's is ``master``."""
    if route.master:
        return MASTER
    return re.sub(r"[^A-Za-z0-9._-]", "_", route.name)[:64] or "track"


def session_streams(session: ArdourSession) -> list[Stream]:
    """Every track with audio outputs, then the master bus."""
    streams = [Stream(stream_name(r), r) for r in session.tracks if r.outputs]
    if session.master is not None and session.master.outputs:
        streams.append(Stream(MASTER, session.master))
    return streams


def capture_ardour(session: ArdourSession, sink: Sink, *, input_name: str, start: float | None = None,
                   end: float | None = None, period: int = PERIOD, progress: Progress | None = None,
                   stop: threading.Event | None = None,
                   beside: Callable[[str], AbstractContextManager[object]] | None = None) -> list[Outcome]:
    """Render ``session`` (``start``/``end`` in seconds, else its session range) into ``sink``.

    ``beside(server_name)`` is entered once Ardour stands at the start, before the roll, and left
    before the private graph is torn down: another JACK client (a witness) may join it there."""
    streams = session_streams(session)
    if not any(not s.route.master for s in streams):
        raise ArdourRenderError(f"{session.file}: nothing to render (no track with an audio output)")
    stop = stop or threading.Event()
    with ExitStack() as stack:
        sweep_work_folders()
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-")))
        copy = work / "session"
        shutil.copytree(session.folder, copy, symlinks=True, ignore=shutil.ignore_patterns("export", "*.bak"))
        server = _start_jackd(session, period, work / "jackd.log")
        stack.callback(server.stop)
        daw, starts = _start_ardour(server, work, copy, session, stack)
        _check_plugins(daw, session)
        first, last = _range(daw, session, start, end)
        lanes = _lanes(daw, session, streams, first)
        playheads = map_playheads(daw, first, last, period, session.sample_rate)
        daw.be_timebase_master()
        daw.locate(first)
        _wait_located(daw, first)
        if beside is not None:
            stack.enter_context(beside(server.name))
        outcomes = _capture(daw, server, session, streams, lanes, playheads, sink, input_name, first, last, period,
                            progress, stop)
        for outcome in outcomes:
            outcome.extra["ardour_starts"] = starts
        return outcomes
    raise AssertionError("unreachable")  # ExitStack may swallow nothing here; mypy wants a return


def sweep_work_folders() -> None:
    """Remove the work folders (session copies) of renders whose process is gone: one killed by
    SIGKILL (a batch's timeout or Ctrl-C kills its workers so) could not remove its own."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*"):
        pid = folder.name[len(WORK_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True


def _start_jackd(session: ArdourSession, period: int, log: Path) -> DummyServer:
    """The private server, or a failure naming jackd's own last word (its log is in the temp
    folder, which is gone by the time anyone reads the message)."""
    server = DummyServer(rate=session.sample_rate, period=period, log=log)
    try:
        return server.start()
    except (BridgeError, TimeoutError) as exc:
        said = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
        raise ArdourRenderError(f"{session.file}: a private jackd at {session.sample_rate} Hz, period {period}, "
                                f"did not start ({exc}; jackd said: {said[-1] if said else 'nothing'})") from None


def _start_ardour(server: DummyServer, work: Path, copy: Path, session: ArdourSession,
                  stack: ExitStack) -> tuple[ArdourProcess, int]:
    """Ardour with the copy loaded and every route's ports in JACK; started again when jackd drops
    its client as it sets up (tests/ardour.py: ArdourDropped)."""
    ports = [p for r in session.routes for p in r.outputs]
    looker = _open_client("sendlearn-ardour-ports", server.name)
    stack.callback(looker.close)
    problem = ""
    for attempt in range(START_ATTEMPTS):
        daw = ArdourProcess(server.name, work / f"home-{attempt}")
        try:
            daw.load_session(copy, session.name)
            missing = _wait_ports(looker, ports)
        except ArdourError as exc:
            daw.kill()
            raise ArdourRenderError(f"{session.file}: Ardour could not load it: {_short(str(exc))}") from None
        if not missing:
            stack.callback(daw.close)
            return daw, attempt + 1
        problem = f"ports {missing[:3]} never appeared"
        daw.kill()
    raise ArdourRenderError(f"{session.file}: Ardour did not come up whole in {START_ATTEMPTS} starts ({problem})")


def _wait_ports(looker: jack.Client, ports: list[str], timeout: float = 30.0) -> list[str]:
    """The ports not there: none once Ardour is up; all of them at once when jackd dropped its
    client (it registers them as it loads, so a client with no port left is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        present = {p.name for p in looker.get_ports("^" + re.escape(f"{CLIENT}:"))}
        missing = [p for p in ports if f"{CLIENT}:{p}" not in present]
        if not missing or not present or time.monotonic() > deadline:
            return missing
        time.sleep(0.05)


def _check_plugins(daw: ArdourProcess, session: ArdourSession) -> None:
    """Plugins the session names that this machine's Ardour did not load: Ardour would play those
    tracks silent (an UnknownProcessor passes nothing on), so the render fails naming them."""
    lost: list[str] = []
    for route in session.routes:
        if not route.plugins:
            continue
        loaded = daw.run(f'local r = Session:route_by_name("{_lua(route.name)}") local i = 0 '
                         "while true do local p = r:nth_plugin(i) if p:isnil() then break end "
                         "print('plugin ' .. p:display_name()) i = i + 1 end")
        names = [line[len("plugin "):] for line in loaded if line.startswith("plugin ")]
        missing = list(route.plugins)
        for name in names:
            if name in missing:
                missing.remove(name)
        if missing:
            lost.append(f"{route.name}: {', '.join(missing)}")
    if lost:
        raise ArdourRenderError(f"{session.file}: plugins missing on this machine ({'; '.join(lost)})")


def _range(daw: ArdourProcess, session: ArdourSession, start: float | None, end: float | None) -> tuple[int, int]:
    rate = session.sample_rate
    first = int(daw.value("Session:current_start_sample()")) if start is None else round(start * rate)
    last = int(daw.value("Session:current_end_sample()")) if end is None else round(end * rate)
    if last <= first:
        raise ArdourRenderError(f"{session.file}: nothing to render (the range {first}..{last} is empty)")
    return first, last


def _lanes(daw: ArdourProcess, session: ArdourSession, streams: list[Stream], first: int) -> dict[str, list[Lane]]:
    """Each stream's played automation lanes (plugin/ardour/automation.py), read before the roll,
    with their values at the range's ``first`` sample."""
    lanes = {stream.name: read_lanes(daw, stream.route.name, first) for stream in streams}
    long = [param for found in lanes.values() for param in too_long(found)]
    if long:
        raise ArdourRenderError(f"{session.file}: automation lane names longer than {MAX_PARAM_NAME} characters "
                                f"({', '.join(long[:3])}): rename the track or plugin")
    return lanes


def _wait_located(daw: ArdourProcess, sample: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while int(daw.value("Session:transport_sample()")) != sample:
        if time.monotonic() > deadline:
            raise ArdourRenderError(f"Ardour did not locate to sample {sample}")
        time.sleep(0.05)


def _capture(daw: ArdourProcess, server: DummyServer, session: ArdourSession, streams: list[Stream],
             lanes: dict[str, list[Lane]], playheads: dict[int, Playhead], sink: Sink, input_name: str, first: int,
             last: int, period: int, progress: Progress | None, stop: threading.Event) -> list[Outcome]:
    """Each MIDI track through a bridge of its own (a bridge has one MIDI input: the track's audio
    and the MIDI it plays), the other tracks and the master through one more; every bridge's
    window starts at the same JACK cycle (the first one rolling from ``first``), so all streams
    share one clock. A stream's automation points go with the block holding their sample."""
    frames = last - first
    opened: dict[str, SinkStream] = {}
    groups = [[s] for s in streams if s.route.midi_output] + [[s for s in streams if not s.route.midi_output]]
    windows: list[tuple[SessionWindow, list[tuple[str, str]]]] = []
    for group in (g for g in groups if g):
        slices: list[Slice] = []
        connect: list[tuple[str, str]] = []
        for stream in group:
            found = lanes.get(stream.name, [])
            # StreamInfo's annotation names scalar facts; a fact may also be a list (transport/checks.py)
            meta = cast(tuple[tuple[str, Any], ...], (interpolation_fact(found),) if found else ())
            info = StreamInfo(session.name, stream.name, session.sample_rate, len(stream.route.outputs), period,
                              track=stream.route.name, host="ardour", meta=meta)
            processor = CaptureProcessor.for_stream(info, realtime=False, capacity=OFFLINE_HANDOFF_BLOCKS)
            try:
                opened[stream.name] = sink.open(info, processor.handoff,
                                                take_id(session, stream.name, first, last, period))
            except SendLearnError as exc:
                processor.handoff.fail(str(exc))
                opened[stream.name] = Refused(str(exc))
            for port in stream.route.outputs:
                connect.append((f"{CLIENT}:{port}", f"in_{len(connect) + 1}"))
            if stream.route.midi_output:
                connect.append((f"{CLIENT}:{stream.route.midi_output}", "midi_in"))
            audio = len(stream.route.outputs)
            slices.append(Slice(processor, sum(s.count for s in slices), audio, midi=bool(stream.route.midi_output),
                                params=range_points(found, first, last)))
        windows.append((SessionWindow(slices, session.sample_rate, first, frames, playheads), connect))
    started = time.monotonic()
    reason: str | None = None
    try:
        with ExitStack() as bridges:
            for k, (window, connect) in enumerate(windows):
                bridges.enter_context(JackBridge(
                    lambda info, window=window: window,  # type: ignore[misc]
                    name=f"sendlearn-ardour-{k}", audio_ports=sum(1 for _, ours in connect if ours != "midi_in"),
                    servername=server.name, connect=connect, session=session.name))
            control = _open_client("sendlearn-ardour-control", server.name)
            try:
                control.set_freewheel(True)
                daw.roll()
                reason = _wait([w for w, _ in windows], daw, progress, stop)
            finally:
                if daw.alive:
                    control.set_freewheel(False)
                else:  # a freewheeling graph waits on a dead client with no timeout: end the server now
                    server.stop()
                control.close()
    except BaseException as exc:
        for opened_stream in opened.values():
            opened_stream.abort(f"the render failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        for window, _ in windows:
            window.close()
    reason = reason or next((w.problem for w, _ in windows if w.problem), None)
    elapsed = time.monotonic() - started
    outcomes = []
    for window, _ in windows:
        for part in window.slices:
            name = part.processor.stream
            route = next(s.route for s in streams if s.name == name)
            outcome = Outcome(input_name, session.name, route.name, name, "ardour", frames / session.sample_rate,
                              window.taken, -(-window.taken // period), part.events, reason is None, reason)
            sink_stream = opened[name]
            if reason is None:
                problem = sink_stream.finish()
                if problem is not None:
                    outcome.ok, outcome.reason = False, problem
            else:
                sink_stream.abort(reason)
            outcome.bytes_sent = sink_stream.figures().pop("bytes_sent", 0)
            outcome.extra = {"render_seconds": round(elapsed, 3), "range": [first, last], "gaps": window.gaps,
                             "params": len(part.params)}
            outcomes.append(outcome)
    order = [s.name for s in streams]
    return sorted(outcomes, key=lambda o: order.index(o.stream))


def _open_client(name: str, server: str, attempts: int = 3) -> jack.Client:
    """A client of ours on the private server. jackd 1.9.21 now and then refuses a client opening
    while others register their ports (a CI run beside two CPU hogs: "server_error", the bridges
    just up); the server is fine and a moment later the same open succeeds."""
    for attempt in range(attempts):
        try:
            return jack.Client(name, no_start_server=True, servername=server)
        except jack.JackOpenError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _wait(windows: list[SessionWindow], daw: ArdourProcess, progress: Progress | None,
          stop: threading.Event) -> str | None:
    """Until the range is captured by every window; why not, if it was not."""
    seen, moved = -1, time.monotonic()
    window = windows[-1]  # the one with the master, whose progress is shown
    while not all(w.done.wait(0.2) for w in windows):
        if stop.is_set():
            return "stopped before the end (a rerun completes it)"
        if not daw.alive:
            return f"Ardour exited ({_exit_status(daw.process.returncode)}) during the render{_last_words(daw)}"
        if window.taken != seen:
            seen, moved = window.taken, time.monotonic()
            if progress is not None:
                progress(MASTER, window.taken, window.frames)
        elif time.monotonic() - moved > STALL_SECONDS:
            return f"nothing captured for {STALL_SECONDS:.0f} s at {window.taken} of {window.frames} samples"
    if progress is not None:
        progress(MASTER, window.taken, window.frames)
    problem = next((w.problem for w in windows if w.problem), None)
    if problem is not None and _exits_soon(daw):  # its transport stops as it dies: the death is the cause
        return f"Ardour exited ({_exit_status(daw.process.returncode)}) during the render{_last_words(daw)}"
    return problem


def _exits_soon(daw: ArdourProcess, seconds: float = 2.0) -> bool:
    try:
        daw.process.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _exit_status(code: int | None) -> str:
    return f"killed by signal {-code}" if code is not None and code < 0 else f"status {code}"


def _last_words(daw: ArdourProcess) -> str:
    """What Ardour printed last, apart from the echo of our own Lua lines and the values they printed."""
    said = [line for line in daw.log if line.strip() and not line.startswith((">", "=")) and "@@" not in line]
    return f": {_short(said[-1])}" if said else ""


def take_id(session: ArdourSession, stream: str, first: int, last: int, period: int) -> str:
    """``ardour-`` and 16 hex digits: the session file's bytes, every file under the session's
    ``interchange`` folder (its MIDI and audio sources), Ardour's version, the range, the period
    and the stream. Never a path."""
    digest = hashlib.sha256()
    digest.update(f"{TAKE_FORMAT}|{stream}|{first}|{last}|{period}|{ardour_version()}|".encode())
    digest.update(hashlib.sha256(session.file.read_bytes()).digest())
    sources = session.folder / "interchange"
    for file in sorted(p for p in sources.rglob("*") if p.is_file()) if sources.is_dir() else []:
        digest.update(str(file.relative_to(sources)).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return "ardour-" + digest.hexdigest()[:16]


@cache
def ardour_version() -> str:
    try:
        done = subprocess.run([LUA, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "unknown"


def _lua(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _short(text: str, limit: int = 300) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit - 3] + "..."
