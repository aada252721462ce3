"""The store's own journal format and its one lock scheme (store/record.py, store/locks.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import make_audio
from midi_files import write_tune
from sendlearn.capture import Block, Playhead, StreamInfo
from sendlearn.cli.main import main
from sendlearn.files.records import Journal, read_records
from sendlearn.store.errors import OldJournal
from sendlearn.store.locks import StreamLocks
from sendlearn.store.status import open_stream_summaries
from sendlearn.store.writer import StreamWriter
from sendlearn.transport import BlockEntry
from sendlearn.transport.encode import entry_to_wire

INFO = StreamInfo("sess", "keys", 48000, 2, 256)


def _blocks(n: int) -> list[Block]:
    return [Block("sess", "keys", seq, seq * 256, 256, 48000, 2, Playhead(seconds=seq * 256 / 48000, playing=True),
                  (), (), make_audio(2, 256, seed=seq)) for seq in range(n)]


def _old_work_folder(data_dir: Path, blocks: list[Block]) -> Path:
    """A work folder as sendlearn 0.1 left it: block records holding the wire map, no version."""
    writer = StreamWriter(data_dir, INFO)
    writer.add(blocks[:1])
    writer.close()  # info.json and audio.f32 as they were; only the journal's records differ
    journal_path = writer.work / "journal"
    journal_path.unlink()
    journal = Journal(journal_path)
    for block in blocks:
        journal.append({"k": "block", "quality": 0, "backfill": False, "at": 1.0,
                        "entry": entry_to_wire(BlockEntry.of(block))})
    journal.sync()
    journal.close()
    return writer.work


def test_an_old_format_work_folder_is_refused_by_name_and_left_as_it_is(tmp_path: Path) -> None:
    work = _old_work_folder(tmp_path, _blocks(8))
    before = (work / "journal").read_bytes()
    with pytest.raises(OldJournal) as refused:
        StreamWriter(tmp_path, INFO)
    assert "journal format 0" in str(refused.value) and "sendlearn 0.1" in str(refused.value)
    assert str(work) in str(refused.value)
    assert (work / "journal").read_bytes() == before  # nothing dropped, nothing cut
    (summary,) = open_stream_summaries(tmp_path, set())  # status still shows what it holds
    assert summary["blocks"] == 8


def test_a_render_onto_an_old_work_folder_fails_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tune = write_tune(tmp_path / "tune.mid", [(0, 60, 100), (480, 64, 90)])
    old = StreamInfo("tune", "tune", 48000, 2, 512)
    work = tmp_path / "data/sessions/tune/tune/.work"
    work.mkdir(parents=True)
    journal = Journal(work / "journal")
    journal.append({"k": "block", "quality": 0, "backfill": False, "at": 1.0, "entry": {"seq": 0}})
    journal.sync()
    journal.close()
    (work / "info.json").write_text(json.dumps({"session": old.session, "stream": old.stream, "track": "tune",
                                                "sample_rate": 48000, "channels": 2, "block_size": 512,
                                                "host": "dawdreamer", "meta": {}, "take": None}))
    assert main(["render", str(tune), "--data-dir", str(tmp_path / "data"), "--json"]) != 0
    told = capsys.readouterr()
    assert "journal format 0" in told.out + told.err
    assert len(read_records(work / "journal")[0]) == 1  # still there, for sendlearn 0.1 to finish


def test_the_journal_record_is_the_stores_own(tmp_path: Path) -> None:
    writer = StreamWriter(tmp_path, INFO)
    writer.add(_blocks(3))
    writer.close()
    records, _ = read_records(writer.work / "journal")
    blocks = [r for r in records if r["k"] == "block"]
    assert [r["v"] for r in blocks] == [1, 1, 1] and all("entry" not in r for r in blocks)
    assert StreamWriter(tmp_path, INFO).through == 2  # read back by the store's own decoder


HOLD = """
import sys, time
from pathlib import Path
from sendlearn.store.locks import StreamLocks
assert StreamLocks(Path(sys.argv[1])).acquire(("sess", "keys"))
print("held", flush=True)
time.sleep(600)
"""


def test_a_stream_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        locks = StreamLocks(tmp_path)
        assert not locks.acquire(("sess", "keys"))
        assert locks.acquire(("sess", "other"))
        lock_file = tmp_path / ".locks/sess+keys.lock"
        assert lock_file.stat().st_mode & 0o777 == 0o600 and (tmp_path / ".locks").stat().st_mode & 0o777 == 0o700
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert locks.acquire(("sess", "keys"))  # the kernel dropped the dead holder's flock
    locks.release(("sess", "keys"))
    locks.release(("sess", "other"))
    assert not list((tmp_path / ".locks").iterdir())  # a holder that lets go leaves no file


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / ".locks").mkdir()
    target = tmp_path / "elsewhere"
    os.symlink(target, tmp_path / ".locks/sess+keys.lock")
    with pytest.raises(Exception, match="lock file"):
        StreamLocks(tmp_path).acquire(("sess", "keys"))
    assert not target.exists()


def test_two_renders_of_one_stream_never_both_write_it(tmp_path: Path) -> None:
    tune = write_tune(tmp_path / "tune.mid", [(480 * i, 60 + i % 12, 100) for i in range(32)])
    command = [sys.executable, "-m", "sendlearn", "render", str(tune), "--data-dir", str(tmp_path / "data"), "--json"]
    renders = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for _ in range(2)]
    reports = [json.loads(r.communicate(timeout=300)[0].splitlines()[-1]) for r in renders]
    assert all(r["ok"] for r in reports)
    written = sorted(r["streams"][0]["blocks_written"] for r in reports)
    assert written[0] == 0 and written[1] == reports[0]["streams"][0]["blocks"]  # one wrote it all, one found it done


CRASHING_WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from helpers import make_audio
from sendlearn.capture import Block, Playhead, StreamInfo
from sendlearn.store.writer import StreamWriter
writer = StreamWriter(Path(sys.argv[1]), StreamInfo("sess", "keys", 48000, 2, 256))
audio = [make_audio(2, 256, seed=k) for k in range(64)]  # block s holds audio[s % 64]
seq = writer.through + 1
print("ready", flush=True)
while True:  # large adds, until killed: the journal flushes to its file in the middle of each
    writer.add([Block("sess", "keys", s, s * 256, 256, 48000, 2, Playhead(seconds=s * 256 / 48000), (), (),
                      audio[s % 64]) for s in range(seq, seq + 1024)])
    writer.commit()
    seq += 1024
"""


def test_a_writer_killed_anywhere_resumes_over_audio_it_really_wrote(tmp_path: Path) -> None:
    """SIGKILL at 8 random moments of a writer adding blocks; after each, every block the folder
    says it holds has its own samples in the work audio (a journal record never gets to the file
    before its block's audio)."""
    rng = np.random.default_rng(7)
    for _ in range(8):
        writer = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(tmp_path), str(Path(__file__).parent)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(float(rng.uniform(0.05, 0.3)))
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        resumed = StreamWriter(tmp_path, INFO)
        stored = [seq for seq in range(resumed.max_seq + 1) if resumed._stored(seq)]
        assert stored == list(range(resumed.through + 1))  # one writer, in order: no holes
        samples = np.frombuffer((resumed.work / "audio.f32").read_bytes(), dtype="<f4")
        for seq in stored:
            got = samples[seq * 512:(seq + 1) * 512]
            assert got.tobytes() == make_audio(2, 256, seed=seq % 64).T.tobytes(), f"block {seq}: audio not written"
        resumed.close()
    assert resumed.through > 0
