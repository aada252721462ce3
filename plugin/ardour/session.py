"""What an Ardour session file says, read before Ardour runs: that it is an Ardour session at
all, its rate, its routes (tracks and the master bus), the audio ports each outputs to and the
plugins each names. Bad input is found here, one line naming the path (``ArdourSessionError``,
exit 2), so a render never starts Ardour on a folder it cannot load."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sendlearn.errors import UsageError
from sendlearn.plugin.session.inputs import ARDOUR_SUFFIX as SUFFIX
from sendlearn.plugin.session.inputs import ardour_snapshot

OLDEST, NEWEST = 3000, 7999  # session format versions Ardour 7 loads (7.x writes 7000-7003)
PLUGIN_TYPES = {"lv2", "ladspa", "luaproc", "windows-vst", "lxvst", "mac-vst", "vst3", "audiounit"}
MASTER_FLAG = "MasterOut"
SUPERCLOCK = 282240000  # Ardour 7's superclock ticks a second: audio-time positions are "a<ticks>"


class ArdourSessionError(UsageError):
    """A path that is not an Ardour session this Ardour can load: exit 2, naming the path."""


@dataclass(frozen=True)
class Route:
    """A track or the master bus: its name, its audio output ports (``<name>/audio_out 1``, …,
    as Ardour names them in JACK) and the plugins it holds (names as the session file says)."""

    name: str
    outputs: tuple[str, ...]
    plugins: tuple[str, ...]
    master: bool
    midi: bool
    midi_output: str | None = None  # the MIDI a MIDI track plays leaves by this port (``<name>/midi_out 1``)


@dataclass(frozen=True)
class ArdourSession:
    folder: Path
    file: Path  # the snapshot's .ardour file
    name: str  # the snapshot's name (the file's stem), what load_session takes
    version: int
    sample_rate: int
    created_with: str
    routes: tuple[Route, ...]
    # the session range's start and end in superclock ticks, when the file keeps it in audio time
    session_range: tuple[int, int] | None = None

    def range_samples(self) -> set[tuple[int, int]]:
        """The first and end samples the session range may mean: a position between two samples
        is one or the other as Ardour's release rounds it (floor or nearest)."""
        if self.session_range is None:
            return set()
        ends = [{value * self.sample_rate // SUPERCLOCK, round(value * self.sample_rate / SUPERCLOCK)}
                for value in self.session_range]
        return {(first, last) for first in ends[0] for last in ends[1]}

    @property
    def tracks(self) -> list[Route]:
        return [r for r in self.routes if not r.master]

    @property
    def master(self) -> Route | None:
        return next((r for r in self.routes if r.master), None)


def session_file(path: Path) -> Path:
    """The .ardour file ``path`` names: itself, or the folder's snapshot named like the folder
    (Ardour's main snapshot), or its only one."""
    if path.is_file():
        return path
    if not path.exists():
        raise ArdourSessionError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise ArdourSessionError(f"{path}: not an Ardour session (no .ardour file)")
    snapshot = ardour_snapshot(path)
    if snapshot is not None:
        return snapshot
    snapshots = sorted(p for p in path.glob(f"*{SUFFIX}") if p.is_file())
    if not snapshots:
        raise ArdourSessionError(f"{path}: not an Ardour session (no .ardour file)")
    names = ", ".join(p.name for p in snapshots)
    raise ArdourSessionError(f"{path}: several snapshots ({names}) and none named like the folder: name the .ardour file")


def read_session(path: Path) -> ArdourSession:
    """The session at ``path`` (a folder or its .ardour file), or ``ArdourSessionError``."""
    file = session_file(path)
    try:
        root = ET.parse(file).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
        raise ArdourSessionError(f"{file}: not an Ardour session ({exc})") from None
    if root.tag != "Session":
        raise ArdourSessionError(f"{file}: not an Ardour session (its XML root is <{root.tag}>)")
    version = _int(root.get("version"), file, "version")
    if not OLDEST <= version <= NEWEST:
        raise ArdourSessionError(f"{file}: session format {version}, which Ardour 7 cannot load "
                                 f"(it loads {OLDEST}-{NEWEST})")
    rate = _int(root.get("sample-rate"), file, "sample-rate")
    program = root.find("ProgramVersion")
    created = "" if program is None else program.get("created-with", "")
    routes = root.find("Routes")
    return ArdourSession(file.parent, file, file.stem, version, rate, created,
                         tuple(_route(r) for r in ([] if routes is None else routes.findall("Route"))),
                         _session_range(root))


def _session_range(root: ET.Element) -> tuple[int, int] | None:
    """The session range as the file holds it, so a batch can tell a complete take without
    starting Ardour; None when it is kept in beat time (the render asks Ardour)."""
    for location in root.iter("Location"):
        if "IsSessionRange" in location.get("flags", "").split(","):
            ends = [location.get(key, "") for key in ("start", "end")]
            if all(e.startswith("a") and e[1:].isdigit() for e in ends):
                return int(ends[0][1:]), int(ends[1][1:])
    return None


def _route(element: ET.Element) -> Route:
    name = element.get("name", "")
    info = element.find("PresentationInfo")
    flags = "" if info is None else info.get("flags", "")
    outputs: list[str] = []
    midi: list[str] = []
    for io in element.findall("IO"):
        if io.get("direction") == "Output":
            outputs += [p.get("name", "") for p in io.findall("Port") if p.get("type") == "audio"]
            midi += [p.get("name", "") for p in io.findall("Port") if p.get("type") == "midi"]
    plugins = tuple(p.get("name", "") for p in element.findall("Processor") if p.get("type") in PLUGIN_TYPES)
    is_midi = element.get("default-type") == "midi"
    return Route(name, tuple(outputs), plugins, MASTER_FLAG in flags.split(","), is_midi,
                 midi[0] if is_midi and midi else None)


def _int(text: str | None, file: Path, what: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise ArdourSessionError(f"{file}: not an Ardour session (<Session {what}={text!r}>)") from None
