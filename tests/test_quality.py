"""``sendlearn quality`` catches what was planted in a real render: a silent stream (-90 dB), one
over full scale (+24 dB in float: reported, not clipped) and an empty window (no track plays from 3
to 5 s); a clean, sample-exact stream is measured as clean and aligned to 0 samples. Clipping on
generated signals is in test_quality_signals.py."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from dataset_session import EMPTY, OVERLAP, RATE, TRACKS, WINDOW, copy_of_session, notes, sample_at
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset
from sendlearn.dataset.schema import QUALITY_SCHEMA


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = copy_of_session(tmp_path_factory, "quality")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                     "--min-events", "3", "--workers", "1"]) == 0
    return data_dir


@pytest.fixture(scope="module")
def report(data_dir: Path) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["quality", "--data-dir", str(data_dir), "--json"]) == 0
    (line,) = [line for line in out.getvalue().splitlines() if line.strip()]
    return json.loads(line)


def test_every_stream_is_named_and_planted_faults_are_flagged(report: dict) -> None:
    streams = {s["stream"]: s for s in report["streams"]}
    assert sorted(streams) == sorted(TRACKS) and {s["session"] for s in report["streams"]} == {"band"}
    assert streams["quiet"]["flags"] == ["silent"] and streams["quiet"]["silence_ratio"] == 1.0
    # +24 dB in float: over full scale but not clipped (float holds it); reported, not flagged
    assert streams["loud"]["flags"] == [] and streams["loud"]["peak"] > 1.0
    assert streams["loud"]["clip_ratio"] == 0.0 and streams["loud"]["over_full_scale_ratio"] > 0.01
    assert streams["lead"]["flags"] == [] and streams["bass"]["flags"] == []
    assert streams["lead"]["clip_ratio"] == 0.0 and streams["lead"]["degraded_fraction"] == 0.0


def test_measures_against_the_audio_and_notes(data_dir: Path, report: dict) -> None:
    streams = {s["stream"]: s for s in report["streams"]}
    for name in TRACKS:
        audio, _ = soundfile.read(str(data_dir / "sessions" / "band" / name / "audio.wav"), dtype="float32")
        row, truth = streams[name], notes(name)
        assert row["peak"] == pytest.approx(float(np.abs(audio).max()), rel=1e-6)
        assert row["rms"] == pytest.approx(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))), rel=1e-6)
        assert row["notes"] == len(truth) and row["note_density"] == pytest.approx(len(truth) / (len(audio) / RATE))
        assert (row["pitch_min"], row["pitch_max"]) == (min(n[2] for n in truth), max(n[2] for n in truth))
        assert (row["velocity_min"], row["velocity_max"]) == (min(n[3] for n in truth), max(n[3] for n in truth))
        assert (row["tempo_min"], row["tempo_max"]) == (120.0, 150.0) and row["polyphony_max"] == 1
        assert 0.0 < row["complexity"] <= 1.0
    lead = streams["lead"]  # hard_attack sounds from the note-on sample: aligned to 0 samples
    assert lead["alignment_notes"] >= 10 and (lead["alignment_median"], lead["alignment_max_abs"]) == (0.0, 0)
    # bass and poly_saw rise from silence over their attacks: every DawDreamer onset is still exact
    for name in ("bass", "loud"):
        assert streams[name]["alignment_notes"] >= 5, name
        assert (streams[name]["alignment_median"], streams[name]["alignment_max_abs"]) == (0.0, 0), name


def test_windows_are_flagged_silent_and_empty_and_over_full_scale_is_reported(data_dir: Path, report: dict) -> None:
    windows = list(Dataset(data_dir).windows("band"))
    rows = pq.read_table(data_dir / "sequences" / "quality.parquet").to_pylist()
    empty = [w.index for w in windows if "empty" in w.flags]
    assert empty == [w.index for w in windows if w.start_sample == round(EMPTY[0] * RATE)] == [2]
    assert windows[2].event_count == 0 and "few_events" in windows[2].flags
    for window in windows:
        start, stop = window.start_sample, window.start_sample + window.frames

        def sounds(track: str, start: int = start, stop: int = stop) -> bool:
            return any(sample_at(on) < stop and sample_at(off) > start for on, off, _, _ in notes(track))

        assert ("silent" in window.flags) == (sounds("quiet") or window.index == 2), window
        assert "clipped" not in window.flags and "degraded" not in window.flags
        (loud,) = [r for r in rows if r["window"] == window.index and r["stream"] == "loud"]
        assert (loud["over_full_scale_ratio"] > 0) == sounds("loud"), window
    flagged = {(w["session"], w["window"]): w["flags"] for w in report["flagged_windows"]}
    assert flagged == {("band", w.index): list(w.flags) for w in windows if w.flags}


def test_quality_parquet_holds_every_stream_and_window(data_dir: Path, report: dict) -> None:
    table = pq.read_table(data_dir / "sequences" / "quality.parquet")
    assert table.schema.equals(QUALITY_SCHEMA) and report["path"] == str(data_dir / "sequences" / "quality.parquet")
    rows = table.to_pylist()
    assert sorted((r["stream"], r["window"]) for r in rows if r["window"] is None) == [(s, None) for s in sorted(TRACKS)]
    assert sorted((r["window"], r["stream"]) for r in rows if r["window"] is not None) == [
        (w, s) for w in range(6) for s in sorted(TRACKS)]
    for row in rows:
        if row["window"] is not None:
            assert row["frames"] == round(WINDOW * RATE) and row["start_sample"] == row["window"] * 72000
            assert row["frames_valid"] == (row["frames"] if row["window"] < 5 else 398401 - 5 * 72000)
            assert (row["stream"] == "quiet" and row["notes"] > 0) <= ("silent" in row["flags"])


def test_the_derived_tables_carry_the_format_version(data_dir: Path, report: dict) -> None:
    from sendlearn.dataset import FORMAT_VERSION
    from sendlearn.dataset.schema import FORMAT_KEY

    for path in (data_dir / "sequences" / "quality.parquet", data_dir / "sequences" / "band" / "windows.parquet"):
        assert pq.read_schema(path).metadata[FORMAT_KEY] == FORMAT_VERSION.encode(), path


def test_degraded_audio_and_gaps_are_flagged(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    import pyarrow as pa

    from sendlearn.dataset import BLOCKS_SCHEMA
    from sendlearn.dataset.quality import stream_quality, window_quality

    folder = tmp_path / "sessions" / "band" / "lead"
    shutil.copytree(data_dir / "sessions" / "band" / "lead", folder)
    blocks = [dict(row, quality="REDUCED" if row["seq"] == 200 else row["quality"])  # plant: one degraded block
              for row in pq.read_table(folder / "blocks.parquet").to_pylist() if row["seq"] != 300]  # and one gap
    pq.write_table(pa.Table.from_pylist(blocks, schema=BLOCKS_SCHEMA), folder / "blocks.parquet")
    info = json.loads((folder / "stream.json").read_text())
    info["gaps"] = [{"first_seq": 300, "last_seq": 300, "start_sample": 153600, "end_sample": 154112,
                     "reason": "never arrived"}]
    (folder / "stream.json").write_text(json.dumps(info))
    data = Dataset(tmp_path)
    row = stream_quality(data.stream("band", "lead"))
    assert row["flags"] == ["degraded", "gaps"] and row["degraded_fraction"] == 1024 / row["frames"]
    flags = {w.index: window_quality(w)["flags"] for w in data.windows("band", window=2.0, overlap=0.5)}
    # seq 200 is samples 102400-102911 (window 1: 72000-167999), seq 300 153600-154111 (windows 1 and 2)
    assert {i for i, f in flags.items() if "degraded" in f} == {1, 2}


def test_docs_describe_the_written_tables(data_dir: Path, report: dict) -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "dataset.md").read_text()
    names = {"int64": "int64", "float64": "double", "string": "string", "list of string": "list<string>"}

    def documented(section: str, after: str = "") -> list[tuple[str, str, bool]]:
        text = doc.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        text = text.split(after, 1)[1] if after else text
        rows = re.findall(r"^\| `(\w+)` \| ([\w ,]+) \|", text, re.M)
        return [(name, names[kind.split(",")[0].strip()], kind.endswith("null")) for name, kind in rows]

    for path, section, after in ((data_dir / "sequences" / "quality.parquet", "Quality", ""),
                                 (data_dir / "sequences" / "band" / "windows.parquet", "Sequences", "windows.parquet")):
        schema = pq.read_schema(path)
        kinds = [f"list<{f.type.value_type}>" if hasattr(f.type, "value_type") else str(f.type) for f in schema]
        assert documented(section, after) == [(f.name, k, f.nullable) for f, k in zip(schema, kinds, strict=True)]
