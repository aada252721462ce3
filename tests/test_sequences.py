"""``sendlearn sequences`` and ``Dataset.windows`` on a real 4-track render with tempo and meter
changes: window arithmetic, slices and re-based tables checked against the files read directly,
features against librosa called directly, the piano roll against the notes worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile

from dataset_session import OVERLAP, RATE, TRACKS, WINDOW, copy_of_session, notes, sample_at
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset
from sendlearn.dataset.features import FEATURES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of_session(tmp_path_factory, "sequences")


@pytest.fixture(scope="module")
def report(data_dir: Path) -> dict:
    return run_json(["sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                     "--min-events", "3", "--workers", "2"])


def run_json(argv: list[str]) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv + ["--json"]) == 0
    (line,) = [line for line in out.getvalue().splitlines() if line.strip()]  # one JSON object
    return json.loads(line)


def files(data_dir: Path, stream: str) -> tuple[np.ndarray, dict]:
    folder = data_dir / "sessions" / "band" / stream
    audio, _ = soundfile.read(str(folder / "audio.wav"), dtype="float32", always_2d=True)
    return audio.T, {name: pq.read_table(folder / f"{name}.parquet") for name in ("events", "params")}


def test_windows_start_every_hop_and_the_tail_is_padded(data_dir: Path, report: dict) -> None:
    length = max(soundfile.info(str(data_dir / "sessions" / "band" / s / "audio.wav")).frames for s in TRACKS)
    hop, frames = round((WINDOW - OVERLAP) * RATE), round(WINDOW * RATE)
    whole = [k * hop for k in range(length) if k * hop + frames <= length]
    windows = list(Dataset(data_dir).windows("band"))
    assert len(whole) == 5 and whole[-1] + frames < length  # 8.3 s: 0.3 s after the last whole window
    assert [w.start_sample for w in windows] == whole + [whole[-1] + hop]
    assert [w.frames_valid for w in windows] == [frames] * 5 + [length - whole[-1] - hop]
    assert {(w.frames, w.sample_rate, w.streams) for w in windows} == {(frames, RATE, tuple(sorted(TRACKS)))}
    assert [w.index for w in windows] == list(range(6))
    (session,) = report["sessions"]
    assert (session["session"], session["windows"], session["computed"]) == ("band", 6, 6)
    last = windows[-1]
    for stream in TRACKS:  # past the session's end: exact zeros and no event, in the audio and the features
        assert not last.audio(stream)[:, last.frames_valid:].any() and last.audio(stream)[:, :last.frames_valid].any()
        assert (last.events(stream)["sample"].to_numpy() < last.frames_valid).all()
        assert last.features(stream)["rms"].shape == (1, 1 + frames // 512)
    dropped = list(Dataset(data_dir).windows("band", WINDOW, OVERLAP, 3, tail="drop"))  # whole windows only
    assert [(w.start_sample, w.frames_valid) for w in dropped] == [(s, frames) for s in whole]


def test_window_slices_and_tables_are_the_streams_rebased(data_dir: Path, report: dict) -> None:
    for name in TRACKS:
        audio, tables = files(data_dir, name)
        for window in Dataset(data_dir).windows("band"):
            start, stop = window.start_sample, window.start_sample + window.frames
            got = window.audio(name)
            assert got.dtype == np.float32 and got.shape == (2, window.frames)
            padded = np.zeros((2, window.frames), np.float32)  # the last window: the tail, then zeros
            padded[:, :window.frames_valid] = audio[:, start:stop]
            assert audio[:, start:stop].shape[1] == window.frames_valid and got.tobytes() == padded.tobytes()
            events = tables["events"].filter(pc.and_(pc.greater_equal(tables["events"]["sample"], start),
                                                     pc.less(tables["events"]["sample"], stop)))
            rebased = window.events(name)
            assert rebased["sample"].to_pylist() == [s - start for s in events["sample"].to_pylist()]
            for column in ("data", "kind", "channel", "block_seq", "offset"):
                assert rebased[column].equals(events[column])
            ons = [s for s, k in zip(rebased["sample"].to_pylist(), rebased["kind"].to_pylist(), strict=True)
                   if k == "note_on"]
            assert ons == [sample_at(on) - start for on, _, _, _ in notes(name) if start <= sample_at(on) < stop]
            assert window.playhead(name).bpm == (120.0 if start < 1.5 * RATE else 150.0)


def test_window_params_carry_the_value_in_force(data_dir: Path, report: dict) -> None:
    _, tables = files(data_dir, "loud")
    changes = tables["params"].to_pylist()
    for window in Dataset(data_dir).windows("band"):
        start, stop = window.start_sample, window.start_sample + window.frames
        rows = window.params("loud").to_pylist()
        before = [c for c in changes if c["sample"] < start]
        inside = [dict(c, sample=c["sample"] - start) for c in changes if start <= c["sample"] < stop]
        carried = [dict(before[-1], sample=0)] if before and not any(c["sample"] == 0 for c in inside) else []
        assert rows == carried + inside


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning from empty frequency set")  # librosa, on silence
def test_features_equal_librosa_called_directly(data_dir: Path, report: dict) -> None:
    for window in Dataset(data_dir).windows("band"):
        for name in TRACKS:
            audio, _ = files(data_dir, name)
            padded = np.zeros((2, window.frames), np.float32)  # the last window: padded with zeros
            padded[:, :window.frames_valid] = audio[:, window.start_sample:window.start_sample + window.frames]
            mono = padded.mean(axis=0)
            truth = {
                "mfcc": librosa.feature.mfcc(y=mono, sr=RATE, n_mfcc=13, hop_length=512),
                "chroma": librosa.feature.chroma_stft(y=mono, sr=RATE, hop_length=512),
                "spectral_centroid": librosa.feature.spectral_centroid(y=mono, sr=RATE, hop_length=512),
                "spectral_bandwidth": librosa.feature.spectral_bandwidth(y=mono, sr=RATE, hop_length=512),
                "spectral_rolloff": librosa.feature.spectral_rolloff(y=mono, sr=RATE, hop_length=512),
                "spectral_contrast": librosa.feature.spectral_contrast(y=mono, sr=RATE, hop_length=512),
                "rms": librosa.feature.rms(y=mono, hop_length=512),
                "onset_strength": librosa.onset.onset_strength(y=mono, sr=RATE, hop_length=512),
            }
            got = window.features(name)  # read from the sequences/ cache
            assert set(got) == set(FEATURES)
            for feature, expected in truth.items():
                assert got[feature].shape == expected.shape and got[feature].shape[-1] == 1 + window.frames // 512
                assert np.array_equal(got[feature], expected), (window.index, name, feature)


def test_piano_roll_is_the_notes_sounding_at_each_frame(data_dir: Path, report: dict) -> None:
    for window in Dataset(data_dir).windows("band"):
        for name in TRACKS:
            roll = window.features(name)["piano_roll"]
            frames = 1 + window.frames // 512
            truth = np.zeros((128, frames), dtype=np.float32)
            for on, off, pitch, velocity in notes(name):
                for t in range(frames):
                    if sample_at(on) <= window.start_sample + t * 512 < sample_at(off):
                        truth[pitch, t] = velocity
            assert roll.shape == (128, frames) and np.array_equal(roll, truth), (window.index, name)
    lead = next(w for w in Dataset(data_dir).windows("band") if w.index == 1)
    assert lead.features("lead")["piano_roll"][72, 0] == 100  # the note begun before 1.5 s sounds at frame 0


def test_cache_is_reused_and_its_layout_documented(data_dir: Path, report: dict) -> None:
    root = data_dir / "sequences" / "band"
    settings = json.loads((root / "sequences.json").read_text())
    assert (settings["window"], settings["overlap"], settings["min_events"], settings["windows"]) == (2.0, 0.5, 3, 6)
    assert settings["tail"] == "pad"
    assert (settings["hop"], settings["frames"], sorted(settings["streams"])) == (72000, 96000, sorted(TRACKS))
    assert sorted(p.name for p in (root / "features" / "lead").iterdir()) == [f"{i:06d}.npz" for i in range(6)]
    stored = pq.read_table(root / "windows.parquet").to_pylist()
    windows = list(Dataset(data_dir).windows("band"))
    assert [(r["index"], r["start_sample"], r["frames"], r["frames_valid"]) for r in stored] == [
        (w.index, w.start_sample, w.frames, w.frames_valid) for w in windows]
    assert [tuple(r["flags"]) for r in stored] == [w.flags for w in windows]
    assert [r["events"] for r in stored] == [w.event_count for w in windows]
    again = run_json(["sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                      "--min-events", "3", "--workers", "1"])
    assert again["sessions"][0]["computed"] == 0  # nothing recomputed
    # windows cut afresh with other settings (no cache) hold the same audio and features as direct computation
    fresh = next(iter(Dataset(data_dir).windows("band", window=1.0, overlap=0.0)))
    assert fresh.frames == RATE and fresh.audio("lead").shape == (2, RATE)


def test_bad_usage_exits_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sequences", "--data-dir", str(data_dir), "--window", "2", "--overlap", "2"]) == 2
    assert "overlap < window" in capsys.readouterr().err
    assert main(["sequences", "--data-dir", str(data_dir), "--session", "nope"]) == 2
    assert "--session nope" in capsys.readouterr().err
    assert main(["sequences", "--data-dir", str(tmp_path / "missing")]) == 2
    assert main(["quality", "--data-dir", str(tmp_path / "missing")]) == 2


def test_stored_windows_read_without_librosa(data_dir: Path, report: dict) -> None:
    """The reader is in the base install; librosa (the 'dataset' extra) only computes features."""
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["librosa"] = None  # as if the extra were not installed
from sendlearn.dataset import Dataset
data = Dataset({str(data_dir)!r})
windows = list(data.windows("band"))
print(len(windows), windows[2].flags, windows[0].features("lead")["mfcc"].shape)
try:
    next(iter(data.windows("band", window=1.0, overlap=0.0))).features("lead")
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["6 ('empty', 'few_events', 'silent') (13, 188)",
                                        "computing features needs librosa, which this install lacks "
                                        "(pip install 'sendlearn[dataset]')"]


def test_a_stopped_build_ends_cleanly_and_resumes(tmp_path_factory: pytest.TempPathFactory) -> None:
    import signal
    import subprocess
    import sys
    import time

    data_dir = copy_of_session(tmp_path_factory, "stopped")
    argv = [sys.executable, "-m", "sendlearn", "sequences", "--data-dir", str(data_dir), "--window", "0.5",
            "--overlap", "0", "--workers", "2"]
    build = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    features = data_dir / "sequences" / "band" / "features"
    deadline = time.monotonic() + 120  # a hang guard only
    while build.poll() is None and not any(features.glob("*/*.npz")) and time.monotonic() < deadline:
        time.sleep(0.01)
    build.send_signal(signal.SIGTERM)  # mid-build, or just after it finished: either way it ends whole
    out, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    again = run_json(["sequences", "--data-dir", str(data_dir), "--window", "0.5", "--overlap", "0"])
    (session,) = again["sessions"]
    assert session["windows"] == 17 and 0 <= session["computed"] <= 17  # 16 whole, and 0.3 s padded
    for stream in TRACKS:  # every window's file is whole and holds every feature
        files = sorted((features / stream).glob("*.npz"))
        assert [f.name for f in files] == [f"{i:06d}.npz" for i in range(17)]
        for file in files:
            with np.load(file) as stored:
                assert set(stored.files) == set(FEATURES)
    assert not list(features.glob("*/.*.tmp"))  # no temporary file left behind
