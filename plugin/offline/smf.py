"""The standard MIDI files the offline hosts read: events on their exact samples, or on the tempo map.

DawDreamer's plugin processors read a file in seconds: ``write_clock_midi`` makes one whose
clock is samples, so every event plays on its own sample. FluidSynth plays a file on its
tempo map: ``write_tempo_midi`` writes the timeline's tempo map and the events on their ticks.
Both lay their messages on delta times with ``sendlearn.capture.midi.delta_track``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import mido

from sendlearn.capture.midi import delta_track
from sendlearn.plugin.offline.errors import RenderError
from sendlearn.plugin.session.timeline import TimedEvent, Timeline

PROGRAM_CHANGE, DRUM_CHANNEL = 0xC0, 9


def write_clock_midi(path: Path, events: Iterable[tuple[int, bytes]], sample_rate: int) -> None:
    """A MIDI file whose clock is samples: one tick is half a sample, event ``k`` sits on
    tick ``2k + 1`` (the middle of sample ``k``), so any reader that floors lands on ``k``.
    ``events`` are ``(sample, message)`` in sample order.

    With ``T`` ticks per quarter and ``tempo`` µs per quarter, a tick lasts
    ``tempo / (1e6 T)`` s; that is ``1 / (2 sr)`` when ``tempo = 1e6 T / (2 sr)``, an integer
    for the smallest ``T = 2 sr / gcd(2 sr, 1e6)`` (12 at 48 kHz, 441 at 44.1 kHz). A rate
    for which that ``T`` or tempo does not fit a MIDI file is a RenderError.
    """
    ticks = 2 * sample_rate // math.gcd(2 * sample_rate, 1_000_000)
    tempo = 1_000_000 * ticks // (2 * sample_rate)
    if ticks > 0x7FFF or not 1 <= tempo < (1 << 24):
        raise RenderError(f"no exact sample clock MIDI file for {sample_rate} Hz")
    timed = [(0, mido.MetaMessage("set_tempo", tempo=tempo))]
    timed += [(2 * sample + 1, mido.Message.from_bytes(data)) for sample, data in events]
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    midi.tracks.append(delta_track(timed))
    midi.save(str(path))


def write_tempo_midi(path: Path, timeline: Timeline, events: Iterable[TimedEvent], *, program: int | None) -> None:
    """A type-0 file with the timeline's tempo map and ``events`` on their own ticks.

    ``program`` forces one GM program: the file's program changes are left out and one is
    sent on every channel at tick 0 (channel 10 keeps its drum kit)."""
    events = list(events)
    timed: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (seg.tick, 0, mido.MetaMessage("set_tempo", tempo=seg.tempo)) for seg in timeline.tempos
    ]
    if program is not None:
        channels = sorted({e.channel for e in events if e.channel is not None and e.channel != DRUM_CHANNEL})
        timed += [(0, 1, mido.Message("program_change", channel=ch, program=program)) for ch in channels]
    for order, event in enumerate(events, start=2):
        if program is not None and event.data[0] & 0xF0 == PROGRAM_CHANGE:
            continue
        timed.append((event.tick, order, mido.Message.from_bytes(event.data)))
    timed.sort(key=lambda item: (item[0], item[1]))
    midi = mido.MidiFile(type=0, ticks_per_beat=timeline.ticks_per_beat)
    midi.tracks.append(delta_track((tick, message) for tick, _, message in timed))
    midi.save(str(path))
