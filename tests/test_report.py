"""``sendlearn report`` on a real render: a self-contained page whose plots are real PNGs, and JSON
whose figures are the dataset's as ``sendlearn.dataset`` reads it."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dataset_session import OVERLAP, TRACKS, WINDOW, copy_of_session
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = copy_of_session(tmp_path_factory, "report")
    assert main(["sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                 "--min-events", "3", "--workers", "2", "--json"]) == 0
    return data_dir


def test_report_is_one_self_contained_page_with_png_plots_and_json_beside_it(data_dir: Path, tmp_path: Path) -> None:
    import matplotlib.image

    out = tmp_path / "site" / "report.html"
    assert main(["report", "--data-dir", str(data_dir), "--out", str(out), "--json"]) == 0
    page = out.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing outside the file
    images = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]
    assert len(images) == 6
    for data in images:
        assert data.startswith(PNG) and len(data) > 5000
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 500 and float(pixels[..., :3].std()) > 0.05  # drawn on
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["images"] == {"corpus": len(images[0]), "quality": len(images[1]), "features": len(images[2]),
                                "tempo": len(images[3]), "window": len(images[4]), "window_features": len(images[5])}
    dataset = Dataset(data_dir)
    assert sorted(s["stream"] for s in report["streams"]) == sorted(TRACKS)
    for row in report["streams"]:
        stream = dataset.stream("band", row["stream"])
        assert (row["events"], row["notes"], row["channels"]) == (len(stream.events()), len(stream.notes()), 2)
        assert f"<td>{row['stream']}</td>" in page
    quiet = next(s for s in report["streams"] if s["stream"] == "quiet")
    assert quiet["flags"] == ["silent"] and quiet["silence_ratio"] == 1.0
    # the window plotted: its note-ons are the window's notes; the tempo line is the session's map
    shown = report["highlight"]
    window = next(w for w in dataset.windows("band") if w.index == shown["window"])
    notes = window.notes(shown["stream"])["start"].to_pylist()
    assert shown["note_ons"] == [s for s in notes if s >= 0] and shown["stream"] != "quiet" and notes
    assert shown["onsets_detected"] and all(0 <= s < window.frames for s in shown["onsets_detected"])
    tempo = report["tempo"]["band"]
    assert sorted(set(tempo["bpm"])) == [120.0, 150.0]
    assert {(n, d) for n, d in zip(tempo["ts_num"], tempo["ts_den"], strict=True)} == {(4, 4), (3, 4), (6, 8)}
    assert report["windows"] == report["windows_measured"] == 6
    assert sum(report["window_flags"].values()) >= 6 and len(report["quality_rows"]) == 6 * len(TRACKS)
    assert np.isfinite([v["mean"] for v in report["feature_summary"].values()]).all()
    assert {v["values"] for v in report["feature_summary"].values()} == {6 * len(TRACKS)}  # over windows, not streams
    # the corpus: hours at each tempo are the session's seconds at 120 and 150 bpm, its meters, its one table row
    seconds = dataset.session_frames("band") / 48000
    assert sum(report["tempo_hours"].values()) * 3600 == pytest.approx(seconds)
    assert set(report["tempo_hours"]) == {"120", "150"} and report["meter_sessions"] == {"3/4": 1, "4/4": 1, "6/8": 1}
    (row,) = report["session_table"]
    assert (row["session"], row["streams"], row["windows"], row["flagged"]) == ("band", 4, 6, 6)
    assert row["flags"] == report["window_flags"] and report["flags_counted_over"] == "all windows"


def test_a_corpus_report_details_a_few_sessions_evenly_and_tables_every_one(tmp_path: Path) -> None:
    from written_streams import sine, write_stream

    names = [f"piece{k:02d}" for k in range(7)]
    for k, name in enumerate(names):
        write_stream(tmp_path / "data", name, sine(0.3, 1.0 + 0.5 * k), note_every=2)
    out = tmp_path / "report.html"
    assert main(["report", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--max-sessions", "3",
                 "--json"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["sessions_detailed"] == ["piece00", "piece03", "piece06"]  # evenly, first and last
    assert sorted({s["session"] for s in report["streams"]}) == report["sessions_detailed"] == sorted(report["tempo"])
    assert [row["session"] for row in report["session_table"]] == names  # every session, one row each
    assert [row["windows"] for row in report["session_table"]] == [1] * 7  # shorter than 30 s: one padded window
    assert report["hours"] * 3600 == pytest.approx(sum(1.0 + 0.5 * k for k in range(7)), abs=0.02)
    assert report["tempo_hours"] == {"120": pytest.approx(report["hours"])} and report["meter_sessions"] == {"4/4": 7}
    assert report["flags_counted_over"] == "measured windows"  # no sequences/: flags measured, not stored
    page = out.read_text()
    assert all(f"<td>{name}</td>" in page for name in names) and page.count("<h3>") == 2
