"""Quality of streams and windows (``sendlearn quality``; docs/dataset.md, "Quality").

Measures (rows of QUALITY_SCHEMA):
- ``silence_ratio``: share of 512-sample frames whose RMS (all channels) is below -60 dBFS.
- ``clip_ratio``: share of samples in runs of 3 or more at |x| ≥ 0.999 in some channel (one
  full-scale sample is an attack, three in a row are clipping; float audio over 1.0 counts).
- ``peak``, ``rms``: of all channels. ``degraded_fraction``: share of the stream's own samples
  that are not its lossless audio (gaps, ``REDUCED``, ``NONE``). ``gaps``: of the stream.
- notes (``sendlearn.dataset.notes``): ``notes`` begun in the span, ``note_density`` per second,
  ``polyphony_max``/``_mean`` over frame centres ``t·512``, velocity and pitch range.
- ``tempo_min``/``_max``: bpm of the blocks in the span.
- ``complexity`` in [0, 1]: the mean of note density / 10 per s, mean polyphony / 4, distinct
  pitch classes / 12 and pitch range / 48 semitones, each capped at 1 (0 without notes).
- alignment: for each note-on after 1024 samples of silence (peak ≤ -80 dBFS), the first sample
  from there to 4096 after the note-on above -60 dBFS, minus the note-on sample. ``alignment_notes``
  counts them; median and largest absolute lag, in samples (0 for sample-exact instruments).
Flags: a stream is ``silent`` when every frame is; a stream in a window is ``silent`` when every
frame is while its notes sound there; ``clipped`` at ``clip_ratio`` ≥ 1e-4; ``degraded`` when any
of its own samples is; ``gaps`` when the stream has any. A window is flagged with its streams'
flags, ``silent`` when all its streams are, ``empty`` with no MIDI event and ``few_events`` with
fewer than ``min_events``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .reader import Stream
from .schema import QUALITY_SCHEMA
from .windows import Window

FRAME = 512
SILENT_RMS = 1e-3  # -60 dBFS
CLIP_LEVEL = 0.999
CLIP_RUN = 3
CLIPPED_RATIO = 1e-4
QUIET_PEAK = 1e-4  # -80 dBFS
ONSET_LEVEL = 1e-3
QUIET_BEFORE, ONSET_SEARCH = 1024, 4096
CHUNK = FRAME * 2048  # frames read at a time when a whole stream is measured


def _level(audio: np.ndarray) -> np.ndarray:
    """Per sample, the largest absolute value over channels (channel rows combined one by one:
    reducing the short channel axis sample by sample is many times slower)."""
    level = np.abs(audio[0])
    for row in audio[1:]:
        np.maximum(level, np.abs(row), out=level)
    return level


def _audio_tally(audio: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Sums over one slice, to be added up over slices of a stream."""
    n = audio.shape[1]
    level = _level(audio)
    squares = np.zeros(n, dtype=np.float64)
    for row in audio:
        squares += np.square(row, dtype=np.float64)
    whole = n // FRAME * FRAME
    frame_power = squares[:whole].reshape(-1, FRAME).mean(axis=1) / audio.shape[0]
    if whole < n:
        frame_power = np.append(frame_power, squares[whole:].mean() / audio.shape[0])
    loud = level >= CLIP_LEVEL
    runs = loud[:-2] & loud[1:-1] & loud[2:] if n >= CLIP_RUN else np.zeros(0, dtype=bool)
    in_run = np.zeros(n, dtype=bool)
    for shift in range(CLIP_RUN):
        in_run[shift:shift + len(runs)] |= runs
    return {"samples": n, "values": n * audio.shape[0], "peak": float(level.max(initial=0.0)),
            "squares": float(squares.sum()), "frames": len(frame_power),
            "silent": int((frame_power < SILENT_RMS**2).sum()), "clipped": int(in_run.sum()),
            "invalid": int((~valid).sum())}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(a[k], b[k]) if k == "peak" else a[k] + b[k] for k in a}


def _audio_row(t: dict[str, float]) -> dict[str, Any]:
    return {"peak": t["peak"], "rms": float(np.sqrt(t["squares"] / max(t["values"], 1))),
            "silence_ratio": t["silent"] / max(t["frames"], 1), "clip_ratio": t["clipped"] / max(t["samples"], 1),
            "degraded_fraction": t["invalid"] / max(t["samples"], 1)}


