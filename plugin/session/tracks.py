"""What a session is made of: tracks, their effects and automation lanes, and the stream ids they write.

Plain values, checked by ``plugin.session`` when a session file is loaded (docs/session.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sendlearn.plugin.session.instrument import Instrument

DEFAULT_BPM = 120.0
DEFAULT_METER = (4, 4)


@dataclass(frozen=True, slots=True)
class Automation:
    """One parameter lane: ``points`` are (time, value), time in ``unit`` (seconds or
    quarter-note beats from the start on the track's tempo map); linear between points."""

    param: str
    points: tuple[tuple[float, float], ...]
    unit: str = "seconds"


@dataclass(frozen=True, slots=True)
class Effect:
    """A pedalboard built-in effect: class ``name``, its constructor's keyword options, and
    ``id``, the name its automation lanes use (``id.param``; default: ``name`` in lower case,
    ``name#2`` for a repeat). An empty ``id`` (made in code) means the default."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    id: str = ""


@dataclass(frozen=True, slots=True)
class Track:
    """A track: ``midi`` + ``instrument`` (one stream), or a recording ``audio`` (two streams,
    ``NAME-dry`` and ``NAME-wet``) whose clock is an optional ``midi`` conductor or ``bpm``
    and ``meter``. ``instrument`` is None for a recording."""

    name: str
    midi: Path | None
    instrument: Instrument | None
    gain_db: float = 0.0
    effects: tuple[Effect, ...] = ()
    automation: tuple[Automation, ...] = ()
    audio: Path | None = None
    bpm: float = DEFAULT_BPM
    meter: tuple[int, int] = DEFAULT_METER

    @property
    def recorded(self) -> bool:
        return self.audio is not None

    @property
    def host(self) -> str:
        """What makes the track's (wet) audio: goes into StreamInfo.host."""
        return "pedalboard" if self.instrument is None else self.instrument.host

    def effect_ids(self) -> list[str]:
        return effect_ids(self.effects)

    def effect_lanes(self) -> tuple[Automation, ...]:
        """The lanes that move an effect's parameter (``id.param``); the rest go to the instrument."""
        ids = set(self.effect_ids())
        return tuple(a for a in self.automation if a.param.split(".", 1)[0] in ids and "." in a.param)

    def instrument_lanes(self) -> tuple[Automation, ...]:
        effect = set(self.effect_lanes())
        return tuple(a for a in self.automation if a not in effect)


def effect_ids(effects: tuple[Effect, ...] | list[Effect]) -> list[str]:
    """Each effect's id: its own, or its class name in lower case (``name#2``, ``#3`` for repeats)."""
    taken: list[str] = []
    for effect in effects:
        if effect.id:
            taken.append(effect.id)
            continue
        base = effect.name.lower()
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}#{n}"
        taken.append(candidate)
    return taken


def dry_stream_name(track: str) -> str:
    return f"{track}-dry"


def wet_stream_name(track: str) -> str:
    return f"{track}-wet"


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    sample_rate: int
    block_size: int
    tracks: tuple[Track, ...]
    path: Path | None = None  # the session file, None when made from a plain .mid
    # the file's [meta] table: session facts every stream's stream.json ``meta`` carries (performer,
    # piece...), which ``sendlearn sequences --split-by KEY`` groups sessions by
    meta: tuple[tuple[str, str | int | float | bool], ...] = ()


def track_streams(track: Track) -> list[str]:
    """The ids of the streams a track writes (a gm track: the longest, ``NAME-ch16``)."""
    if track.recorded:
        return [dry_stream_name(track.name), wet_stream_name(track.name)]
    if track.instrument is not None and track.instrument.kind == "gm":
        return [gm_stream_name(track.name, 15)]
    return [track.name]


def gm_stream_name(track: str, channel: int) -> str:
    """Stream id of a General MIDI track's 0-based ``channel``: ``keys-ch10`` is the drums."""
    return f"{track}-ch{channel + 1}"
