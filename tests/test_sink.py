"""One sink, two implementations (capture/sink.py): the store (--data-dir) and the link (--server)
write the same dataset, and a capture that fails partway never leaves a complete stream in either."""

from __future__ import annotations

import json
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
