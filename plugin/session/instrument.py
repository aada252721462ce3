"""Instrument specs: which instrument renders a track, parsed from ``--instrument`` or a session.

    faust:NAME                a bundled Faust instrument (``list_instruments()``)
    faust:FILE.dsp            a Faust file of your own (polyphonic: it must use freq, gain, gate)
    plugin:PATH               a VST2 ``.so`` or a VST3 that DawDreamer loads
    soundfont:PATH[:PROGRAM]  a soundfont through FluidSynth; PROGRAM (0-127) forces one GM program
    gm                        General MIDI through FluidSynth, one stream per MIDI channel

Faust and plugins render in DawDreamer and are sample-exact; FluidSynth is not (its onsets
lag by tens of frames), so its streams are realistic stems, not ground truth for timing.
A Faust file may declare its release and voice limit (``declare release "0.4";``,
``declare max_voices "64";``): how many voices an input gets (plugin/session/voices.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BUNDLED_DIR = Path(__file__).parent.parent / "instruments"  # plugin/instruments/
GM_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
DEFAULT_INSTRUMENT = "faust:poly_saw"
DEFAULT_VOICES = 8  # a floor: each input gets its polyphony, up to the .dsp's max_voices
MAX_VOICES = 64
KINDS = ("faust", "plugin", "soundfont", "gm")

_DESCRIPTION = re.compile(r'^\s*declare\s+description\s+"([^"]*)"', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A resolved instrument: ``kind`` is one of KINDS and ``path`` exists (None for no file)."""

    kind: str
    path: Path | None
    voices: int = DEFAULT_VOICES  # faust: the fewest voices an input gets (plugin/session/voices.py)
    program: int | None = None  # soundfont: GM program forced on every channel

    @property
    def host(self) -> str:
        """What renders it: goes into StreamInfo.host."""
        return "fluidsynth" if self.kind in ("soundfont", "gm") else "dawdreamer"

    @property
    def exact(self) -> bool:
        """True when the audio starts on the note-on sample the host asked for."""
        return self.host == "dawdreamer"

    def __str__(self) -> str:
        if self.kind == "gm":
            return "gm"
        if self.kind == "soundfont" and self.program is not None:
            return f"soundfont:{self.path}:{self.program}"
        return f"{self.kind}:{self.path}"


def bundled_instruments() -> dict[str, Path]:
    """Name -> file of every Faust instrument shipped in the package."""
    return {path.stem: path for path in sorted(BUNDLED_DIR.glob("*.dsp"))}


def list_instruments() -> list[tuple[str, str]]:
    """(spec, description) of every bundled instrument, plus ``gm``, for ``--list-instruments``."""
    rows = []
    for name, path in bundled_instruments().items():
        found = _DESCRIPTION.search(path.read_text())
        rows.append((f"faust:{name}", found.group(1) if found else ""))
    rows.append(("gm", f"General MIDI through FluidSynth ({GM_SOUNDFONT.name}), one stream per MIDI channel"))
    return rows


def parse_instrument(spec: str, *, base: Path | None = None) -> Instrument:
    """Parse a ``--instrument`` spec; relative paths are taken from ``base`` (default: cwd)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("instrument spec is empty; expected faust:NAME, faust:FILE.dsp, plugin:PATH, "
                         "soundfont:PATH[:PROGRAM] or gm")
    spec = spec.strip()
    if spec == "gm":
        return gm_instrument()
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"instrument spec {spec!r} is not KIND:VALUE or gm (kinds: faust, plugin, soundfont)")
    if kind == "faust":
        return faust_instrument(rest, base=base)
    if kind == "plugin":
        return plugin_instrument(rest, base=base)
    if kind == "soundfont":
        path, program = rest, None
        head, _, tail = rest.rpartition(":")
        if head and tail.isdigit():  # a trailing :N is the program; a path may hold ':' itself
            path, program = head, int(tail)
        return soundfont_instrument(path, program, base=base)
    raise ValueError(f"instrument spec {spec!r}: unknown kind {kind!r} (faust, plugin, soundfont or gm)")


def faust_instrument(value: str, *, voices: int = DEFAULT_VOICES, base: Path | None = None) -> Instrument:
    """A bundled name (``poly_saw`` or ``poly_saw.dsp``) or a ``.dsp`` file (a file wins)."""
    if type(voices) is not int or not 1 <= voices <= MAX_VOICES:
        raise ValueError(f"faust voices must be an int in 1..{MAX_VOICES}, got {voices!r}")
    bundled = bundled_instruments()
    candidate = _resolve(value, base)
    if value.endswith(".dsp") and candidate.is_file():
        return Instrument("faust", candidate, voices=voices)
    name = value[:-4] if value.endswith(".dsp") else value
    if name in bundled:
        return Instrument("faust", bundled[name], voices=voices)
    if value.endswith(".dsp"):
        raise ValueError(f"faust file {candidate} does not exist (and {name!r} is not a bundled instrument)")
    raise ValueError(f"faust instrument {value!r} is not bundled (bundled: {', '.join(bundled)}) "
                     "and is not a .dsp file")


def plugin_instrument(value: str, *, base: Path | None = None) -> Instrument:
    path = _resolve(value, base)
    if not path.exists():  # a VST3 is a folder; a VST2 a .so file
        raise ValueError(f"plugin {path} does not exist")
    if path.suffix not in (".so", ".vst3", ".dll", ".vst"):
        raise ValueError(f"plugin {path} is not a VST2 .so or a .vst3")
    return Instrument("plugin", path)


def soundfont_instrument(value: str, program: int | None = None, *, base: Path | None = None) -> Instrument:
    path = _resolve(value, base)
    if not path.is_file():
        raise ValueError(f"soundfont {path} does not exist")
    if program is not None and (type(program) is not int or not 0 <= program <= 127):
        raise ValueError(f"soundfont program must be an int in 0..127, got {program!r}")
    return Instrument("soundfont", path, program=program)


def gm_instrument(soundfont: str | Path | None = None, *, base: Path | None = None) -> Instrument:
    path = GM_SOUNDFONT if soundfont is None else _resolve(str(soundfont), base)
    if not path.is_file():
        raise ValueError(f"General MIDI soundfont {path} does not exist (apt install timgm6mb-soundfont)")
    return Instrument("gm", path)


def _resolve(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path
