"""Take ids of offline renders: what a stream's blocks depend on, digested by content.

A render is deterministic, so the same inputs make the same blocks, and the take id says
"these inputs": the session's clock (name, rate, block size), the stream, the track's own
settings (gain, effects, automation, tempo and meter of a recording), the bytes of its MIDI
and audio files, the instrument's content (a ``.dsp``'s source, a plugin's binary, a
soundfont's bytes) and the versions of the libraries that render it. Never a path: the same
file under another install prefix or folder is the same take, and a changed file at the same
path is another one. A batch rerun skips a stream whose ``stream.json`` is complete with its
take id; a receiver resumes a stream cut off under the same take.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sendlearn.capture import StreamInfo
from sendlearn.plugin.session.instrument import Instrument
from sendlearn.plugin.session.tracks import Session, Track

TAKE_FORMAT = 3  # bump when what goes into a take id changes (3: Faust voices follow the input)


def take_id(session: Session, track: Track, stream: str) -> str:
    """``render-`` and 16 hex digits of the digest of everything ``stream``'s blocks depend on."""
    description = {
        "format": TAKE_FORMAT,
        "session": [session.name, session.sample_rate, session.block_size],
        "stream": stream,
        "track": track_description(track),
        "libraries": library_versions(track),
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return "render-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def render_take(session: Session, info: StreamInfo) -> str:
    """The take id of the offline render of stream ``info`` of ``session`` (its track is
    ``info.track``). Renders are deterministic, so the same inputs make the same take: a render
    that was cut off resumes where the receiver stopped, and one already complete is
    acknowledged at once instead of written again."""
    track = next(t for t in session.tracks if info.track == t.name)
    return take_id(session, track, info.stream)


def track_description(track: Track) -> dict[str, Any]:
    """The track's settings with every file replaced by the digest of its content."""
    return {
        "name": track.name,
        "midi": None if track.midi is None else file_digest(track.midi),
        "audio": None if track.audio is None else file_digest(track.audio),
        "instrument": None if track.instrument is None else instrument_description(track.instrument),
        "gain_db": track.gain_db,
        "effects": [[e.name, [list(o) for o in e.options], e.id] for e in track.effects],
        "automation": [[a.param, [list(p) for p in a.points], a.unit] for a in track.automation],
        "bpm": track.bpm,
        "meter": list(track.meter),
    }


def instrument_description(instrument: Instrument) -> dict[str, Any]:
    return {"kind": instrument.kind, "voices": instrument.voices, "program": instrument.program,
            "content": None if instrument.path is None else file_digest(instrument.path)}


def library_versions(track: Track) -> dict[str, str]:
    """The versions of what renders the track: DawDreamer (and its Faust), pedalboard for
    effect chains and recordings, FluidSynth for soundfonts."""
    versions: dict[str, str] = {}
    host = track.instrument.host if track.instrument is not None else None
    if host == "dawdreamer":
        versions["dawdreamer"] = _package_version("dawdreamer")
    if host == "fluidsynth":
        versions["fluidsynth"] = fluidsynth_version()
    if track.effects or track.recorded:
        versions["pedalboard"] = _package_version("pedalboard")
    return versions


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (a VST3 bundle): their relative paths
    and bytes. Cached by path, size and modification time: a thousand renders through one
    instrument read it once."""
    path = Path(path)
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@cache
def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=1)
def fluidsynth_version() -> str:
    """The first line of ``fluidsynth --version`` (``absent`` when it is not installed)."""
    try:
        done = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"
