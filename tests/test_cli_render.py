"""``sendlearn render``, ``demo`` and ``status`` as a user calls them: exit codes, messages,
``--json``, and the dataset they leave. Real renders, a real websocket, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from helpers import read_stream
from midi_files import write_tune
from sendlearn.cli.main import main
from sendlearn.server.receiver import ReceiverThread

STREAM_KEYS = {"input", "session", "track", "stream", "host", "seconds", "frames", "blocks", "events", "ok",
               "reason", "lag", "bytes_sent", "path", "host_log"}  # host_log: where its host's prints went (None: it printed nothing)
STORE_KEYS = {"resumed", "blocks_written"}  # the store sink's figures (--data-dir), as a batch reports them


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return {
        "tune": write_tune(root / "tune.mid", [(0, 60, 100), (480, 64, 90), (960, 67, 80)]),
        "cc_only": write_tune(root / "cc_only.mid", [], extra=[mido.Message("control_change", control=7, value=90)]),
        "vel0": write_tune(root / "vel0.mid", [(0, 60, 0), (480, 62, 0)]),  # note-ons at velocity 0 are note-offs
    }


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # exactly one JSON object on stdout
    return code, json.loads(lines[0])


def test_render_writes_a_stream_and_reports_it(files: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "render", str(files["tune"]), "--data-dir", str(tmp_path))
    assert code == 0
    assert set(report) == {"ok", "data_dir", "server", "elapsed_seconds", "streams", "failures"}
    assert report["ok"] is True and report["failures"] == [] and report["server"] is None
    assert report["data_dir"] == str(tmp_path.resolve())
    (stream,) = report["streams"]
    assert set(stream) == STREAM_KEYS | STORE_KEYS
    assert (stream["session"], stream["stream"], stream["host"], stream["ok"]) == ("tune", "tune", "dawdreamer", True)
    assert stream["events"] == 6 and stream["blocks"] == -(-stream["frames"] // 512)
    assert stream["seconds"] == pytest.approx(stream["frames"] / 48000)
    written = read_stream(tmp_path, "tune", "tune")
    assert Path(stream["path"]) == written["folder"]
    assert written["audio"].shape[1] == stream["frames"] and np.abs(written["audio"]).max() > 0.01
    assert written["info"]["complete"] is True and written["info"]["blocks"] == stream["blocks"]
    assert written["info"]["host"] == "dawdreamer"

    code, status = run_json(capsys, "status", "--data-dir", str(tmp_path))
    assert code == 0
    assert [(s["session"], s["stream"], s["state"], s["events"]) for s in status["streams"]] == \
           [("tune", "tune", "complete", 6)]


def test_render_prints_a_summary_table(files: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(files["tune"]), "--data-dir", str(tmp_path), "--sample-rate", "44100",
                 "--block-size", "256"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 streams ok" in out and "tune" in out and f"written to {tmp_path.resolve()}" in out
    assert read_stream(tmp_path, "tune", "tune")["info"]["block_size"] == 256


@pytest.mark.parametrize("name", ["cc_only", "vel0"])
def test_a_silent_render_fails_with_exit_1_and_writes_nothing(files: dict[str, Path], tmp_path: Path, name: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", str(files["tune"]), str(files[name]), "--data-dir", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1 and report["ok"] is False
    assert [(s["stream"], s["ok"]) for s in report["streams"]] == [("tune", True), (name, False)]
    (failure,) = report["failures"]
    assert failure["stream"] == name and failure["input"] == str(files[name]) and "silent" in failure["reason"]
    assert (tmp_path / "sessions" / "tune" / "tune" / "stream.json").is_file()  # the good one is written
    assert not (tmp_path / "sessions" / name).exists()  # the silent one is not written as data
    assert f"{files[name]}: {name}: render is silent" in captured.err


def bad_session(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "a.mid").write_bytes(b"")  # never read: the session fails before
    path = tmp_path / "bad.toml"
    path.write_text('name = "s"\n[[track]]\nname = "keys"\nmidi = "a.mid"\ninstrument = { faust = "poly_saw", voices = 0 }\n')
    return path, "track[0].instrument.voices: must be an integer in 1..64, got 0"


@pytest.mark.parametrize("case", ["missing", "extension", "session", "instrument", "not_midi", "rate", "nothing"])
def test_bad_input_exits_2_naming_the_file_and_the_problem(case: str, files: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tune = str(files["tune"])
    if case == "missing":
        argv, expected = [str(tmp_path / "nope.mid")], f"{tmp_path / 'nope.mid'}: no such file"
    elif case == "extension":
        (tmp_path / "x.wav").write_bytes(b"RIFF")
        argv, expected = [str(tmp_path / "x.wav")], f"{tmp_path / 'x.wav'}: not a .mid MIDI file or a .toml session"
    elif case == "session":
        path, problem = bad_session(tmp_path)
        argv, expected = [str(path)], f"{path}: {problem}"
    elif case == "instrument":
        argv, expected = [tune, "--instrument", "faust:no_such"], "--instrument faust:no_such: faust instrument 'no_such' is not bundled"
    elif case == "not_midi":
        (tmp_path / "junk.mid").write_text("not midi")
        argv, expected = [str(tmp_path / "junk.mid")], f"{tmp_path / 'junk.mid'}: {tmp_path / 'junk.mid'} is not a readable MIDI file"
    elif case == "rate":
        argv, expected = [tune, "--sample-rate", "12"], f"{tune}: sample_rate: must be an integer in"
    else:
        argv, expected = [], "give one or more INPUT files"
    out_dir = tmp_path / "data"
    assert main(["render", *argv, "--data-dir", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and captured.err.startswith("sendlearn render: ")
    assert captured.out == ""
    assert not out_dir.exists()  # checked before anything ran


def test_list_instruments(capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = run_json(capsys, "render", "--list-instruments")
    assert code == 0 and listed["default"] == "faust:poly_saw"
    specs = [i["spec"] for i in listed["instruments"]]
    assert {"faust:poly_saw", "faust:hard_attack", "faust:bass", "faust:drums", "gm"} <= set(specs)
    assert {"faust:NAME", "plugin:PATH", "soundfont:PATH[:PROGRAM]", "gm"} <= {f["spec"] for f in listed["spec_forms"]}
    assert main(["render", "--list-instruments"]) == 0
    assert "faust:hard_attack" in capsys.readouterr().out


def test_render_to_a_server_over_a_real_websocket(files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with ReceiverThread(tmp_path / "served", tokens={"right"}) as receiver:
        code, report = run_json(capsys, "render", str(files["tune"]), "--server", receiver.url, "--token", "right")
        assert code == 0 and report["server"] == receiver.url and report["data_dir"] is None
        assert report["streams"][0]["bytes_sent"] > 0 and report["streams"][0]["path"] is None
        code, refused = run_json(capsys, "render", str(files["tune"]), "--server", receiver.url, "--token", "wrong")
        assert code == 1 and "UNAUTHORIZED" in refused["failures"][0]["reason"]
    written = read_stream(tmp_path / "served", "tune", "tune")
    assert written["info"]["complete"] is True and len(written["events"]) == 6
    assert written["audio"].shape[1] == report["streams"][0]["frames"]


def test_a_server_that_is_not_there_fails_fast(files: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with ReceiverThread(tmp_path) as receiver:
        url = receiver.url  # a port that was just free; nobody listens once the receiver stops
    code, report = run_json(capsys, "render", str(files["tune"]), "--server", url)
    assert code == 1 and "cannot reach the receiver" in report["failures"][0]["reason"]
    assert main(["render", str(files["tune"]), "--server", "http://example.invalid"]) == 2
    assert "expected a ws:// or wss:// URL" in capsys.readouterr().err


def test_demo_writes_its_streams_and_status_sees_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "demo", "--data-dir", str(tmp_path))
    assert code == 0 and report["ok"] is True
    assert [s["stream"] for s in report["streams"]] == ["keys", "bass", "drums", "gtr-dry", "gtr-wet"]
    for stream in report["streams"][:3]:
        written = read_stream(tmp_path, "demo", stream["stream"])
        assert stream["events"] == len(written["events"]) > 0
        assert stream["audio"] == str(written["folder"] / written["info"]["audio"]["file"])
        assert np.abs(written["audio"]).max() > 0.01  # not silent
        assert written["audio"].shape[1] == stream["frames"] and stream["seconds"] > 20
        assert stream["event_kinds"]["note_on"] > 0
    kinds = {k for s in report["streams"] for k in s["event_kinds"]}
    assert {"control_change", "pitchwheel", "aftertouch"} <= kinds  # the demo's CC, bend, aftertouch
    keys = read_stream(tmp_path, "demo", "keys")
    assert set(keys["params"]["param"].to_pylist()) == {"cutoff"}  # the automated parameter
    assert {(b["ts_num"], b["ts_den"]) for b in keys["blocks"].to_pylist()} == {(4, 4), (3, 4)}
    tempos = sorted({round(b["bpm"], 3) for b in keys["blocks"].to_pylist()})  # MIDI tempos are whole µs
    assert tempos == [110.0, 120.0, 140.0]
    dry, wet = read_stream(tmp_path, "demo", "gtr-dry"), read_stream(tmp_path, "demo", "gtr-wet")
    assert dry["audio"].shape == wet["audio"].shape and dry["audio"].shape[1] == 8 * 48000
    assert np.abs(dry["audio"]).max() > 0.1 and not np.array_equal(dry["audio"], wet["audio"])
    steps = [(p["sample"], p["value"]) for p in wet["params"].to_pylist()]
    assert (4 * 48000, -9.0) in steps and steps[-1] == (7 * 48000, 0.0)  # the step and the ramp's end
    assert wet["info"]["meta"]["latency_samples"] == 0 and wet["info"]["meta"]["pair"] == "gtr-dry"

    code, status = run_json(capsys, "status", "--data-dir", str(tmp_path))
    assert code == 0
    assert [(s["stream"], s["state"], s["events"]) for s in status["streams"]] == sorted(
        (s["stream"], "complete", s["events"]) for s in report["streams"])


def test_demo_tells_a_newcomer_what_it_wrote(tmp_path: Path) -> None:
    # the installed command in its own process: stdout is a pipe, so no progress bar, and
    # whatever DawDreamer prints must not land on stdout
    done = subprocess.run([sys.executable, "-m", "sendlearn", "demo", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for text in ("keys", "bass", "drums", "gtr-wet", "bit for bit", "audio.wav", "events.parquet", f"sendlearn status --data-dir {tmp_path}"):
        assert text in done.stdout, text
    done = subprocess.run([sys.executable, "-m", "sendlearn", "demo", "--data-dir", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True  # stdout is the JSON, nothing else


def test_general_midi_streams_record_fluidsynth_lag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """FluidSynth's onsets lag; the render says so in each stream's stream.json, never as exact."""
    source = write_tune(tmp_path / "gm.mid", [(0, 60, 100), (480, 64, 100), (960, 67, 100)])
    assert main(["render", str(source), "--instrument", "gm", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    (stream,) = json.loads(capsys.readouterr().out)["streams"]
    info = json.loads((Path(stream["path"]) / "stream.json").read_text())
    assert info["host"] == "fluidsynth"
    assert info["meta"]["onset_lag_frames"] == stream["lag"] and 0 < stream["lag"] < 300


def test_rendering_the_same_input_again_is_acknowledged_not_rewritten(tmp_path: Path) -> None:
    source = write_tune(tmp_path / "again.mid", [(0, 60, 100), (480, 62, 100)])
    data = tmp_path / "data"
    assert main(["render", str(source), "--data-dir", str(data), "--json"]) == 0
    summary = data / "sessions" / "again" / "again" / "stream.json"
    before = summary.read_text()
    assert main(["render", str(source), "--data-dir", str(data), "--json"]) == 0  # same take: already durable
    assert summary.read_text() == before  # not written again
    other = write_tune(tmp_path / "again.mid", [(0, 64, 100)])  # same name, new notes: another take
    assert main(["render", str(other), "--data-dir", str(data), "--json"]) == 1
    assert summary.read_text() == before
    assert main(["render", str(other), "--data-dir", str(data), "--replace", "--json"]) == 0
    assert json.loads(summary.read_text())["events"] == 2
