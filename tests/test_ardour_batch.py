"""``sendlearn render DIR --workers N | --scheduler URL`` on a folder of real Ardour 7.3 sessions
(built with ardour7-lua, tests/ardour.py) beside a MIDI file and a broken session:

- each session renders in a worker of its own, on its own private jackd, into the same streams a
  ``render SESSION`` of it writes (audio byte for byte, events and playheads equal), and two
  sessions rendered at once do not hear each other;
- nothing inside a session folder is an input of its own (Ardour's recorded takes are .mid files);
- a broken session is a failure naming it, the batch goes on; a rerun skips what is complete
  without starting Ardour;
- the same on a Dask cluster;
- Ctrl-C midway: no jackd, Ardour or work folder left (they live under the batch's TMPDIR), and a
  rerun completes the takes.
A missing Ardour fails (tests/ardour.py names the package), never a skip."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pyarrow.parquet as pq
import pytest
from ardour import build_song, wait_rolling

from sendlearn.cli.main import main

RATE = 48000
NOTES = 6
END = 200  # seconds: long enough that Ctrl-C lands while the renders run


def render(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", *args, "--json"])
    return code, json.loads(out.getvalue()), err.getvalue()


def renamed(song: Path, folder: Path, name: str) -> Path:
    """A copy of the session ``song`` saved as ``name``: Ardour names a session after its snapshot
    and finds its sources under interchange/<name>."""
    shutil.copytree(song, folder, ignore=shutil.ignore_patterns("*.bak", "*.pending"))
    (folder / "song.ardour").rename(folder / f"{name}.ardour")
    (folder / "interchange" / "song").rename(folder / "interchange" / name)
    file = folder / f"{name}.ardour"
    file.write_text(file.read_text().replace('<Session version="7002" name="song"', f'<Session version="7002" name="{name}"', 1))
    for extra in folder.glob("song.*"):
        extra.rename(folder / f"{name}{extra.suffix}")
    return folder


def loose_midi(path: Path) -> Path:
    track = mido.MidiTrack([mido.Message("note_on", note=60 + k, velocity=90, time=0 if k == 0 else 240)
                            for k in range(4)] + [mido.Message("note_off", note=60 + k, time=240) for k in range(4)])
    mido.MidiFile(tracks=[track]).save(path)
    return path


def stream_data(folder: Path) -> dict[str, object]:
    """What a stream holds, less who wrote it and when: audio bytes, events, playheads."""
    blocks = pq.read_table(folder / "blocks.parquet").to_pydict()
    return {"audio": (folder / "audio.wav").read_bytes(),
            "events": pq.read_table(folder / "events.parquet").select(["sample", "data"]).to_pydict(),
            "playheads": {k: blocks[k] for k in ("sample", "playing", "bpm", "ts_num", "ts_den", "bar", "beat")}}


def left_behind(tmpdir: Path) -> list[str]:
    """Processes started under ``tmpdir`` as TMPDIR (jackd, Ardour, workers inherit it)."""
    mark = f"TMPDIR={tmpdir}\0".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if mark in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return found


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_song(tmp_path_factory.mktemp("ardour-batch"), rate=RATE, notes=NOTES)


@pytest.fixture(scope="module")
def alone(song: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``render SESSION``'s dataset of ``song``, what a batch must write too."""
    data = tmp_path_factory.mktemp("alone")
    code, summary, err = render(str(song), "--data-dir", str(data))
    assert code == 0, (summary, err)
    return data / "sessions" / "song"


