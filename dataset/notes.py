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

from sendlearn.capture.notes import note_spans

from .schema import NOTES_SCHEMA


def note_table(samples: list[int], messages: list[bytes], end: int) -> pa.Table:
    """The notes of events ``(samples[i], messages[i])``, in stream order, as NOTES_SCHEMA rows:
    the renderer's own rule (capture/notes.py), so the notes stored are the notes it played."""
    spans = note_spans(zip(samples, messages, strict=True), end)
    return pa.table({"start": [s.on for s in spans], "end": [s.off for s in spans],
                     "pitch": [s.pitch for s in spans], "velocity": [s.velocity for s in spans],
                     "channel": [s.channel for s in spans]}, schema=NOTES_SCHEMA)


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
