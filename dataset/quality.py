"""Quality of streams and windows (``sendlearn quality``; docs/dataset.md, "Quality").

Measures (rows of QUALITY_SCHEMA):
- ``silence_ratio``: share of 512-sample frames whose RMS (all channels) is below -60 dBFS.
- ``clip_ratio``: share of samples in clipped runs in some channel. For a float source (stream.json
  ``audio.subtype`` FLOAT) a clipped run is a flat top: 3 or more equal consecutive samples (not 0)
  whose neighbours on both sides are smaller in magnitude, so the run holds a local peak of |x|
  flat, at any level (a limiter at 0.8 clips; a float sample at 1.7 does not, float holds it).
  For a PCM source (PCM_16, PCM_24) a run is 3 or more samples at |x| ≥ 0.999 (full scale: one
  sample there is an attack, three in a row are clipping). A run cut by a chunk of 1,048,576
  frames (a whole stream is read a chunk at a time) is measured in each chunk on its own.
- ``over_full_scale_ratio``: share of samples over 1.0 in some channel (only a float source can
  hold them). Reported, never flagged: it says the level needs staging, not that data was lost.
- ``peak``, ``rms``: of all channels. ``degraded_fraction``: share of the stream's own samples
  that are not its lossless audio (gaps, ``REDUCED``, ``NONE``). ``gaps``: of the stream.
- notes (``sendlearn.dataset.notes``): ``notes`` begun in the span, ``note_density`` per second,
  ``polyphony_max``/``_mean`` over frame centres ``t·512``, velocity and pitch range.
- ``tempo_min``/``_max``: bpm of the blocks in the span.
- ``complexity`` in [0, 1]: the mean of note density / 10 per s, mean polyphony / 4, distinct
  pitch classes / 12 and pitch range / 48 semitones, each capped at 1 (0 without notes).
- alignment: for each note-on after 1024 samples of silence (peak ≤ -80 dBFS), the first sample
  up to 4096 after the note-on that rises above that silence's own peak, minus the note-on
  sample. ``alignment_notes`` counts them; median and largest absolute lag, in samples
  (0 for sample-exact instruments, whatever their attack: a louder threshold would measure the
  attack's rise, 6-34 samples on the default synth, as lag).
Flags: a stream is ``silent`` when every frame is; a stream in a window is ``silent`` when every
frame is while its notes sound there; ``clipped`` at ``clip_ratio`` ≥ 1e-4; ``degraded`` when any
of its own samples is; ``gaps`` when the stream has any; ``stolen_notes`` when stream.json's
``meta.stolen_samples`` (samples where the instrument cut a sounding note to free a voice, written
by the render) holds a sample inside the span. A window is flagged with its streams' flags,
``silent`` when all its streams are, ``empty`` with no MIDI event and ``few_events`` with fewer
than ``min_events``. A window's audio measures and notes are those of its real part
(``frames_valid``): the silence padding a session's last window is not measured.
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
QUIET_PEAK = 1e-4  # -80 dBFS: the most a stretch before a note-on may hold and still be silence
QUIET_BEFORE, ONSET_SEARCH = 1024, 4096
CHUNK = FRAME * 2048  # frames read at a time when a whole stream is measured


def _level(audio: np.ndarray) -> np.ndarray:
    """Per sample, the largest absolute value over channels (channel rows combined one by one:
    reducing the short channel axis sample by sample is many times slower)."""
    level = np.abs(audio[0])
    for row in audio[1:]:
        np.maximum(level, np.abs(row), out=level)
    return level


def _full_scale_runs(level: np.ndarray) -> np.ndarray:
    """Per sample: in a run of ``CLIP_RUN`` or more at full scale (a PCM source's clipping)."""
    n = len(level)
    loud = level >= CLIP_LEVEL
    runs = loud[:-2] & loud[1:-1] & loud[2:] if n >= CLIP_RUN else np.zeros(0, dtype=bool)
    in_run = np.zeros(n, dtype=bool)
    for shift in range(CLIP_RUN):
        in_run[shift:shift + len(runs)] |= runs
    return in_run


def _flat_tops(audio: np.ndarray) -> np.ndarray:
    """Per sample: in a flat top of some channel, ``CLIP_RUN`` or more equal samples (not 0) whose
    neighbours on both sides are smaller in magnitude (a float source's clipping, at any level)."""
    n = audio.shape[1]
    in_run = np.zeros(n, dtype=bool)
    if n < CLIP_RUN + 2:
        return in_run
    marks = np.zeros(n + 1, dtype=np.int32)
    for row in audio:
        same = np.concatenate(([False], row[1:] == row[:-1], [False]))
        edges = np.flatnonzero(same[1:] != same[:-1])  # alternately where a run of equal pairs starts and ends
        first, last = edges[0::2], edges[1::2]  # samples first..last are equal
        long = (last - first + 1 >= CLIP_RUN) & (first > 0) & (last < n - 1)
        first, last = first[long], last[long]
        if not len(first):
            continue
        top = np.abs(row[first])
        peak = (top > 0) & (np.abs(row[first - 1]) < top) & (np.abs(row[last + 1]) < top)
        np.add.at(marks, first[peak], 1)
        np.add.at(marks, last[peak] + 1, -1)
    in_run |= np.cumsum(marks[:n]) > 0
    return in_run


def _audio_tally(audio: np.ndarray, valid: np.ndarray, pcm: bool) -> dict[str, float]:
    """Sums over one slice, to be added up over slices of a stream; ``pcm``: the source is 16 or 24-bit."""
    n = audio.shape[1]
    level = _level(audio)
    squares = np.zeros(n, dtype=np.float64)
    for row in audio:
        squares += np.square(row, dtype=np.float64)
    whole = n // FRAME * FRAME
    frame_power = squares[:whole].reshape(-1, FRAME).mean(axis=1) / audio.shape[0]
    if whole < n:
        frame_power = np.append(frame_power, squares[whole:].mean() / audio.shape[0])
    in_run = _full_scale_runs(level) if pcm else _flat_tops(audio)
    return {"samples": n, "values": n * audio.shape[0], "peak": float(level.max(initial=0.0)),
            "squares": float(squares.sum()), "frames": len(frame_power),
            "silent": int((frame_power < SILENT_RMS**2).sum()), "clipped": int(in_run.sum()),
            "over": int((level > 1.0).sum()), "invalid": int((~valid).sum())}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(a[k], b[k]) if k == "peak" else a[k] + b[k] for k in a}


