"""A Standard MIDI File per training window (docs/export.md, "midi_file"), and the clock that times it.

    from sendlearn.dataset.window_midi import window_midi
    midi = window_midi(window, "keys")       # WindowMidi: .data (SMF bytes), .clock, .notes
    midi.data                                # type 1, PPQ 960, tick 0 = the window's first sample

The file holds, on the window's own clock:

- track 0 (``tempo map``): the tempo and meter in force at the window's first sample at tick 0, and
  every tempo and meter change inside the window at its tick (a meter change on its bar line);
- track 1 (the stream, named by its id): the controller, pedal, pitch-bend, channel-pressure and
  program state in force at the first sample at tick 0 (before any note); the notes, paired as the
  reader pairs them (``sendlearn.dataset.notes``: sustain pedal included), each as a note-on and a
  note-off: a note sounding across the window's start is struck again at tick 0 with its velocity,
  one still sounding at the end is closed at the window's end; the other channel messages inside
  the window at their ticks. System messages are left out.

Ticks come from the captured playhead (``ppq``, quarter notes; tempo changes inside a block placed
where the reader places them). A window whose blocks do not all play, or whose playhead jumps (a
locate, a loop), is timed by its seconds at 120 bpm instead (``WindowClock.source == "seconds"``).
A tick cannot hold a sample (25 samples at 120 bpm and 48 kHz), so exports keep the exact samples
beside the file (``midi_sample``, ``midi_notes``).

The core (``WindowClock.from_blocks``, ``smf_bytes``) is pure: rows and arrays in, bytes out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from .windows import Window

TICKS_PER_QUARTER = 960
SECONDS_BPM = 120.0  # the clock of a window without a playing transport
STATE_KINDS = ("control_change", "program_change", "pitchwheel", "aftertouch")
NOTE_KINDS = ("note_on", "note_off")
# the order of messages on one tick: note-offs, then state and controllers, then note-ons
_OFF, _CONTROL, _ON = 0, 1, 2


@dataclass(frozen=True, slots=True)
class WindowClock:
    """Window sample -> quarter notes since the window's first sample, piecewise linear.

    ``segments`` are ``(sample, quarters, bpm)``: from window sample ``sample`` on, the clock is at
    ``quarters`` and runs at ``bpm`` quarter notes per minute; the first starts at sample 0 and
    quarter 0. ``meters`` are ``(quarters, num, den)``, the first at 0.
    """

    sample_rate: int
    source: str  # "playhead" or "seconds"
    segments: tuple[tuple[float, float, float], ...]
    meters: tuple[tuple[float, int, int], ...]

    @classmethod
    def from_blocks(cls, rows: Sequence[dict[str, Any]], start: int, stop: int, sample_rate: int,
                    meter_at_start: tuple[int, int]) -> WindowClock:
        """The clock of window ``[start, stop)`` from the blocks.parquet rows (absolute samples) of the
        block holding ``start`` and every block starting before ``stop``, in order."""
        fallback = cls(sample_rate, "seconds", ((0.0, 0.0, SECONDS_BPM),), ((0.0, *meter_at_start),))
        if not rows or not all(r["playing"] for r in rows):
            return fallback
        points: list[tuple[float, float, float]] = []  # absolute sample, ppq, bpm
        for i, row in enumerate(rows):
            points.append((float(row["sample"]), float(row["ppq"]), float(row["bpm"])))
            after = rows[i + 1] if i + 1 < len(rows) else None
            if after is None:
                break
            frames = float(after["sample"] - row["sample"])
            if after["sample"] != row["sample"] + row["frames"]:
                return fallback  # blocks missing between (a gap): no playhead to time them by
            ppq, bpm, next_bpm = float(row["ppq"]), float(row["bpm"]), float(after["bpm"])
            if bpm == next_bpm:
                if abs(ppq + frames / sample_rate * bpm / 60.0 - after["ppq"]) > 1e-3:
                    return fallback  # a locate or a loop
                continue
            span = after["ppq"] - ppq - frames / sample_rate * next_bpm / 60.0
            x = span * 60.0 * sample_rate / (bpm - next_bpm)
            if not -0.5 <= x <= frames + 0.5:
                return fallback
            x = min(max(x, 0.0), frames)
            if abs(x - round(x)) < 1e-6:  # a change on a whole sample stays on it (floats of a solve)
                x = float(round(x))
            points.append((row["sample"] + x, ppq + x / sample_rate * bpm / 60.0, next_bpm))
        # re-based to the window: quarters since its first sample
        at = max(i for i, p in enumerate(points) if p[0] <= start) if points[0][0] <= start else 0
        s0, p0, b0 = points[at]
        origin = p0 + (start - s0) / sample_rate * b0 / 60.0
        segments = [(0.0, 0.0, b0)]
        for s, p, b in points[at + 1:]:
            if s >= stop:
                break
            if b != segments[-1][2]:
                segments.append((s - start, p - origin, b))
        assert segments[0][0] == 0.0 and all(a[0] < b[0] for a, b in zip(segments, segments[1:], strict=False))
        meters = [(0.0, *meter_at_start)]
        for prev, row in zip(rows, rows[1:], strict=False):
            if (row["ts_num"], row["ts_den"]) != (prev["ts_num"], prev["ts_den"]) and row["sample"] < stop:
                bar = row["ppq"] - (row["beat"] - 1.0) * 4.0 / row["ts_den"] - origin
                if bar > 0:
                    meters.append((bar, int(row["ts_num"]), int(row["ts_den"])))
        return cls(sample_rate, "playhead", tuple(segments), tuple(meters))

    def quarters(self, samples: np.ndarray | float) -> np.ndarray:
        """Quarter notes since the window's first sample at window sample(s) ``samples``."""
        s = np.asarray(samples, dtype=np.float64)
        starts = np.array([seg[0] for seg in self.segments])
        i = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, None)
        seg = np.array(self.segments)[i]
        return np.asarray(seg[..., 1] + (s - seg[..., 0]) / self.sample_rate * seg[..., 2] / 60.0)

    def ticks(self, samples: np.ndarray | float) -> np.ndarray:
        return np.rint(self.quarters(samples) * TICKS_PER_QUARTER).astype(np.int64)

    def samples(self, quarters: np.ndarray | float) -> np.ndarray:
        """The window sample at ``quarters`` (rounded to the nearest sample): the inverse of ``quarters``."""
        q = np.asarray(quarters, dtype=np.float64)
        starts = np.array([seg[1] for seg in self.segments])
        i = np.clip(np.searchsorted(starts, q, side="right") - 1, 0, None)
        seg = np.array(self.segments)[i]
        return np.rint(seg[..., 0] + (q - seg[..., 1]) * 60.0 / seg[..., 2] * self.sample_rate).astype(np.int64)

    def tempos(self) -> list[tuple[int, float]]:
        """(tick, bpm) of the tempo at tick 0 and of every change inside the window."""
        return [(round(q * TICKS_PER_QUARTER), bpm) for _, q, bpm in self.segments]

    def tempo_samples(self) -> list[int]:
        return [round(s) for s, _, _ in self.segments]


