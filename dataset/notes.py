"""Notes from a stream's MIDI events, and the piano roll built from them.

A note sounds from its note-on sample to its note-off sample (a note-on at velocity 0 is a
note-off). The sustain pedal (CC 64 ≥ 64 down) is applied as the renderer applies it to the
instruments: a note released while its channel's pedal is down sounds until the pedal comes up.
A note struck again while still sounding ends where the new one starts; a note never released
sounds to the end of the stream. Every note lasts at least one sample.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .schema import NOTES_SCHEMA

NOTE_OFF, NOTE_ON, CONTROL, SUSTAIN = 0x80, 0x90, 0xB0, 64


def note_table(samples: list[int], messages: list[bytes], end: int) -> pa.Table:
    """The notes of events ``(samples[i], messages[i])``, in stream order, as NOTES_SCHEMA rows."""
    sounding: dict[tuple[int, int], tuple[int, int, int]] = {}  # (channel, pitch) -> (order, on, velocity)
    sustained: dict[int, set[tuple[int, int]]] = {}
    pedal: dict[int, bool] = {}
    spans: list[tuple[int, int, int, int, int, int]] = []  # (on, order, off, pitch, velocity, channel)

    def stop(key: tuple[int, int], sample: int) -> None:
        if key in sounding:
            order, on, velocity = sounding.pop(key)
            spans.append((on, order, max(sample, on + 1), key[1], velocity, key[0]))

    for order, (sample, data) in enumerate(zip(samples, messages, strict=True)):
        if data[0] >= 0xF0 or len(data) < 3:
            continue
        status, channel = data[0] & 0xF0, data[0] & 0x0F
        if status == NOTE_ON and data[2] > 0:
            key = (channel, data[1])
            stop(key, sample)
            sustained.get(channel, set()).discard(key)
            sounding[key] = (order, sample, data[2])
        elif status == NOTE_OFF or status == NOTE_ON:
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
        stop(key, max(end, sounding[key][1] + 1))
    spans.sort()
    columns = list(zip(*spans, strict=True)) if spans else [()] * 6
    return pa.table({"start": columns[0], "end": columns[2], "pitch": columns[3], "velocity": columns[4],
                     "channel": columns[5]}, schema=NOTES_SCHEMA)


def piano_roll(notes: pa.Table, start_sample: int, frames: int, hop: int = 512) -> np.ndarray:
    """``(128, T)`` float32, T = ``1 + frames // hop`` (librosa's frame count with ``center=True``).

    Cell ``[p, t]`` is the velocity of pitch ``p`` when a note of ``p`` sounds at window sample
    ``t * hop`` (note-on ≤ t·hop < note-off, re-based to ``start_sample``), else 0; where notes of
    one pitch overlap (two channels), the louder one.
    """
    count = 1 + frames // hop
    roll = np.zeros((128, count), dtype=np.float32)
    starts = notes["start"].to_numpy() - start_sample
    ends = notes["end"].to_numpy() - start_sample
    pitches = notes["pitch"].to_numpy()
    velocities = notes["velocity"].to_numpy()
    first = np.maximum(0, -(-starts // hop))  # first frame t with t*hop >= start
    last = np.minimum(count, -(-ends // hop))  # frames t with t*hop < end
    for pitch, velocity, a, b in zip(pitches, velocities, first, last, strict=True):
        if a < b:
            np.maximum(roll[pitch, a:b], velocity, out=roll[pitch, a:b])
    return roll