def test_a_folder_of_ardour_sessions_renders_each_in_a_graph_of_its_own(song: Path, alone: Path,
                                                                         tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(song, corpus / "song")
    renamed(song, corpus / "tune", "tune")
    loose_midi(corpus / "loose.mid")
    (corpus / "broken").mkdir()
    (corpus / "broken" / "broken.ardour").write_text("<Session")
    data = tmp_path / "data"
    code, summary, err = render(str(corpus), "--workers", "2", "--data-dir", str(data))
    assert code == 1, (summary, err)
    assert (summary["inputs"], summary["done"], summary["failed"]) == (4, 3, 1), summary["failures"]
    [failure] = summary["failures"]
    assert failure["input"] == str(corpus / "broken") and failure["reason"].startswith("not an Ardour session"), failure
    # the sessions, and the loose file; none of the takes Ardour recorded inside the sessions
    assert sorted(p.name for p in (data / "sessions").iterdir()) == ["loose", "song", "tune"]
    assert sorted((o["session"], o["stream"]) for o in summary["streams"] if o["session"] != "loose") == [
        ("song", "master"), ("song", "synth"), ("tune", "master"), ("tune", "synth")]
    assert all(o["ok"] for o in summary["streams"]), summary["streams"]
    for stream in ("synth", "master"):
        want = stream_data(alone / stream)
        assert stream_data(data / "sessions" / "song" / stream) == want, stream
        assert stream_data(data / "sessions" / "tune" / stream) == want, stream  # rendered beside song, apart
    assert len(stream_data(alone / "synth")["events"]["sample"]) == 2 * NOTES  # type: ignore[index]
    written = {p: p.stat().st_mtime_ns for p in (data / "sessions").rglob("stream.json")}

    code, again, err = render(str(corpus), "--workers", "2", "--data-dir", str(data))
    assert code == 1 and (again["skipped"], again["failed"], again["audio_seconds"]) == (3, 1, 0), (again, err)
    assert {p: p.stat().st_mtime_ns for p in (data / "sessions").rglob("stream.json")} == written


def test_ardour_sessions_render_on_a_dask_cluster(song: Path, alone: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    corpus = tmp_path / "corpus"
    shutil.copytree(song, corpus / "song")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, summary, err = render(str(corpus), "--scheduler", cluster.scheduler_address,
                                    "--data-dir", str(tmp_path / "data"))
    assert code == 0 and summary["done"] == 1, (summary, err)
    for stream in ("synth", "master"):
        assert stream_data(tmp_path / "data" / "sessions" / "song" / stream) == stream_data(alone / stream), stream


def test_ctrl_c_midway_leaves_nothing_running_and_a_rerun_completes(song: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(song, corpus / "song")
    renamed(song, corpus / "tune", "tune")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    data = tmp_path / "data"
    command = [sys.executable, "-m", "sendlearn", "render", str(corpus), "--workers", "2", "--end", str(END),
               "--data-dir", str(data), "--json"]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_rolling(batch, data)  # a fixed wait after its jackd came up let a quiet machine render it all first
    assert batch.poll() is None, "the batch ended before the signal: make END longer"
    batch.send_signal(signal.SIGINT)
    out, err = batch.communicate(timeout=120)
    summary = json.loads(out)
    assert batch.returncode == 0 and summary["interrupted"] and summary["done"] < 2, (summary, err)
    assert "Traceback" not in err, err
    gone = time.monotonic() + 60  # a hang guard: jackd and Ardour get SIGTERM with their worker (PR_SET_PDEATHSIG) and shut down, slowly on a loaded machine
    while left_behind(tmpdir) and time.monotonic() < gone:
        time.sleep(0.1)
    assert left_behind(tmpdir) == []
    done = [s for s in ("song", "tune") for stream in ("synth", "master")
            if json.loads((data / "sessions" / s / stream / "stream.json").read_text()
                          if (data / "sessions" / s / stream / "stream.json").is_file() else "{}").get("complete")]
    assert len(done) < 4, done

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    summary = json.loads(again.stdout)
    assert again.returncode == 0 and summary["done"] + summary["skipped"] == 2, (summary, again.stderr)
    for session in ("song", "tune"):
        for stream in ("synth", "master"):
            info = json.loads((data / "sessions" / session / stream / "stream.json").read_text())
            assert info["complete"] is True and info["audio"]["frames"] == END * RATE and info["gaps"] == [], info
    assert list(tmpdir.glob("sendlearn-ardour-*")) == []  # the killed renders' session copies swept
