"""One sink, two implementations (capture/sink.py): the store (--data-dir) and the link (--server)
write the same dataset, and a capture that fails partway never leaves a complete stream in either."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import read_stream
from midi_files import write_tune
from receiving import free_port, start_receiver
from sendlearn.capture.sink import Sink
from sendlearn.cli.demo import demo_session_path
from sendlearn.cli.main import main
from sendlearn.plugin.offline.send import capture_session
from sendlearn.plugin.session.inputs import load_input
from sendlearn.store.sink import StoreSink
from sendlearn.transport.link import LinkSink

VARIABLE = {"sender", "finalised_at"}  # what the writer is, and when: everything else must match


@contextmanager
def serve(data_dir: Path) -> Iterator[str]:
    """A real ``sendlearn serve`` in its own process; stopped (SIGTERM) when done."""
    port = free_port()
    process = start_receiver(port, data_dir)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(60)


def dataset_files(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes()
            for p in sorted((data_dir / "sessions").rglob("*")) if p.is_file()}


def without_variable(files: dict[str, bytes]) -> dict[str, object]:
    """The files, each stream.json parsed and without who wrote it and when."""
    return {name: ({k: v for k, v in json.loads(data).items() if k not in VARIABLE}
                   if name.endswith("stream.json") else data) for name, data in files.items()}


def test_the_store_and_a_real_receiver_write_the_same_dataset(tmp_path: Path) -> None:
    """The demo session (tracks, a pedalboard chain, a recording, automation) rendered straight
    into a data dir and through ``sendlearn serve``: identical file by file, but for who wrote
    stream.json and when."""
    demo = str(demo_session_path())
    assert main(["render", demo, "--data-dir", str(tmp_path / "store")]) == 0
    with serve(tmp_path / "served") as url:
        assert main(["render", demo, "--server", url]) == 0
    stored, served = dataset_files(tmp_path / "store"), dataset_files(tmp_path / "served")
    assert sorted(stored) == sorted(served) and len(stored) >= 5 * 6  # five streams, six files each
    for name, data in stored.items():
        if name.endswith("stream.json"):
            mine, theirs = json.loads(data), json.loads(served[name])
            assert mine["sender"] == {"written_by": "sendlearn render (store)"}, name
            assert {k: v for k, v in mine.items() if k not in VARIABLE} == \
                {k: v for k, v in theirs.items() if k not in VARIABLE}, name
            assert mine["complete"] and mine["params"] >= 0
        else:
            assert data == served[name], name  # audio, parquet and notes.mid byte for byte


class Interrupted(Exception):
    """Not a capture error: the render itself raises, as a crash of the host would."""


def _interrupting(after_frames: int, error: type[Exception]):
    def progress(stream: str, done: int, frames: int) -> None:
        if done >= after_frames:
            raise error(f"stopped {stream} at frame {done} of {frames}")
    return progress


@pytest.fixture(scope="module")
def tune(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "tune.mid"
    return write_tune(path, [(480 * i, 60 + i % 12, 100) for i in range(64)])  # 16 s at 120 bpm


def _capture(tune: Path, sink: Sink, progress=None):
    loaded = load_input(tune)
    return capture_session(loaded.session, sink, progress=progress, timelines=loaded.timelines)


@pytest.mark.parametrize("error", [RuntimeError, Interrupted], ids=["track fails", "render raises"])
def test_a_capture_that_fails_partway_is_never_complete_in_the_store_and_resumes(
        tmp_path: Path, tune: Path, error: type[Exception]) -> None:
    data = tmp_path / "data"
    if error is Interrupted:
        with pytest.raises(Interrupted):
            _capture(tune, StoreSink(data), _interrupting(48000 * 8, error))
    else:
        (outcome,) = _capture(tune, StoreSink(data), _interrupting(48000 * 8, error))
        assert not outcome.ok and "stopped tune" in outcome.reason
    folder = data / "sessions/tune/tune"
    assert not (folder / "stream.json").exists() and (folder / ".work/journal").stat().st_size > 0
    (resumed,) = _capture(tune, StoreSink(data))
    assert resumed.ok and resumed.extra["resumed"] and 0 < resumed.extra["blocks_written"] < resumed.blocks
    (clean,) = _capture(tune, StoreSink(tmp_path / "clean"))
    assert clean.ok and not clean.extra["resumed"]
    assert without_variable(dataset_files(data)) == without_variable(dataset_files(tmp_path / "clean"))
    (again,) = _capture(tune, StoreSink(data))  # complete under the same take: nothing written
    assert again.ok and again.extra["blocks_written"] == 0


@pytest.mark.parametrize("error", [RuntimeError, Interrupted], ids=["track fails", "render raises"])
def test_a_capture_that_fails_partway_says_no_bye_to_a_real_receiver(tmp_path: Path, tune: Path,
                                                                      error: type[Exception]) -> None:
    with serve(tmp_path / "served") as url:
        try:
            outcomes = _capture(tune, LinkSink(url), _interrupting(48000 * 8, error))
            assert error is RuntimeError and not outcomes[0].ok
        except Interrupted:
            assert error is Interrupted
    # the receiver stopped with the stream open: finalised as it ended, incomplete. On a loaded
    # machine the abort can come before the sender's first frame left (a HELLO alone leaves
    # nothing on disk); what must never be is a complete stream.
    summary = tmp_path / "served/sessions/tune/tune/stream.json"
    if summary.exists():
        partial = json.loads(summary.read_text())
        assert not partial["complete"] and partial["ended"] != "bye" and partial["blocks"] > 0
    with serve(tmp_path / "served") as url:  # a rerun of the same take resumes it
        (outcome,) = _capture(tune, LinkSink(url))
        assert outcome.ok
    _capture(tune, StoreSink(tmp_path / "clean"))
    served, clean = read_stream(tmp_path / "served", "tune", "tune"), read_stream(tmp_path / "clean", "tune", "tune")
    assert served["info"]["complete"] and served["audio"].tobytes() == clean["audio"].tobytes()
    for table in ("events", "blocks", "params"):
        assert served[table].equals(clean[table]), table


def test_a_render_into_a_disk_that_fills_stops_names_why_and_resumes_once_there_is_room(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The store writes on the render's own thread and fsyncs beside it: a write the disk
    refuses stops the render there (exit 1, the reason in its report), no stream is marked
    complete, and once the disk has room the same command resumes the take after its last
    fsync into the dataset a clean render writes. A real tmpfs, 12 MiB for 38 MiB of audio:
    one fsync (every 2048 blocks, 8 MiB) lands before the disk is full. With room for the work
    files but not the audio file, finalise says the disk is full (libsndfile says "System error.")."""
    from disks import tmpfs

    song = write_tune(tmp_path / "long.mid", [(480 * i, 48 + i % 24, 90) for i in range(200)])  # 100 s
    with tmpfs(tmp_path / "disk", "12m") as disk:
        assert main(["render", str(song), "--data-dir", str(disk / "data"), "--json"]) == 1
        (failed,) = json.loads(capsys.readouterr().out)["streams"]
        assert not failed["ok"] and "No space left on device" in failed["reason"], failed
        folder = disk / "data/sessions/long/long"
        assert not (folder / "stream.json").exists() and (folder / ".work/journal").stat().st_size > 0
        # room for the work files, not for the audio file beside them: finalise says so
        subprocess.run(["mount", "-o", "remount,size=60m", str(disk)], check=True)
        assert main(["render", str(song), "--data-dir", str(disk / "data"), "--json"]) == 1
        (short,) = json.loads(capsys.readouterr().out)["streams"]
        assert not short["ok"] and "No space left on device" in short["reason"], short  # which file met the
        assert "System error" not in short["reason"], short  # full disk first: the tables are written beside it
        assert short["resumed"] and 0 < short["blocks_written"] < short["blocks"], short  # after the last fsync
        assert not (folder / "stream.json").exists()
        subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)
        assert main(["render", str(song), "--data-dir", str(disk / "data"), "--json"]) == 0
        (done,) = json.loads(capsys.readouterr().out)["streams"]
        assert done["ok"] and done["resumed"] and done["blocks_written"] == 0, done  # every block was on disk
        _capture(song, StoreSink(tmp_path / "clean"))
        assert without_variable(dataset_files(disk / "data")) == without_variable(dataset_files(tmp_path / "clean"))