def _audio_row(t: dict[str, float]) -> dict[str, Any]:
    return {"peak": t["peak"], "rms": float(np.sqrt(t["squares"] / max(t["values"], 1))),
            "silence_ratio": t["silent"] / max(t["frames"], 1), "clip_ratio": t["clipped"] / max(t["samples"], 1),
            "over_full_scale_ratio": t["over"] / max(t["samples"], 1),
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
        floor = level[:QUIET_BEFORE].max()
        if floor > QUIET_PEAK:
            continue
        above = np.flatnonzero(level > floor)
        if len(above):
            lags.append(int(above[0]) - QUIET_BEFORE)
    return lags


def is_pcm(stream: Stream) -> bool:
    """The stream's audio is 16 or 24-bit integers (its clipping is at full scale)."""
    return stream.facts.audio.subtype.startswith("PCM")


def stolen_samples(stream: Stream) -> np.ndarray:
    """Samples where the instrument stole a sounding note (stream.json ``meta.stolen_samples``;
    none when the host did not say)."""
    stolen = stream.facts.meta.get("stolen_samples")
    if not isinstance(stolen, list):
        return np.zeros(0, dtype=np.int64)
    return np.asarray([s for s in stolen if isinstance(s, int) and not isinstance(s, bool)], dtype=np.int64)


def _flags(row: dict[str, Any], *, notes_sound: bool | None, stolen: bool = False) -> list[str]:
    flags = []
    if row["silence_ratio"] >= 1.0 and (notes_sound is None or notes_sound):
        flags.append("silent")
    if row["clip_ratio"] >= CLIPPED_RATIO:
        flags.append("clipped")
    if row["degraded_fraction"] > 0:
        flags.append("degraded")
    if row.get("gaps"):
        flags.append("gaps")
    if stolen:
        flags.append("stolen_notes")
    return flags


def stream_quality(stream: Stream) -> dict[str, Any]:
    """The QUALITY_SCHEMA row of a whole stream, its audio read a chunk at a time."""
    pcm = is_pcm(stream)
    tally = _audio_tally(np.zeros((stream.channels, 0), np.float32), np.zeros(0, bool), pcm)
    for start in range(0, stream.frames, CHUNK):
        stop = min(start + CHUNK, stream.frames)
        tally = _add(tally, _audio_tally(stream.audio(start, stop), stream.valid(start, stop), pcm))
    row = {"session": stream.session, "stream": stream.name, "window": None, "start_sample": 0,
           "frames": stream.frames, "frames_valid": stream.frames, "seconds": stream.frames / stream.sample_rate, "gaps": len(stream.facts.gaps),
           **_audio_row(tally), **_note_row(stream, 0, stream.frames), "window_flags": None}
    row["flags"] = _flags(row, notes_sound=None, stolen=len(stolen_samples(stream)) > 0)
    return row


def window_quality(window: Window, audio: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """``{"flags": [...], "events": n, "rows": [QUALITY_SCHEMA row per stream]}`` of ``window``;
    ``audio`` holds streams' window slices the caller has read already."""
    rows, all_silent = [], True
    real = window.frames_valid  # the rest is padding: silence and no events
    start, stop = window.start_sample, window.start_sample + real
    for name in window.streams:
        samples = audio[name] if audio is not None and name in audio else window.audio(name)
        samples = samples[:, :real]
        stream = window.dataset.stream(window.session, name)
        own = max(0, min(stop, stream.frames) - start)  # its samples in the window
        valid = window.valid(name)[:real]
        valid[own:] = True  # past a stream's end is not degraded audio, only no audio
        audio_row = _audio_row(_audio_tally(samples, valid, is_pcm(stream)))
        row = {"session": window.session, "stream": name, "window": window.index,
               "start_sample": window.start_sample, "frames": window.frames, "frames_valid": real,
               "seconds": window.frames / window.sample_rate, "gaps": None, **audio_row,
               **_note_row(stream, start, stop, samples)}
        sounding = len(stream.notes(start, stop)) > 0
        stolen = stolen_samples(stream)
        row["flags"] = _flags(row, notes_sound=sounding, stolen=bool(((stolen >= start) & (stolen < stop)).any()))
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