def _note_row(stream: Stream, start: int, stop: int, audio: np.ndarray | None = None) -> dict[str, Any]:
    notes = stream.notes(start, stop)
    starts, ends = notes["start"].to_numpy(), notes["end"].to_numpy()
    begun = (starts >= start) & (starts < stop)
    pitches = notes["pitch"].to_numpy()[begun].astype(int)
    velocities = notes["velocity"].to_numpy()[begun].astype(int)
    centres = np.arange(start, stop, FRAME)
    sounding = (np.searchsorted(np.sort(starts), centres, side="right")
                - np.searchsorted(np.sort(ends), centres, side="right"))
    seconds = (stop - start) / stream.sample_rate
    density = len(pitches) / seconds if seconds else 0.0
    mean_poly = float(sounding.mean()) if len(sounding) else 0.0
    span = int(pitches.max() - pitches.min()) if len(pitches) else 0
    complexity = 0.0 if not len(pitches) else float(np.mean([
        min(density / 10.0, 1.0), min(mean_poly / 4.0, 1.0), len(set((pitches % 12).tolist())) / 12.0,
        min(span / 48.0, 1.0)]))
    bpm = stream.blocks(start, stop)["bpm"].to_numpy()
    if len(stream.blocks()) and start >= stream.blocks()["sample"][0].as_py():
        bpm = np.append(bpm, stream.playhead(start).bpm)  # the tempo in force where the span starts
    lags = _alignment(stream, starts[begun], start, audio)
    return {
        "events": len(stream.events(start, stop)), "notes": len(pitches), "note_density": density,
        "polyphony_max": int(sounding.max(initial=0)), "polyphony_mean": mean_poly,
        "velocity_min": int(velocities.min()) if len(velocities) else None,
        "velocity_max": int(velocities.max()) if len(velocities) else None,
        "pitch_min": int(pitches.min()) if len(pitches) else None,
        "pitch_max": int(pitches.max()) if len(pitches) else None,
        "tempo_min": float(bpm.min()) if len(bpm) else None, "tempo_max": float(bpm.max()) if len(bpm) else None,
        "complexity": complexity, "alignment_notes": len(lags),
        "alignment_median": float(np.median(lags)) if lags else None,
        "alignment_max_abs": int(np.abs(lags).max()) if lags else None,
    }


def _alignment(stream: Stream, note_ons: np.ndarray, start: int, audio: np.ndarray | None) -> list[int]:
    """Onset lag of each note-on after silence; ``audio`` (from ``start``) is used where it reaches."""
    lags = []
    for on in np.unique(note_ons).tolist():
        if on < QUIET_BEFORE or on >= stream.frames:
            continue
        a, b = on - QUIET_BEFORE, min(on + ONSET_SEARCH, stream.frames)
        if audio is not None and start <= a and b <= start + audio.shape[1]:
            level = _level(audio[:, a - start:b - start])
        else:
            level = _level(stream.audio(a, b))
        if level[:QUIET_BEFORE].max() > QUIET_PEAK:
            continue
        above = np.flatnonzero(level > ONSET_LEVEL)
        if len(above):
            lags.append(int(above[0]) - QUIET_BEFORE)
    return lags


def _flags(row: dict[str, Any], *, notes_sound: bool | None) -> list[str]:
    flags = []
    if row["silence_ratio"] >= 1.0 and (notes_sound is None or notes_sound):
        flags.append("silent")
    if row["clip_ratio"] >= CLIPPED_RATIO:
        flags.append("clipped")
    if row["degraded_fraction"] > 0:
        flags.append("degraded")
    if row.get("gaps"):
        flags.append("gaps")
    return flags


def stream_quality(stream: Stream) -> dict[str, Any]:
    """The QUALITY_SCHEMA row of a whole stream, its audio read a chunk at a time."""
    tally = _audio_tally(np.zeros((stream.channels, 0), np.float32), np.zeros(0, bool))
    for start in range(0, stream.frames, CHUNK):
        stop = min(start + CHUNK, stream.frames)
        tally = _add(tally, _audio_tally(stream.audio(start, stop), stream.valid(start, stop)))
    row = {"session": stream.session, "stream": stream.name, "window": None, "start_sample": 0,
           "frames": stream.frames, "seconds": stream.frames / stream.sample_rate, "gaps": len(stream.facts.gaps),
           **_audio_row(tally), **_note_row(stream, 0, stream.frames), "window_flags": None}
    row["flags"] = _flags(row, notes_sound=None)
    return row


def window_quality(window: Window, audio: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """``{"flags": [...], "events": n, "rows": [QUALITY_SCHEMA row per stream]}`` of ``window``;
    ``audio`` holds streams' window slices the caller has read already."""
    rows, all_silent = [], True
    for name in window.streams:
        samples = audio[name] if audio is not None and name in audio else window.audio(name)
        stream = window.dataset.stream(window.session, name)
        own = max(0, min(window.stop_sample, stream.frames) - window.start_sample)  # its samples in the window
        valid = window.valid(name)
        valid[own:] = True  # past a stream's end is not degraded audio, only no audio
        audio_row = _audio_row(_audio_tally(samples, valid))
        row = {"session": window.session, "stream": name, "window": window.index,
               "start_sample": window.start_sample, "frames": window.frames,
               "seconds": window.frames / window.sample_rate, "gaps": None, **audio_row,
               **_note_row(stream, window.start_sample, window.stop_sample, samples)}
        sounding = len(stream.notes(window.start_sample, window.stop_sample)) > 0
        row["flags"] = _flags(row, notes_sound=sounding)
        all_silent &= audio_row["silence_ratio"] >= 1.0
        rows.append(row)
    events = sum(row["events"] for row in rows)
    flags = sorted({flag for row in rows for flag in row["flags"]} | ({"silent"} if all_silent else set()))
    if events == 0:
        flags.append("empty")
    if events < window.spec.min_events:
        flags.append("few_events")
    flags.sort()
    for row in rows:
        row["window_flags"] = flags
    return {"flags": flags, "events": events, "rows": rows}


def quality_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=QUALITY_SCHEMA)
