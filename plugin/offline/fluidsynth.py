"""The FluidSynth host: a stream's events through a soundfont, and the lag of its onsets.

FluidSynth renders a MIDI file on the file's own tempo map (``plugin.smf.write_tempo_midi``),
in 64-frame periods and past the last event (release tails). Its onsets lag the note-ons by
tens of frames (42 to 106 measured on these machines): ``onset_lag`` measures that lag from the
audio, and the stream reports it (``onset_lag_frames``), never hides it.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sendlearn.plugin.offline.errors import RenderError
from sendlearn.plugin.offline.smf import write_tempo_midi
from sendlearn.plugin.session.instrument import Instrument
from sendlearn.plugin.session.timeline import TimedEvent, Timeline

ONSET_THRESHOLD = 1e-4  # what counts as sound when measuring FluidSynth's lag
NOTE_ON = 0x90


def render_fluidsynth(
    instrument: Instrument, events: Sequence[TimedEvent], frames: int, timeline: Timeline
) -> np.ndarray:
    """The soundfont's audio for ``events``: float32 ``(2, frames)``, the timeline's length."""
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
    # The stream is the timeline's length: FluidSynth's tail is cut, and a short file is
    # padded with the silence FluidSynth did not write.
    if audio.shape[1] >= frames:
        return np.ascontiguousarray(audio[:, :frames])
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))


def onset_lag(audio: np.ndarray, events: Iterable[TimedEvent]) -> int | None:
    """Frames from the first note-on to the first sound in ``audio``: FluidSynth's lag."""
    first = next((e.sample for e in events if e.data[0] & 0xF0 == NOTE_ON and e.data[2] > 0), None)
    loud = np.flatnonzero(np.max(np.abs(audio), axis=0) > ONSET_THRESHOLD)
    if first is None or not loud.size:
        return None
    return int(loud[0]) - first
