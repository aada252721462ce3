"""How many voices a Faust instrument gets for one input, and which notes still lose theirs.

Faust's polyphonic wrapper (the one DawDreamer runs) keeps a fixed pool of voices. A note-on
that finds every voice busy steals one: the oldest voice in its release ("Steal release
voice", a tail cut off), else the oldest playing one ("Steal playing voice", printed on
stderr). In DawDreamer 0.9 a playing steal picks no voice at all (it prints ``voice = -4``):
the new note is lost ("Playing pitch = N not found" at its note-off) and the wrapper writes
outside its voice table, which gives the wild, non-deterministic values (-3e7, 1e38, ...) on
the samples around the steal. Measured there too: the host ends a voice shortly after its
note-off whatever ``release_length`` says, so a release tail holds a voice for less than the
envelope's release. Counting the whole release, as we do, gives more voices than the host
needs; the steals counted are those of a host that keeps every tail (tests/test_voices.py
checks the count against the host's prints where the two agree: notes that start together).

So the host gives each input enough voices: its maximum polyphony, counting each note from
its note-on to its note-off plus the instrument's release (plus two render blocks of
slack: the wrapper frees voices once a block), up to the instrument's limit, never below the
session's ``voices``. Where the polyphony is above the limit, the steals are counted with the
same model: ``VoicePlan.stolen`` is the note-on sample of every note that found no free voice.
A note that finds every voice *playing* is not sent to the host at all (``VoicePlan.dropped``):
the note would be lost in DawDreamer anyway, and leaving it out keeps the rest of the audio sane.

The instrument's release and limit are read from its ``.dsp`` metadata::

    declare release "0.4";     // seconds from note-off to silence (the envelope's release)
    declare max_voices "64";   // the most voices this instrument may be given

A ``.dsp`` without them gets ``DEFAULT_RELEASE`` (2 s: conservative, it can only give more
voices than needed) and ``DEFAULT_MAX_VOICES``.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["DEFAULT_MAX_VOICES", "DEFAULT_RELEASE", "HOST_MAX_VOICES", "STOLEN_SAMPLES_CAP", "DspVoicing",
           "VoicePlan", "dsp_voicing", "plan_voices"]

DEFAULT_RELEASE = 2.0  # seconds: a .dsp that does not declare its release
DEFAULT_MAX_VOICES = 64  # a .dsp that does not declare max_voices
HOST_MAX_VOICES = 256  # the most any .dsp may declare
STOLEN_SAMPLES_CAP = 1000  # stream.json lists the first this many stolen note-on samples

_RELEASE = re.compile(r'^\s*declare\s+release\s+"([^"]*)"', re.MULTILINE)
_MAX_VOICES = re.compile(r'^\s*declare\s+max_voices\s+"([^"]*)"', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class DspVoicing:
    """What a ``.dsp`` says about its voices: release seconds and the most voices it may get."""

    release: float
    max_voices: int


def dsp_voicing(path: Path) -> DspVoicing:
    """The release and voice limit declared in ``path`` (defaults where it declares none).
    Raises ValueError on a declaration that is not a number in range."""
    path = Path(path)
    stat = path.stat()
    return _voicing(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _voicing(path: str, size: int, mtime_ns: int) -> DspVoicing:
    text = Path(path).read_text(errors="replace")
    release, limit = DEFAULT_RELEASE, DEFAULT_MAX_VOICES
    if (found := _RELEASE.search(text)) is not None:
        try:
            release = float(found.group(1))
        except ValueError:
            release = math.nan
        if not 0.0 <= release <= 60.0:
            raise ValueError(f"{path}: declare release {found.group(1)!r} is not seconds in 0..60")
    if (found := _MAX_VOICES.search(text)) is not None:
        value = found.group(1).strip()
        if not value.isdigit() or not 1 <= int(value) <= HOST_MAX_VOICES:
            raise ValueError(f"{path}: declare max_voices {found.group(1)!r} is not an integer in 1..{HOST_MAX_VOICES}")
        limit = int(value)
    return DspVoicing(release, limit)


@dataclass(frozen=True, slots=True)
class VoicePlan:
    """The voices an input gets, the polyphony that asked for them, the note-on sample of
    every note that found every voice busy (sorted), and which of those found every voice
    *playing* (``dropped``: their indices in the notes given, which the host is not sent)."""

    voices: int
    polyphony: int
    stolen: tuple[int, ...]
    dropped: frozenset[int] = frozenset()

    def meta(self) -> tuple[tuple[str, int | list[int]], ...]:
        """Facts for stream.json: ``voices``, ``polyphony``, ``voices_stolen``, the first
        ``STOLEN_SAMPLES_CAP`` of ``stolen_samples``, and ``notes_dropped`` (how many of the
        stolen found every voice playing and were left out)."""
        return (("voices", self.voices), ("polyphony", self.polyphony), ("voices_stolen", len(self.stolen)),
                ("stolen_samples", list(self.stolen[:STOLEN_SAMPLES_CAP])), ("notes_dropped", len(self.dropped)))


def plan_voices(spans: Iterable[tuple[int, int]], *, release_frames: int, floor: int, limit: int,
                slack: int = 0) -> VoicePlan:
    """The voices for notes ``spans`` ((on, off) samples): ``max(floor, min(polyphony, limit))``.

    A note is busy from ``on`` until ``off + release_frames + slack``. ``polyphony`` is the
    most notes busy at once; ``stolen`` replays the notes through that many voices the way
    Faust allocates them."""
    notes = list(spans)
    order = sorted(range(len(notes)), key=lambda i: (notes[i], i))
    hold = release_frames + slack
    polyphony = _polyphony([(notes[i][0], notes[i][1] + hold) for i in order])
    voices = max(floor, min(polyphony, limit))
    if polyphony <= voices:
        return VoicePlan(voices, polyphony, ())
    stolen, dropped = _steals([(i, *notes[i]) for i in order], voices, hold)
    return VoicePlan(voices, polyphony, tuple(stolen), frozenset(dropped))


def _polyphony(intervals: Sequence[tuple[int, int]]) -> int:
    """The most half-open intervals [start, end) that overlap."""
    ends: list[int] = []
    most = 0
    for start, end in intervals:  # sorted by start
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        heapq.heappush(ends, end)
        most = max(most, len(ends))
    return most


def _steals(notes: Sequence[tuple[int, int, int]], voices: int, hold: int) -> tuple[list[int], list[int]]:
    """(index, on, off) of every note, by note-on: the note-on samples of the notes that
    found all ``voices`` busy, and the indices of those that found them all playing.

    A busy voice is (on, off, free_at). A note that finds one in its release (its note-off
    strictly before this note-on) takes the oldest such voice: its tail is cut. A note that
    finds every voice playing is left out: Faust would steal the oldest playing voice, but
    DawDreamer 0.9's wrapper picks no voice there and writes outside its voice table (the
    blow-up), and the note is lost all the same."""
    pool: list[tuple[int, int, int]] = []
    stolen: list[int] = []
    dropped: list[int] = []
    for index, on, off in notes:
        pool = [v for v in pool if v[2] > on]
        if len(pool) >= voices:
            stolen.append(on)
            releasing = [v for v in pool if v[1] < on]
            if not releasing:
                dropped.append(index)
                continue
            pool.remove(min(releasing))
        pool.append((on, off, off + hold))
    return stolen, dropped
