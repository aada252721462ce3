"""Notes from MIDI messages on their samples, with the sustain pedal applied.

One rule for everything that turns events into notes: the offline host applies it to the note
lengths a Faust instrument hears (Faust hears note on/off only: plugin/offline/dawdreamer.py), and it is
the rule docs/dataset.md gives for a stream's notes. A note sounds from its note-on sample to
its note-off sample (a note-on at velocity 0 is a note-off). A note released while its
channel's sustain pedal (CC 64, down at 64 and above) is down sounds until the pedal comes
up; a note struck again while still sounding ends where the new one starts; a note never
released sounds to ``end``. Every note lasts at least one sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .midi import midi_channel

NOTE_OFF, NOTE_ON, CONTROL, SUSTAIN = 0x80, 0x90, 0xB0, 64


class NoteSpan(NamedTuple):
    """One note: it sounds on samples ``on`` to ``off - 1``."""

    on: int
    off: int
    pitch: int
    velocity: int
    channel: int


def note_spans(events: Iterable[tuple[int, bytes]], end: int) -> list[NoteSpan]:
    """The notes of ``(sample, message)`` events given in stream order, sorted by onset;
    notes that start on one sample keep the order of their note-ons."""
    sounding: dict[tuple[int, int], tuple[int, int, int]] = {}  # (channel, pitch) -> (order, on, velocity)
    sustained: dict[int, set[tuple[int, int]]] = {}
    pedal: dict[int, bool] = {}
    spans: list[tuple[int, int, NoteSpan]] = []  # (on, order, span): order keeps the stream's order on one sample

    def stop(key: tuple[int, int], sample: int) -> None:
        if key in sounding:
            order, on, velocity = sounding.pop(key)
            spans.append((on, order, NoteSpan(on, max(sample, on + 1), key[1], velocity, key[0])))

    for order, (sample, data) in enumerate(events):
        channel = midi_channel(data)
        if channel is None or len(data) < 3:
            continue  # system messages, and the two-byte ones (program change, channel pressure)
        status = data[0] & 0xF0
        if status == NOTE_ON and data[2] > 0:
            key = (channel, data[1])
            stop(key, sample)
            sustained.get(channel, set()).discard(key)
            sounding[key] = (order, sample, data[2])
        elif status in (NOTE_OFF, NOTE_ON):
            key = (channel, data[1])
            if pedal.get(channel):
                sustained.setdefault(channel, set()).add(key)
            else:
                stop(key, sample)
        elif status == CONTROL and data[1] == SUSTAIN:
            down = data[2] >= 64
            if pedal.get(channel) and not down:
                for key in sorted(sustained.pop(channel, set())):
                    stop(key, sample)
            pedal[channel] = down
    for key in list(sounding):
        stop(key, end)
    spans.sort(key=lambda item: (item[0], item[1]))
    return [span for _, _, span in spans]