@dataclass(frozen=True, slots=True)
class WindowMidi:
    """A stream's window as a MIDI file, with what it was made of (window-relative samples)."""

    data: bytes  # the SMF
    clock: WindowClock
    notes: np.ndarray  # int64 (N, 4): pitch, velocity, start, end, clipped to [0, frames]
    channels: np.ndarray  # int64 (N,): each note's channel
    program: int  # the program in force at the start (first program change of the window if none), else 0
    controls: list[tuple[int, bytes]]  # (sample, message) of every non-note message written, state at 0


def note_rows(notes: pa.Table, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` int64 pitch, velocity, start, end of window-relative notes (``Window.notes``),
    clipped to ``[0, frames]``, and their channels."""
    start = np.clip(notes["start"].to_numpy().astype(np.int64), 0, frames)
    end = np.clip(notes["end"].to_numpy().astype(np.int64), 0, frames)
    rows = np.stack([notes["pitch"].to_numpy().astype(np.int64), notes["velocity"].to_numpy().astype(np.int64),
                     start, end], axis=1) if len(notes) else np.zeros((0, 4), dtype=np.int64)
    return rows.reshape(-1, 4), notes["channel"].to_numpy().astype(np.int64)


def state_at(before: pa.Table) -> list[bytes]:
    """The channel state the events ``before`` a window leave in force: each channel's last value of
    every controller, its program, pitch bend and channel pressure (in that order per channel)."""
    table = before.filter(pc.is_in(before["kind"], pa.array(STATE_KINDS)))
    last: dict[tuple[int, int, int], bytes] = {}
    for data in table["data"].to_pylist():
        status = data[0] & 0xF0
        last[(data[0] & 0x0F, {0xB0: 0, 0xC0: 1, 0xE0: 2, 0xD0: 3}[status], data[1] if status == 0xB0 else 0)] = data
    return [last[key] for key in sorted(last)]


def smf_bytes(clock: WindowClock, tracks: Sequence[tuple[str, np.ndarray, np.ndarray, list[tuple[int, bytes]]]],
              frames: int) -> bytes:
    """A type-1 SMF: track 0 the clock's tempos and meters, then one track per ``(name, notes (N, 4),
    channels (N,), [(window sample, message), ...])``; notes and messages relative to the window."""
    conductor: list[tuple[int, int, mido.MetaMessage]] = [(0, 0, mido.MetaMessage("track_name", name="tempo map"))]
    for tick, bpm in clock.tempos():
        conductor.append((tick, 1, mido.MetaMessage("set_tempo", tempo=round(60_000_000 / bpm))))
    for q, num, den in clock.meters:
        conductor.append((round(q * TICKS_PER_QUARTER), 2, mido.MetaMessage("time_signature", numerator=num,
                                                                             denominator=den)))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(_track(conductor))
    end_tick = int(clock.ticks(frames))
    for name, notes, channels, controls in tracks:
        events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
            (0, -1, mido.MetaMessage("track_name", name=name))]
        if len(notes):
            on = clock.ticks(notes[:, 2])
            off = np.maximum(clock.ticks(notes[:, 3]), on + 1)  # every note at least one tick
            for (pitch, velocity, _, _), channel, t_on, t_off in zip(notes.tolist(), channels.tolist(), on.tolist(),
                                                                     off.tolist(), strict=True):
                events.append((t_on, _ON, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
                events.append((t_off, _OFF, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        for sample, data in controls:
            events.append((int(clock.ticks(sample)), _CONTROL, mido.Message.from_bytes(data)))
        events.append((max([end_tick] + [e[0] for e in events]), 3, mido.MetaMessage("end_of_track")))
        midi.tracks.append(_track(events))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _track(events: list[Any]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    return track


def window_clock(window: Window, stream: str) -> WindowClock:
    """The clock of ``stream`` over ``window`` (from its blocks.parquet rows)."""
    source = window.dataset.stream(window.session, stream)
    blocks = source.blocks()  # the stream's table, sliced (no copy): a window costs its own blocks only
    samples = blocks["sample"].to_numpy()
    first = max(0, int(np.searchsorted(samples, window.start_sample, side="right")) - 1)
    stop = int(np.searchsorted(samples, window.stop_sample, side="left"))
    columns = ("sample", "frames", "playing", "ppq", "bpm", "ts_num", "ts_den", "beat")
    rows = blocks.slice(first, max(stop - first, 0)).select(list(columns)).to_pylist()
    playhead = window.playhead(stream)
    return WindowClock.from_blocks(rows, window.start_sample, window.stop_sample, window.sample_rate,
                                   (int(playhead.ts_num), int(playhead.ts_den)))


def window_parts(window: Window, stream: str) -> WindowMidi:
    """What ``stream``'s window file is made of, without the file (``data`` empty)."""
    source = window.dataset.stream(window.session, stream)
    clock = window_clock(window, stream)
    notes, channels = note_rows(window.notes(stream), window.frames)
    events = source.events()  # sliced, not filtered: no copy of the events before the window
    before = events.slice(0, int(np.searchsorted(events["sample"].to_numpy(), window.start_sample, side="left")))
    controls = [(0, data) for data in state_at(before)]
    events = window.events(stream)
    inside = events.filter(pc.invert(pc.is_in(events["kind"], pa.array(NOTE_KINDS))))
    for sample, data in zip(inside["sample"].to_pylist(), inside["data"].to_pylist(), strict=True):
        if data[0] < 0xF0:
            controls.append((sample, data))
    programs = [d[1] for _, d in controls if d[0] & 0xF0 == 0xC0]
    return WindowMidi(b"", clock, notes, channels, programs[0] if programs else 0, controls)


def window_midi(window: Window, stream: str) -> WindowMidi:
    """``stream``'s window as a Standard MIDI File (module docstring), and what it was made of."""
    parts = window_parts(window, stream)
    data = smf_bytes(parts.clock, [(stream, parts.notes, parts.channels, parts.controls)], window.frames)
    return WindowMidi(data, parts.clock, parts.notes, parts.channels, parts.program, parts.controls)


def merged_midi(window: Window, streams: Sequence[str]) -> tuple[bytes, WindowClock, list[WindowMidi]]:
    """Every stream of ``streams`` in one file, a track each (the first stream's clock: a session's
    streams share one)."""
    parts = [window_parts(window, s) for s in streams]
    clock = parts[0].clock
    data = smf_bytes(clock, [(s, p.notes, p.channels, p.controls) for s, p in zip(streams, parts, strict=True)],
                     window.frames)
    return data, clock, parts
