"""``sendlearn render DIR --workers N | --scheduler``: batches of real renders (the default Faust
instrument) in real worker processes, a real SIGKILL, a real Dask ``LocalCluster``. Judged on
the data written, never on timing."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sendlearn.cli.main import main
from sendlearn.dataset import Dataset

ROOT = Path(__file__).resolve().parent.parent
SENDLEARN = str(Path(sys.executable).parent / "sendlearn")
_spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "scripts" / "make_corpus.py")
corpus_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_script)


def render_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["render", *argv, "--json"])
    out = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(out) == 1, out
    return code, json.loads(out[0])


def run_json(*argv: str) -> tuple[int, dict]:
    done = subprocess.run([SENDLEARN, "render", *argv, "--json"], capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout.splitlines()[-1])


def stream_files(data_dir: Path) -> dict[str, bytes]:
    """Every public file under sessions/ (not a stream's work files), by relative path;
    stream.json without its timestamp."""
    files = {}
    for path in sorted((data_dir / "sessions").rglob("*")):
        if path.is_file() and ".work" not in path.parts:
            data = path.read_bytes()
            if path.name == "stream.json":
                summary = json.loads(data)
                summary.pop("finalised_at")
                data = json.dumps(summary, sort_keys=True).encode()
            files[str(path.relative_to(data_dir))] = data
    return files


def check_complete(data_dir: Path) -> int:
    """Every stream complete, each block once, audio as long as its blocks; returns the count."""
    data = Dataset(data_dir)
    count = 0
    for session in data.sessions():
        for name in data.streams(session):
            stream = data.stream(session, name)
            info = stream.info
            assert info["complete"] and info["gaps"] == [] and info["duplicates_ignored"] == 0, (session, name)
            blocks = stream.blocks()
            assert blocks.column("seq").to_pylist() == list(range(info["blocks"]))
            assert info["blocks"] == math.ceil(info["audio"]["frames"] / info["block_size"])
            assert stream.audio().shape[1] == info["audio"]["frames"] == sum(blocks.column("frames").to_pylist())
            assert stream.events().num_rows > 0
            count += 1
    return count


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five short GM scores in sub-folders (two of them both named song.mid) and one of 30 s,
    rendered third in order: a SIGKILL can catch it half written."""
    root = tmp_path_factory.mktemp("corpus")
    corpus_script.make_corpus(root, 5, (1.0, 2.5), seed=7, nested=True)
    corpus_script.make_file(root / "set0" / "song0001_long.mid", __import__("random").Random(3), 30.0)
    return root


def test_bad_inputs_are_failures_with_reasons_and_the_rest_is_written(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(corpus / "set1", inputs / "good")
    (inputs / "bad").mkdir()
    (inputs / "bad" / "noise.mid").write_bytes(os.urandom(512))
    (inputs / "bad" / "empty.mid").write_bytes(b"")
    corpus_script.make_file(inputs / "bad" / "quiet.mid", __import__("random").Random(1), 2.0)
    import mido

    quiet = mido.MidiFile(inputs / "bad" / "quiet.mid")
    for track in quiet.tracks:  # keep the tempo map and program changes, drop every note
        track[:] = [m if m.type not in ("note_on", "note_off") else mido.MetaMessage("marker", time=m.time)
                    for m in track]
    quiet.save(inputs / "bad" / "quiet.mid")
    (inputs / "readme.txt").write_text("not an input: directories yield .mid, .midi and .toml only")
    data = tmp_path / "data"

    code, report = render_json(capsys, str(inputs), "--workers", "2", "--data-dir", str(data))
    assert code == 1 and report["inputs"] == 5 and (report["done"], report["skipped"], report["failed"]) == (2, 0, 3)
    reasons = {Path(f["input"]).name: f["reason"] for f in report["failures"]}
    assert reasons == {"noise.mid": reasons["noise.mid"], "empty.mid": "empty file", "quiet.mid": "render is silent"}
    assert reasons["noise.mid"].startswith("not a readable MIDI file")
    assert check_complete(data) == 2
    assert {s["session"] for s in report["streams"] if s["ok"]} == {"good_song", "good_song0004"}

    before = stream_files(data)
    code, again = render_json(capsys, str(inputs), "--workers", "2", "--data-dir", str(data))
    assert code == 1 and (again["done"], again["skipped"], again["failed"]) == (0, 2, 3)
    assert stream_files(data) == before  # nothing rewritten


def test_a_render_past_its_timeout_is_killed_and_recorded(corpus: Path, tmp_path: Path) -> None:
    code, report = run_json(str(corpus / "set0" / "song0001_long.mid"), str(corpus / "set0" / "song.mid"),
                            "--workers", "1", "--timeout", "0.05", "--max-renders", "1", "--data-dir", str(tmp_path))
    assert code == 1 and report["failed"] == 2
    assert all(f["reason"].startswith("timed out after 0.05 s") for f in report["failures"])
    assert not list(tmp_path.rglob("stream.json"))


def _pool_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sendlearn.plugin.batch.pool" in argv and argv[-2:-1] == [str(parent).encode()]:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def resumed(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, bytes], list[str]]:
    """The corpus through one worker, SIGKILLed once a stream is complete and another half
    written, then run again with two workers."""
    data = tmp_path_factory.mktemp("resumed")
    batch = subprocess.Popen([SENDLEARN, "render", str(corpus), "--workers", "1", "--data-dir", str(data), "--json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial: list[str] = []
    while batch.poll() is None:
        try:
            complete = list(data.rglob("stream.json"))
            partial = [str(j.parent.parent.relative_to(data)) for j in data.rglob(".work/journal")
                       if j.stat().st_size > 0 and not (j.parent.parent / "stream.json").exists()]
        except FileNotFoundError:  # a work folder removed while we walked it (its stream just completed)
            continue
        if complete and partial:
            batch.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert batch.wait() == -signal.SIGKILL, "the batch ended before a stream was caught half written"
    deadline = time.monotonic() + 30
    while _pool_children(batch.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pool_children(batch.pid) == []  # the worker died with its parent: nothing writes beside the rerun
    before = stream_files(data)
    code, report = run_json(str(corpus), "--workers", "2", "--data-dir", str(data))
    assert code == 0, report["failures"]
    return data, report, before, partial


def test_a_batch_killed_midway_finishes_on_rerun_without_redoing_or_doubling(resumed: tuple) -> None:
    data, report, before, partial = resumed
    complete_before = {k for k in before if k.endswith("stream.json")}
    assert len(complete_before) >= 1 and partial
    assert report["skipped"] == len(complete_before)
    assert report["done"] == 6 - len(complete_before) and report["failed"] == 0
    after = stream_files(data)
    assert {k: after[k] for k in before} == before  # what was complete is untouched
    assert check_complete(data) == 6  # every block exactly once, no gap, no duplicate
    half = next(s for s in report["streams"] if f"sessions/{s['session']}/{s['stream']}" == partial[0])
    assert half["resumed"] and 0 < half["blocks_written"] < half["blocks"]  # resumed, not rewritten
    assert not list(data.rglob(".work"))


def test_a_dask_cluster_writes_the_same_dataset_as_the_pool(
        corpus: Path, resumed: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, report = render_json(capsys, str(corpus), "--scheduler", cluster.scheduler_address,
                                   "--data-dir", str(tmp_path))
        # Dask cannot stop a running task: our timeout kills the render process under its worker
        late, timed = render_json(capsys, str(corpus / "set0" / "song0001_long.mid"), "--scheduler",
                                  cluster.scheduler_address, "--timeout", "0.05", "--data-dir", str(tmp_path / "late"))
        assert late == 1 and timed["failures"][0]["reason"].startswith("timed out after 0.05 s")
    assert code == 0 and report["done"] == 6
    pool_files = stream_files(resumed[0])
    dask_files = stream_files(tmp_path)
    assert sorted(dask_files) == sorted(pool_files) and len(pool_files) == 6 * 6
    assert dask_files == pool_files  # audio bytes, parquet tables, notes.mid, stream.json less its time


def test_sigterm_stops_a_batch_cleanly_and_a_rerun_finishes_it(corpus: Path, tmp_path: Path) -> None:
    batch = subprocess.Popen([SENDLEARN, "render", str(corpus / "set2"), str(corpus / "set1"), "--workers", "1",
                              "--data-dir", str(tmp_path), "--json"], stdout=subprocess.PIPE, text=True)
    while batch.poll() is None and not list(tmp_path.rglob("stream.json")):
        time.sleep(0.01)
    batch.send_signal(signal.SIGTERM)
    out, _ = batch.communicate(timeout=60)
    report = json.loads(out.splitlines()[-1])
    assert batch.returncode == 0 and report["failed"] == 0
    assert report["interrupted"] or report["done"] == 3  # (or it had finished before the signal came)
    written = len(list(tmp_path.rglob("stream.json")))  # a stream may be written before its result reached us
    assert report["done"] <= written
    code, again = run_json(str(corpus / "set2"), str(corpus / "set1"), "--workers", "1", "--data-dir", str(tmp_path))
    assert code == 0 and again["skipped"] == written and again["done"] == 3 - written
    assert check_complete(tmp_path) == 3


def test_the_pool_bounds_tasks_in_flight_recycles_processes_and_survives_failures() -> None:
    from sendlearn.plugin.batch.pool import WorkerPool

    taken: list[int] = []

    def tasks():  # consumed only as workers free up: a thousand files never sit in memory at once
        for n in range(6):
            taken.append(n)
            yield n, float(n * n)

    ends, in_flight = [], []
    with WorkerPool("math:sqrt", 2, max_tasks=2) as pool:
        for done in pool.run(tasks()):
            in_flight.append(len(taken) - len(ends))
            ends.append(done)
        started = pool.started
    assert max(in_flight) <= 2
    assert sorted(d.value for d in ends) == [float(n) for n in range(6)] and all(d.error is None for d in ends)
    assert all(sum(d.worker == pid for d in ends) <= 2 for pid in {d.worker for d in ends})  # recycled after 2
    assert started == len({d.worker for d in ends}) >= 3

    with WorkerPool("os:_exit", 1) as pool:  # a process that dies fails its task alone; the next one runs
        died = list(pool.run([("a", 3), ("b", 4)]))
    assert [(d.key, d.error) for d in died] == [("a", "worker process died (exit code 3)"),
                                                ("b", "worker process died (exit code 4)")]
    with WorkerPool("math:sqrt", 1) as pool:  # the job's own exception is the task's failure
        [bad] = pool.run([("x", -1.0)])
    assert bad.error == "ValueError: math domain error"


def test_take_ids_digest_content_not_paths(corpus: Path, tmp_path: Path) -> None:
    from sendlearn.plugin.session.instrument import bundled_instruments, faust_instrument
    from sendlearn.plugin.session.reader import session_from_midi
    from sendlearn.plugin.session.takes import take_id

    source = corpus / "set2" / "song0002.mid"
    moved = tmp_path / "elsewhere" / "song0002.mid"
    moved.parent.mkdir()
    shutil.copy(source, moved)
    dsp = tmp_path / "synth" / "poly_saw.dsp"
    dsp.parent.mkdir()
    shutil.copy(bundled_instruments()["poly_saw"], dsp)

    def take(midi: Path, instrument: object) -> str:
        session = session_from_midi(midi, instrument)
        return take_id(session, session.tracks[0], session.tracks[0].name)

    bundled = take(source, "faust:poly_saw")
    assert take(moved, faust_instrument(str(dsp))) == bundled  # same bytes elsewhere: the same take
    dsp.write_text(dsp.read_text() + "\n// changed\n")
    assert take(moved, faust_instrument(str(dsp))) != bundled  # changed instrument: another take
    assert take(source, "faust:poly_saw") == bundled


def test_two_batches_on_one_directory_write_each_block_once(corpus: Path, tmp_path: Path) -> None:
    argv = [SENDLEARN, "render", str(corpus / "set1"), "--workers", "1", "--data-dir", str(tmp_path), "--json"]
    first, second = (subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2))
    reports = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in (first, second)]
    assert first.returncode == second.returncode == 0
    assert check_complete(tmp_path) == 2
    for name in ("song", "song0004"):  # whoever came second waited for the stream's lock, then wrote nothing
        streams = [s for r in reports for s in r["streams"] if s["session"] == name]
        assert sum(s["blocks_written"] for s in streams) == streams[0]["blocks"]


def test_a_directory_holding_a_session_file_renders_its_midi_files_as_the_session(corpus: Path) -> None:
    from sendlearn.cli.batch import find_inputs

    demo = ROOT / "plugin" / "demo"  # session.toml with keys.mid, bass.mid, drums.mid beside it
    assert [(i.path.name, i.name) for i in find_inputs([demo])] == [("session.toml", None)]
    names = [i.name for i in find_inputs([corpus])]
    assert "set0_song" in names and "set1_song" in names and len(set(names)) == len(names) == 6
