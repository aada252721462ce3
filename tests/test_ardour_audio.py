"""``sendlearn render`` of an Ardour 7.3 session holding only an audio track: a stereo WAV written
here (tone and noise bursts, different in each channel) as a region on it (tests/ardour.py:
``build_session``, ``AudioClip``), no synth. An audio region plays the same samples whatever the
period, so here the render is checked bit for bit, against the WAV and against what
``ardour7-export`` writes for the same session:

- the track's stream is the WAV, bit for bit, placed at the region's position and
  ``TRACK_LAG`` samples later, silent everywhere else, at periods 1024 and 256;
- ``master`` is the same, a period and another ``TRACK_LAG`` later;
- ``ardour7-export -b float`` of the same session and range is the WAV at the region's position
  exactly, so ``master`` is the export bit for bit ``PERIOD + 2 * TRACK_LAG`` samples later.

Where the lags come from (docs/session.md, "Ardour sessions"; measured by rendering with the
engine setting changed): Ardour 7's JACK ports resample for varispeed, and a port delays what
passes through it by its resampler's latency, ``port-resampler-quality`` - 1 = 16 samples at
Ardour's default 17 (8 at 9): the track's output port delays it once, the master's output port
again. The render runs Ardour at 0 (plugin/ardour/headless.py), so ``TRACK_LAG`` is 0 and a
region's samples are on their sample. The period: the master's input reads the track's output
port as it was at the end of the previous cycle. The export runs no JACK ports, so neither."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from ardour import AudioClip, build_session, export

from sendlearn.cli.main import main

RATE = 48000
PERIOD = 1024
POSITION = RATE // 2 + 123  # the region's first session sample: not on a period
TAIL = RATE // 2  # the session range ends this long after the region (build_session's default)
TRACK_LAG = 0  # port-resampler-quality - 1: what each JACK output port of Ardour delays (we run it at 0)


def clip() -> np.ndarray:
    """Eight bursts of a fifth of a second, a twentieth of silence before each: sine tones in the
    left channel while the right has seeded noise, then the other way round, and one full-scale
    sample; float32, deterministic."""
    rng = np.random.default_rng(23)
    burst, gap = RATE // 5, RATE // 20
    audio = np.zeros((8 * (burst + gap), 2), np.float32)
    t = np.arange(burst) / RATE
    for k in range(8):
        tone = 0.5 * np.sin(2 * np.pi * 220 * (k + 1) * t)
        noise = rng.uniform(-0.4, 0.4, burst)
        at = k * (burst + gap) + gap
        audio[at:at + burst, k % 2] = tone
        audio[at:at + burst, 1 - k % 2] = noise
    audio[gap // 2] = (1.0, -1.0)
    return audio


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ardour-audio")
    wav = folder / "bursts.wav"
    sf.write(wav, clip(), RATE, subtype="FLOAT")
    return build_session(folder, rate=RATE, midi=(), audio=[AudioClip("loop", wav, POSITION)])


def render(song: Path, data: Path, period: int) -> dict[str, np.ndarray]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", str(song), "--data-dir", str(data), "--json", "--block-size", str(period)])
    assert code == 0, (out.getvalue(), err.getvalue())
    summary = json.loads(out.getvalue())
    assert {s["stream"] for s in summary["streams"]} == {"loop", "master"} and summary["ok"], summary
    audio = {}
    for name in ("loop", "master"):
        audio[name], rate = sf.read(data / "sessions" / "song" / name / "audio.wav", dtype="float32", always_2d=True)
        assert rate == RATE
    return audio


def placed(frames: int, lag: int) -> np.ndarray:
    """The WAV at the region's position, ``lag`` samples later, silence around it: ``frames`` long."""
    audio = clip()
    want = np.zeros((frames, 2), np.float32)
    want[POSITION + lag:POSITION + lag + len(audio)] = audio
    return want


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool((got.view(np.uint32) == want.view(np.uint32)).all())


def first_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    """Where and by how much ``got`` and ``want`` first differ, for a failure message."""
    n = min(len(got), len(want))
    where = np.flatnonzero((got[:n] != want[:n]).any(axis=1))
    return (int(where[0]), float(np.abs(got[:n] - want[:n]).max())) if len(where) else (-1, 0.0)


@pytest.mark.parametrize("period", [PERIOD, 256])
def test_the_audio_track_is_its_wav_bit_for_bit_a_port_latency_later(song: Path, tmp_path: Path, period: int) -> None:
    audio = render(song, tmp_path / "data", period)
    frames = POSITION + len(clip()) + TAIL  # the session range: build_session's, to the sample
    assert len(audio["loop"]) == len(audio["master"]) == frames
    want = placed(frames, TRACK_LAG)
    assert same_bits(audio["loop"], want), first_difference(audio["loop"], want)
    want = placed(frames, TRACK_LAG + period + TRACK_LAG)
    assert same_bits(audio["master"], want), first_difference(audio["master"], want)


def test_master_is_ardours_export_bit_for_bit_a_period_and_two_port_latencies_later(song: Path, tmp_path: Path) -> None:
    audio = render(song, tmp_path / "data", PERIOD)
    truth, rate = export(song, tmp_path)
    assert rate == RATE and len(truth) == len(audio["master"])
    assert same_bits(truth, placed(len(truth), 0)), first_difference(truth, placed(len(truth), 0))  # on the sample
    shift = PERIOD + 2 * TRACK_LAG
    assert same_bits(audio["master"][shift:], truth[:-shift]), first_difference(audio["master"][shift:], truth[:-shift])
    assert not audio["master"][:shift].any() and not truth[-shift:].any()  # nothing cut off either end
