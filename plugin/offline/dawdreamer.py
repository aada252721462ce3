"""Render one stream's events through its instrument: DawDreamer (Faust, plugins) here, or FluidSynth.

Facts this module relies on, measured with DawDreamer 0.9 (tests/test_render.py keeps them):
- seconds mode is exact: an event placed at ``(k + 0.5) / sr`` lands on sample ``k``;
- ``render(d)`` returns ``floor(d * sr)`` frames, and ``N / sr`` sometimes rounds to N - 1,
  so we ask for ``(N + 0.5) / sr`` and get N;
- ``render()`` always starts at t = 0 and returns the whole render: one call per stream.
Faust hears notes only (``add_midi_note``), so the host applies the sustain pedal (CC64) to
note lengths for it (capture/notes.py). Plugins hear every channel message and sysex: we write
them to a MIDI file whose tick is half a sample (``plugin.smf.write_clock_midi``), which
DawDreamer plays on the exact sample. Soundfonts go to FluidSynth (plugin/offline/fluidsynth.py).

A Faust instrument gets enough voices for the stream (``voice_plan``, the rules in
plugin/session/voices.py): a voice steal cuts a sounding note, and one on the sample its voice
started blows that sample up. The plan's facts (voices, polyphony, steals) go into the
stream's meta (``stream_facts``).

DawDreamer and plugins print to the C stdout and stderr. This module leaves file descriptors
alone (a ``dup2`` here would redirect every thread's output); the command that renders points
them at a log per input (``sendlearn.cli.host_logs``), one input at a time.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sendlearn.capture.notes import note_spans as sustained_notes
from sendlearn.plugin.offline.errors import RenderError
from sendlearn.plugin.offline.fluidsynth import render_fluidsynth
from sendlearn.plugin.offline.smf import write_clock_midi
from sendlearn.plugin.session.instrument import Instrument
from sendlearn.plugin.session.timeline import TimedEvent, Timeline
from sendlearn.plugin.session.voices import VoicePlan, dsp_voicing, plan_voices

__all__ = ["RENDER_BLOCK", "VOICE_SLACK", "RenderError", "note_spans", "render_stream", "stream_facts", "voice_plan"]

# DawDreamer applies automation once per render block. The render block is fixed, not the
# capture's --block-size, so a stream's audio is the same at any block size (tests/test_chain.py);
# 64 samples (1.3 ms at 48 kHz) is finer than any DAW's automation rate.
RENDER_BLOCK = 64
# Faust's wrapper frees voices at the end of a render block: the voice plan holds each note two
# blocks past its release, on the safe side (plugin/session/voices.py).
VOICE_SLACK = 2 * RENDER_BLOCK


def render_stream(
    instrument: Instrument,
    events: Sequence[TimedEvent],
    frames: int,
    sample_rate: int,
    *,
    timeline: Timeline | None = None,
    automation: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The instrument's dry audio for ``events``: float32 ``(channels, n)``.

    ``n`` is whatever the host produced; the caller compares it with ``frames``. FluidSynth
    needs ``timeline`` (it plays the file's tempo map); automation curves are per-sample
    arrays of ``frames`` values, by parameter name (Faust label or plugin parameter name).
    """
    automation = automation or {}
    if instrument.host == "dawdreamer":
        return _render_dawdreamer(instrument, events, frames, sample_rate, automation)
    if automation:
        raise RenderError(f"{instrument}: FluidSynth instruments take no automation ({', '.join(automation)})")
    if timeline is None:
        raise RenderError("FluidSynth renders need the timeline (the file's tempo map)")
    return render_fluidsynth(instrument, events, frames, timeline)


def _render_dawdreamer(
    instrument: Instrument, events: Sequence[TimedEvent], frames: int, sample_rate: int,
    automation: Mapping[str, np.ndarray],
) -> np.ndarray:
    import dawdreamer  # GPL host: imported only where it renders

    engine = dawdreamer.RenderEngine(sample_rate, RENDER_BLOCK)
    with tempfile.TemporaryDirectory(prefix="sendlearn-") as tmp:
        try:
            if instrument.kind == "faust":
                spans = note_spans(events, frames)
                plan = voice_plan(instrument, spans, sample_rate)
                proc = engine.make_faust_processor("instrument")
                proc.num_voices = plan.voices
                proc.set_dsp(str(instrument.path))
                proc.compile()
                for index, (note, velocity, on, off) in enumerate(spans):
                    if index in plan.dropped:  # every voice playing: the host would write out of bounds
                        continue
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


def voice_plan(instrument: Instrument, spans: Sequence[tuple[int, int, int, int]], sample_rate: int) -> VoicePlan:
    """The voices Faust instrument ``instrument`` gets for notes ``spans`` (``note_spans``):
    the notes' polyphony with the release the ``.dsp`` declares, up to its ``max_voices``,
    never below the session's ``voices``. Raises RenderError on bad metadata."""
    assert instrument.kind == "faust" and instrument.path is not None
    try:
        voicing = dsp_voicing(instrument.path)
    except (OSError, ValueError) as exc:
        raise RenderError(f"{instrument}: {exc}") from exc
    return plan_voices(((on, off) for _, _, on, off in spans), release_frames=math.ceil(voicing.release * sample_rate),
                       floor=instrument.voices, limit=voicing.max_voices, slack=VOICE_SLACK)


def stream_facts(instrument: Instrument, events: Sequence[TimedEvent], frames: int,
                 sample_rate: int) -> tuple[tuple[str, Any], ...]:
    """Facts of a stream's render for stream.json: for Faust, the voices it was given, the
    polyphony that asked for them, and the notes that still lost their voice
    (``voices_stolen``, ``stolen_samples``); nothing for other hosts."""
    if instrument.kind != "faust":
        return ()
    try:
        return voice_plan(instrument, note_spans(events, frames), sample_rate).meta()
    except RenderError:  # bad metadata fails the render itself
        return ()


def _parameter(proc: Any, name: str, instrument: Instrument) -> str:
    """The host's name of parameter ``name``: a Faust path ends with its label."""
    names: list[str] = [p["name"] for p in proc.get_parameters_description()]
    for full in names:
        if full == name or full.rsplit("/", 1)[-1] == name:
            return full
    shown = ", ".join(n.rsplit("/", 1)[-1] for n in names[:40]) or "none"
    raise RenderError(f"{instrument} has no parameter {name!r} (it has: {shown})")


def note_spans(events: Iterable[TimedEvent], end: int) -> list[tuple[int, int, int, int]]:
    """(note, velocity, on_sample, off_sample) of every note, with the sustain pedal applied
    (``sendlearn.capture.notes``): what a Faust instrument is given."""
    return [(n.pitch, n.velocity, n.on, n.off) for n in sustained_notes(((e.sample, e.data) for e in events), end)]
