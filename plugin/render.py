"""Render one stream's events through its instrument: DawDreamer (Faust, plugins) or FluidSynth.

Facts this module relies on, measured with DawDreamer 0.9 (tests/test_render.py keeps them):
- seconds mode is exact: an event placed at ``(k + 0.5) / sr`` lands on sample ``k``;
- ``render(d)`` returns ``floor(d * sr)`` frames, and ``N / sr`` sometimes rounds to N - 1,
  so we ask for ``(N + 0.5) / sr`` and get N;
- ``render()`` always starts at t = 0 and returns the whole render: one call per stream.
Faust hears notes only (``add_midi_note``), so the host applies the sustain pedal (CC64) to
note lengths for it. Plugins hear every channel message and sysex: we write them to a MIDI
file whose tick is half a sample (see ``write_clock_midi``), which DawDreamer plays on the
exact sample. FluidSynth renders a MIDI file on the file's own tempo map; its onsets lag by
tens of frames, which we measure from the audio and report, never hide.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import mido
import numpy as np

from sendlearn.errors import SendLearnError

from .instrument import Instrument
from .timeline import TimedEvent, Timeline

ONSET_THRESHOLD = 1e-4  # what counts as sound when measuring FluidSynth's lag
NOTE_ON, NOTE_OFF, CONTROL = 0x90, 0x80, 0xB0
SUSTAIN = 64


class RenderError(SendLearnError):
    """An instrument that could not be loaded, compiled or run; the message says which and why."""


def render_stream(
    instrument: Instrument,
    events: Sequence[TimedEvent],
    frames: int,
    sample_rate: int,
    *,
    timeline: Timeline | None = None,
    block_size: int = 512,
    automation: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The instrument's dry audio for ``events``: float32 ``(channels, n)``.

    ``n`` is whatever the host produced; the caller compares it with ``frames``. FluidSynth
    needs ``timeline`` (it plays the file's tempo map); automation curves are per-sample
    arrays of ``frames`` values, by parameter name (Faust label or plugin parameter name).
    """
    automation = automation or {}
    if instrument.host == "dawdreamer":
        return _render_dawdreamer(instrument, events, frames, sample_rate, block_size, automation)
    if automation:
        raise RenderError(f"{instrument}: FluidSynth instruments take no automation ({', '.join(automation)})")
    if timeline is None:
        raise RenderError("FluidSynth renders need the timeline (the file's tempo map)")
    return _render_fluidsynth(instrument, events, frames, timeline)


# -- DawDreamer ---------------------------------------------------------------------------


def _render_dawdreamer(
    instrument: Instrument, events: Sequence[TimedEvent], frames: int, sample_rate: int,
    block_size: int, automation: Mapping[str, np.ndarray],
) -> np.ndarray:
    import dawdreamer  # GPL host: imported only where it renders

    engine = dawdreamer.RenderEngine(sample_rate, block_size)
    with _stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="sendlearn-") as tmp:
        try:
            if instrument.kind == "faust":
                proc = engine.make_faust_processor("instrument")
                proc.num_voices = instrument.voices
                proc.set_dsp(str(instrument.path))
                proc.compile()
                for note, velocity, on, off in note_spans(events, frames):
                    proc.add_midi_note(note, velocity, (on + 0.5) / sample_rate, (off - on) / sample_rate)
            else:
                proc = engine.make_plugin_processor("instrument", str(instrument.path))
                clock = Path(tmp) / "clock.mid"
                write_clock_midi(clock, ((e.sample, e.data) for e in events), sample_rate)
                proc.load_midi(str(clock), clear_previous=True, beats=False, all_events=True)
        except RuntimeError as exc:  # bad Faust code, a plugin that will not load
            raise RenderError(f"{instrument}: {exc}") from exc
        for name, curve in automation.items():
            proc.set_automation(_parameter(proc, name, instrument), np.ascontiguousarray(curve, dtype=np.float32))
        engine.load_graph([(proc, [])])
        engine.render((frames + 0.5) / sample_rate)
        return np.ascontiguousarray(engine.get_audio(), dtype=np.float32)


