"""What ``sendlearn render`` takes: INPUT files (``.mid``, ``.toml``), Ardour sessions (a folder
holding a ``.ardour`` file, or that file; plugin/ardour renders them) and directories of these.

``find_inputs`` turns the command line's paths into inputs (a directory is searched); a
``LoadedInput`` is one input made a ``Session``, with every MIDI file its tracks name parsed
into a ``Timeline`` once: the same timelines check the file, tell which streams the session
writes and drive its render (``render_session(..., timelines=...)``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sendlearn.plugin.session.instrument import DEFAULT_INSTRUMENT
from sendlearn.plugin.session.reader import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_SAMPLE_RATE,
    Session,
    SessionError,
    load_session,
    safe_name,
    session_from_midi,
)
from sendlearn.plugin.session.timeline import MIDI_ERRORS, Timeline

SUFFIXES = (".mid", ".midi", ".toml")
ARDOUR_SUFFIX = ".ardour"


@dataclass(frozen=True, slots=True)
class Input:
    """One file of a batch, and the session name a ``.mid`` gets (None: named after the file)."""

    path: Path
    name: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedInput:
    """An input as given (``path``), its session, and the timeline of each track that names a
    MIDI file, by track name."""

    path: Path
    session: Session
    timelines: Mapping[str, Timeline]


def find_inputs(paths: Iterable[Path]) -> list[Input]:
    """Paths as given; directories searched recursively for .mid, .midi and .toml files and
    Ardour session folders (sorted). A found ``.mid`` is named after its path inside the
    directory (``a/b.mid`` -> ``a_b``), so files of the same name in different folders make
    different sessions; one that a found session file names as a track's ``midi`` is left to
    that session. An Ardour session folder is one input named after its snapshot, and nothing
    inside it is another (its recorded takes are MIDI files Ardour plays itself)."""
    found: list[Input] = []
    for path in paths:
        if is_ardour_path(path):
            found.append(Input(path, ardour_name(path)))
            continue
        if not path.is_dir():
            found.append(Input(path))
            continue
        sessions = sorted({p.parent for p in path.rglob(f"*{ARDOUR_SUFFIX}") if p.is_file()})
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                       and not any(p.is_relative_to(s) for s in sessions))
        in_sessions = {m for f in files if f.suffix.lower() == ".toml" for m in _session_midi(f)}
        here: list[Input] = [Input(s, ardour_name(s)) for s in sessions]
        for file in files:
            if file.resolve() in in_sessions:
                continue  # a track of a session file found beside it, not an input of its own
            relative = file.relative_to(path).with_suffix("")
            here.append(Input(file, None if file.suffix.lower() == ".toml" else safe_name("_".join(relative.parts))))
        found += sorted(here, key=lambda item: item.path)
    return found


def is_ardour_path(path: Path) -> bool:
    """Whether ``path`` is meant as an Ardour session: a .ardour file, or a folder holding one."""
    if path.suffix.lower() == ARDOUR_SUFFIX:
        return True
    return path.is_dir() and any(path.glob(f"*{ARDOUR_SUFFIX}"))


def ardour_snapshot(folder: Path) -> Path | None:
    """The snapshot an Ardour session folder renders: the one named like the folder (Ardour's
    main snapshot), else its only one; None when there is no such one."""
    main = folder / f"{folder.name}{ARDOUR_SUFFIX}"
    if main.is_file():
        return main
    snapshots = [p for p in folder.glob(f"*{ARDOUR_SUFFIX}") if p.is_file()]
    return snapshots[0] if len(snapshots) == 1 else None


def ardour_name(path: Path) -> str | None:
    """The session an Ardour input writes (its snapshot's name), None if it cannot be told."""
    snapshot = path if path.suffix.lower() == ARDOUR_SUFFIX else ardour_snapshot(path)
    return None if snapshot is None else snapshot.stem


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
    if is_ardour_path(item.path):
        return item.name
    if item.path.suffix.lower() != ".toml":
        return item.name or safe_name(item.path.stem)
    try:
        name = tomllib.loads(item.path.read_text()).get("name")
    except (OSError, ValueError):
        return None
    return name if isinstance(name, str) else None


def load_input(path: Path, *, instrument: str | None = None, sample_rate: int | None = None,
               block_size: int | None = None, name: str | None = None) -> LoadedInput:
    """A ``.toml`` session file, or a ``.mid`` as a one-track session through ``instrument``
    (default: the bundled default) named ``name`` (default: after the file); ``sample_rate``
    and ``block_size`` override the session's. Anything that cannot be rendered is a
    SessionError naming the file (``read_timelines``)."""
    if path.suffix.lower() == ".toml":
        session = load_session(path, sample_rate=sample_rate, block_size=block_size)
    else:
        session = session_from_midi(path, instrument or DEFAULT_INSTRUMENT,
                                    sample_rate=sample_rate or DEFAULT_SAMPLE_RATE,
                                    block_size=block_size or DEFAULT_BLOCK_SIZE, name=name)
    return LoadedInput(path, session, read_timelines(session, path))


def read_timelines(session: Session, source: Path) -> dict[str, Timeline]:
    """The timeline of every track that names a MIDI file, by track name, each file parsed once.
    A file mido cannot read is a SessionError naming ``source`` (the input), the track's key
    in a session file, and mido's reason; mido's own exception is its ``__cause__``."""
    timelines: dict[str, Timeline] = {}
    for index, track in enumerate(session.tracks):
        if track.midi is None:
            continue
        try:
            timelines[track.name] = Timeline(track.midi, session.sample_rate)
        except MIDI_ERRORS as exc:
            key = "" if session.path is None else f"track[{index}].midi"
            raise SessionError(source, key, f"{track.midi} is not a readable MIDI file ({midi_problem(exc)})") from exc
    return timelines


def midi_problem(exc: BaseException) -> str:
    """mido's reason a file is not MIDI (it raises EOFError() with no message for a short file)."""
    return str(exc) or type(exc).__name__
