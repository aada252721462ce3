"""Quality on generated signals written as real streams (the store's writer, float32 or 16-bit):
clipping means clipping, a note the instrument stole is flagged, and every piece yields windows."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from written_streams import RATE, sine, write_stream

from sendlearn.cli.main import main
from sendlearn.dataset import Dataset
from sendlearn.dataset.export import export
from sendlearn.dataset.quality import stream_quality, window_quality
from sendlearn.transport import Quality


def test_clipping_is_a_flat_top_in_float_and_full_scale_in_pcm(tmp_path: Path) -> None:
    write_stream(tmp_path, "loud", sine(1.5))  # float over full scale: nothing was lost
    write_stream(tmp_path, "limited", np.clip(sine(1.2), -0.8, 0.8))  # a hard limiter at 0.8
    write_stream(tmp_path, "pcm", np.clip(sine(1.5), -1.0, 32767 / 32768), Quality.PCM16)  # clipped at full scale
    write_stream(tmp_path, "pcm_clean", sine(0.9), Quality.PCM16)
    data = Dataset(tmp_path)
    rows = {s: stream_quality(data.stream(s, "synth")) for s in data.sessions()}
    assert {s: r["flags"] for s, r in rows.items()} == {"loud": [], "limited": ["clipped"], "pcm": ["clipped"],
                                                        "pcm_clean": []}
    assert data.stream("pcm", "synth").facts.audio.subtype == "PCM_16"
    assert rows["loud"]["clip_ratio"] == 0.0 and 0.3 < rows["loud"]["over_full_scale_ratio"] < 0.6
    # a sine at 1.2 is above 0.8 in magnitude 1 - (2/pi) asin(2/3) of the time: 53.5 %
    assert abs(rows["limited"]["clip_ratio"] - (1 - 2 / np.pi * np.arcsin(2 / 3))) < 0.005 and rows["limited"]["over_full_scale_ratio"] == 0.0
    assert rows["pcm"]["clip_ratio"] > 0.2 and rows["pcm_clean"]["clip_ratio"] == 0.0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["quality", "--data-dir", str(tmp_path), "--json"]) == 0
    streams = {r["session"]: r for r in json.loads(out.getvalue())["streams"]}
    assert streams["loud"]["over_full_scale_ratio"] == rows["loud"]["over_full_scale_ratio"]


def test_a_stolen_note_flags_its_window_and_stream(tmp_path: Path) -> None:
    write_stream(tmp_path, "stolen", sine(0.5, 3.0), meta={"stolen_samples": [100_000]})
    write_stream(tmp_path, "whole", sine(0.5, 3.0))
    data = Dataset(tmp_path)
    flags = {w.start_sample: window_quality(w)["flags"] for w in data.windows("stolen", window=1.0, overlap=0.0)}
    assert flags == {0: [], 48000: [], 96000: ["stolen_notes"]}
    assert stream_quality(data.stream("stolen", "synth"))["flags"] == ["stolen_notes"]
    assert stream_quality(data.stream("whole", "synth"))["flags"] == []  # no key: no flag


def test_every_piece_of_a_short_file_corpus_yields_windows_padded_with_zeros(tmp_path: Path) -> None:
    lengths = {"tiny": 0.3, "short": 1.7, "tail": 4.2}  # seconds; windows of 2 s with 0.5 s overlap
    for name, seconds in lengths.items():
        write_stream(tmp_path, name, sine(0.5, seconds) + 0.01, note_every=4)  # never exactly 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sequences", "--data-dir", str(tmp_path), "--window", "2", "--overlap", "0.5", "--min-events", "20",
                     "--workers", "1", "--json"]) == 0
    assert {s["session"]: s["windows"] for s in json.loads(out.getvalue())["sessions"]} == {
        "tiny": 1, "short": 1, "tail": 3}  # tail: whole windows at 0 and 1.5 s, then 3.0 s padded
    data = Dataset(tmp_path)
    for name, seconds in lengths.items():
        frames = round(seconds * RATE)
        last = list(data.windows(name))[-1]
        assert last.frames == 2 * RATE and last.frames_valid == frames - last.start_sample
        audio = last.audio("synth")
        assert audio[:, :last.frames_valid].all() and not audio[:, last.frames_valid:].any()  # exact zeros
        assert (last.events("synth")["sample"].to_numpy() < last.frames_valid).all()
        events = len(last.events("synth"))
        assert ("few_events" in last.flags) == (events < 20) and "silent" not in last.flags
    tiny = next(iter(data.windows("tiny")))  # quality measures the real part only: no silence from padding
    assert window_quality(tiny)["rows"][0]["silence_ratio"] == 0.0
    dropped = {s: len(list(data.windows(s, 2.0, 0.5, 20, tail="drop"))) for s in lengths}
    assert dropped == {"tiny": 0, "short": 0, "tail": 2}
    windows = [w for s in lengths for w in data.windows(s)]
    result = export("pytorch", tmp_path, tmp_path / "pt", include_flagged=True, with_features=False)
    assert result.samples == len(windows) == 5
    assert result.audio_seconds == pytest.approx(sum(w.frames_valid for w in windows) / RATE)  # not the padding