def _parameter(proc: object, name: str, instrument: Instrument) -> str:
    """The host's name of parameter ``name``: a Faust path ends with its label."""
    names = [p["name"] for p in proc.get_parameters_description()]  # type: ignore[attr-defined]
    for full in names:
        if full == name or full.rsplit("/", 1)[-1] == name:
            return full
    shown = ", ".join(n.rsplit("/", 1)[-1] for n in names[:40]) or "none"
    raise RenderError(f"{instrument} has no parameter {name!r} (it has: {shown})")


def note_spans(events: Iterable[TimedEvent], end: int) -> list[tuple[int, int, int, int]]:
    """(note, velocity, on_sample, off_sample) of every note, with the sustain pedal applied.

    A note released while its channel's pedal is down sounds until the pedal comes up; a
    note struck again while still sounding ends where the new one starts; notes still on
    at the end stop at ``end``. Every note lasts at least one sample.
    """
    sounding: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (ch, note) -> [(index, on, vel)]
    sustained: dict[int, set[tuple[int, int]]] = {}
    pedal: dict[int, bool] = {}
    spans: list[tuple[int, int, int, int, int]] = []  # index keeps the file's order for equal onsets

    def stop(key: tuple[int, int], sample: int) -> None:
        for index, on, velocity in sounding.pop(key, []):
            spans.append((index, key[1], velocity, on, max(sample, on + 1)))

    for index, event in enumerate(events):
        status, data = event.data[0] & 0xF0, event.data
        if event.data[0] >= 0xF0:
            continue
        channel = event.data[0] & 0x0F
        if status == NOTE_ON and data[2] > 0:
            key = (channel, data[1])
            stop(key, event.sample)
            sustained.get(channel, set()).discard(key)
            sounding[key] = [(index, event.sample, data[2])]
        elif status == NOTE_OFF or (status == NOTE_ON and data[2] == 0):
            key = (channel, data[1])
            if pedal.get(channel):
                sustained.setdefault(channel, set()).add(key)
            else:
                stop(key, event.sample)
        elif status == CONTROL and data[1] == SUSTAIN:
            down = data[2] >= 64
            if pedal.get(channel) and not down:
                for key in sorted(sustained.pop(channel, set())):
                    stop(key, event.sample)
            pedal[channel] = down
    for key in list(sounding):
        stop(key, end)
    spans.sort(key=lambda s: (s[3], s[0]))
    return [(note, velocity, on, off) for _, note, velocity, on, off in spans]


def write_clock_midi(path: Path, events: Iterable[tuple[int, bytes]], sample_rate: int) -> None:
    """A MIDI file whose clock is samples: one tick is half a sample, event ``k`` sits on
    tick ``2k + 1`` (the middle of sample ``k``), so any reader that floors lands on ``k``.

    With ``T`` ticks per quarter and ``tempo`` µs per quarter, a tick lasts
    ``tempo / (1e6 T)`` s; that is ``1 / (2 sr)`` when ``tempo = 1e6 T / (2 sr)``, an integer
    for the smallest ``T = 2 sr / gcd(2 sr, 1e6)`` (12 at 48 kHz, 441 at 44.1 kHz).
    """
    ticks = 2 * sample_rate // math.gcd(2 * sample_rate, 1_000_000)
    tempo = 1_000_000 * ticks // (2 * sample_rate)
    if ticks > 0x7FFF or not 1 <= tempo < (1 << 24):
        raise RenderError(f"no exact sample clock MIDI file for {sample_rate} Hz")
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    last = 0
    for sample, data in events:
        tick = 2 * sample + 1
        track.append(mido.Message.from_bytes(data).copy(time=tick - last))
        last = tick
    midi.tracks.append(track)
    midi.save(str(path))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """DawDreamer and plugins print to the C stdout; keep it off ours (``--json`` owns it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# -- FluidSynth ---------------------------------------------------------------------------


def _render_fluidsynth(
    instrument: Instrument, events: Sequence[TimedEvent], frames: int, timeline: Timeline
) -> np.ndarray:
    import soundfile

    with tempfile.TemporaryDirectory(prefix="sendlearn-") as tmp:
        midi_path, wav_path = Path(tmp) / "part.mid", Path(tmp) / "part.wav"
        write_tempo_midi(midi_path, timeline, events, program=instrument.program)
        command = [
            "fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-O", "float", "-T", "wav",
            "-r", str(timeline.sample_rate), "-F", str(wav_path), str(instrument.path), str(midi_path),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except FileNotFoundError as exc:
            raise RenderError("fluidsynth is not installed (apt install fluidsynth)") from exc
        if done.returncode != 0 or not wav_path.exists():
            raise RenderError(f"fluidsynth failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        audio, rate = soundfile.read(str(wav_path), dtype="float32", always_2d=True)
    if rate != timeline.sample_rate:
        raise RenderError(f"fluidsynth wrote {rate} Hz, asked for {timeline.sample_rate}")
    audio = np.ascontiguousarray(audio.T)
    # FluidSynth renders past the last event (release tails) and in 64-frame periods: the
    # stream is the timeline's length, so its tail is cut and a short file is padded with
    # the silence FluidSynth did not write.
    if audio.shape[1] >= frames:
        return np.ascontiguousarray(audio[:, :frames])
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))


def write_tempo_midi(path: Path, timeline: Timeline, events: Iterable[TimedEvent], *, program: int | None) -> None:
    """A type-0 file with the timeline's tempo map and ``events`` on their own ticks.

    ``program`` forces one GM program: the file's program changes are left out and one is
    sent on every channel at tick 0 (channel 10 keeps its drum kit)."""
    events = list(events)
    timed: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (seg.tick, 0, mido.MetaMessage("set_tempo", tempo=seg.tempo)) for seg in timeline.tempos
    ]
    if program is not None:
        channels = sorted({e.channel for e in events if e.channel is not None and e.channel != 9})
        timed += [(0, 1, mido.Message("program_change", channel=ch, program=program)) for ch in channels]
    for order, event in enumerate(events, start=2):
        if program is not None and event.data[0] & 0xF0 == 0xC0:
            continue
        timed.append((event.tick, order, mido.Message.from_bytes(event.data)))
    timed.sort(key=lambda item: (item[0], item[1]))
    midi = mido.MidiFile(type=0, ticks_per_beat=timeline.ticks_per_beat)
    track = mido.MidiTrack()
    last = 0
    for tick, _, msg in timed:
        track.append(msg.copy(time=tick - last))
        last = tick
    midi.tracks.append(track)
    midi.save(str(path))


def onset_lag(audio: np.ndarray, events: Iterable[TimedEvent]) -> int | None:
    """Frames from the first note-on to the first sound in ``audio``: FluidSynth's lag."""
    first = next((e.sample for e in events if e.data[0] & 0xF0 == NOTE_ON and e.data[2] > 0), None)
    loud = np.flatnonzero(np.max(np.abs(audio), axis=0) > ONSET_THRESHOLD)
    if first is None or not loud.size:
        return None
    return int(loud[0]) - first


# -- after the instrument -----------------------------------------------------------------


def automation_curve(points: Sequence[tuple[int, float]], frames: int) -> np.ndarray:
    """Per-sample values: linear between points, held before the first and after the last."""
    samples = np.array([p[0] for p in points], dtype=np.float64)
    values = np.array([p[1] for p in points], dtype=np.float64)
    return np.interp(np.arange(frames, dtype=np.float64), samples, values).astype(np.float32)


def apply_effects(audio: np.ndarray, sample_rate: int, effects: Sequence[tuple[str, Mapping[str, object]]]) -> np.ndarray:
    """Run pedalboard's built-in effects, in order, over the whole stream; length is kept."""
    if not effects:
        return audio
    import pedalboard  # GPL host: imported only where it renders

    board = pedalboard.Pedalboard([getattr(pedalboard, name)(**options) for name, options in effects])
    out = board(audio, sample_rate, reset=True)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if out.shape != audio.shape:
        raise RenderError(f"effects changed the audio's shape from {audio.shape} to {out.shape}")
    return out


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    if gain_db == 0.0:
        return audio  # bit-identical dry audio at unity
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
