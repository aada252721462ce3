"""Disks that refuse (issue 11): full, immutable, read-only, failing fsync. The receiver closes
with STORAGE and a reason, acknowledges nothing unsynced, releases the stream; the sender says
why once and resumes by itself when the disk can write. Real mounts, made here as root."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from disks import fill, immutable, remount, tmpfs
from helpers import make_audio, read_stream, wait_for
from midi_files import write_tune
from receiving import RawClient, blocks, closed, hello, joined
from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import ErrorCode, Welcome
from sendlearn.transport.sender import Sender

SR = 48000
INFO = StreamInfo("sess", "keys", SR, 2, 512, "Keys", "test")


def stream_through(url: str, n: int, on_the_way: callable) -> tuple[Sender, np.ndarray]:
    """A real sender, ``n`` blocks; ``on_the_way()`` runs once they are all handed over."""
    processor = CaptureProcessor.for_stream(INFO, realtime=False)
    sender = Sender(url, INFO, processor.handoff, give_up_after=120).start()
    audio = make_audio(2, n * 512, 3)
    for i in range(n):
        processor.process(audio[:, i * 512:(i + 1) * 512], [(i % 512, b"\x90\x3c\x64")],
                          Playhead(seconds=i * 512 / SR, playing=True))
    on_the_way()
    sender.close(timeout=180)
    return sender, audio


def check_whole(data_dir: Path, audio: np.ndarray, n: int) -> None:
    got = read_stream(data_dir, "sess", "keys")
    assert got["blocks"].column("seq").to_pylist() == list(range(n))
    assert got["events"].column("sample").to_pylist() == [i * 512 + i % 512 for i in range(n)]
    assert got["info"]["complete"] and got["info"]["gaps"] == []
    assert got["audio"].tobytes() == audio.tobytes()


class Told:
    """What the sender printed to stderr so far (capsys, read as the test goes)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.err = capsys, ""

    def storage(self) -> bool:
        self.err += self.capsys.readouterr().err
        return "STORAGE" in self.err


def said_once(err: str, words: str) -> None:
    lines = [line for line in err.splitlines() if "STORAGE" in line]
    assert lines and any(words in line for line in lines), err
    assert len(lines) == len(set(lines)), err  # each reason once


def test_a_full_disk_mid_stream_closes_with_storage_and_the_sender_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 400  # 1.6 MB of audio into a 1 MB disk
    told = Told(capsys)
    with tmpfs(tmp_path / "disk", "1m") as disk, ReceiverThread(disk, commit_interval=0.05) as receiver:
        def make_room() -> None:
            wait_for(told.storage, 60, "word from the sender about the receiver's disk")
            remount(disk, "size=32m")

        sender, audio = stream_through(receiver.url, n, make_room)
        assert sender.connections >= 2
        assert receiver.receiver.storage_failures >= 1 and receiver.receiver.storage_error is None  # healthy again
        check_whole(disk, audio, n)
    told.storage()
    said_once(told.err, "No space left on device")


def test_a_read_only_disk_closes_with_storage_and_the_stream_is_released(tmp_path: Path) -> None:
    sent = blocks(20)
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "--bind", str(data), str(data)], check=True)
    try:
        with ReceiverThread(data, commit_interval=0.05) as receiver:
            client = RawClient(receiver.url, hello())
            client.send(sent[:10])
            client.read_until_ack(9)
            client.ws.close()
        # the receiver stopped: every file closed (a read-only remount needs that)
        remount(data, "bind,ro")
        with ReceiverThread(data, commit_interval=0.05) as receiver:
            refused = RawClient(receiver.url, hello())
            assert not isinstance(refused.welcome, Welcome)
            code, reason = closed(refused)
            assert code == ErrorCode.STORAGE and "Read-only file system" in reason, (code, reason)
            remount(data, "bind,rw")
            again = RawClient(receiver.url, hello())  # released: not STREAM_BUSY
            assert again.welcome.durable_through == 9
            again.send(sent[10:])
            again.bye(19)
            assert closed(again)[0] == 1000
        got = read_stream(data, "sess", "keys")
        assert got["audio"].tobytes() == joined(sent).tobytes() and got["info"]["complete"]
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_an_immutable_file_closes_with_storage_and_the_stream_resumes(tmp_path: Path) -> None:
    sent = blocks(20)
    folder = tmp_path / "sessions/sess/keys"
    with tmpfs(tmp_path, "16m"):
        with ReceiverThread(tmp_path, commit_interval=0.05) as receiver:
            client = RawClient(receiver.url, hello())
            client.send(sent[:10])
            client.read_until_ack(9)
            client.ws.close()
        with immutable(folder / ".work/journal"):
            receiver = ReceiverThread(tmp_path, commit_interval=0.05).start()
            refused = RawClient(receiver.url, hello())
            code, reason = closed(refused)
            assert code == ErrorCode.STORAGE and "Operation not permitted" in reason, (code, reason)
        again = RawClient(receiver.url, hello())
        assert again.welcome.durable_through == 9
        again.send(sent[10:])
        again.bye(19)
        assert closed(again)[0] == 1000
        receiver.stop()
        got = read_stream(tmp_path, "sess", "keys")
    assert got["audio"].tobytes() == joined(sent).tobytes() and got["info"]["complete"]


@contextmanager
def ext4_on_a_small_backing(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An ext4 (no journal) on a loop device whose backing file lives on a 3 MB tmpfs: writes
    go to the page cache and succeed; write-back fails once the backing is full, so fsync
    reports an error — the real thing, from the kernel. Yields (mount point, backing tmpfs)."""
    backing, mount = tmp_path / "backing", tmp_path / "ext4"
    mount.mkdir()
    with tmpfs(backing, "3m"):
        image = backing / "disk.img"
        subprocess.run(["truncate", "-s", "256M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-O", "^has_journal", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop,errors=continue", str(image), str(mount)], check=True)
        try:
            yield mount, backing
        finally:
            subprocess.run(["umount", str(mount)], check=False)


def test_a_failed_fsync_is_never_followed_by_an_ack_of_what_it_covered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 1500  # 6 MB of audio: write-back into 3 MB fails
    told = Told(capsys)
    with ext4_on_a_small_backing(tmp_path) as (mount, backing):
        with ReceiverThread(mount, commit_interval=0.05) as receiver:
            def make_room() -> None:
                wait_for(told.storage, 60, "word from the sender about the receiver's disk")
                remount(backing, "size=512m")

            sender, audio = stream_through(receiver.url, n, make_room)
        # read what is on the disk, not what the page cache remembers
        subprocess.run(["umount", str(mount)], check=True)
        subprocess.run(["mount", "-o", "loop", str(backing / "disk.img"), str(mount)], check=True)
        check_whole(mount, audio, n)
    told.storage()
    said_once(told.err, "syncing")


def test_a_new_user_renders_into_a_full_receiver_and_it_finishes_once_there_is_room(tmp_path: Path) -> None:
    """``sendlearn render --server`` into a ``sendlearn serve`` on a full disk: the render says
    why it waits, finishes once space is freed, and the dataset is the one a direct render makes."""
    import sys
    import threading

    from sendlearn.cli.main import main

    tune = write_tune(tmp_path / "tune.mid", [(0, 60, 100), (480, 64, 90), (960, 67, 80), (1920, 72, 110)])
    with tmpfs(tmp_path / "disk", "8m") as disk:
        serve = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--data-dir",
                                  str(disk / "data")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = serve.stdout.readline().split("listening on ")[1].split(",")[0]
            filler = fill(disk)
            render = subprocess.Popen([sys.executable, "-m", "sendlearn", "render", str(tune), "--server", url],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            told: list[str] = []
            reader = threading.Thread(target=lambda: told.extend(render.stderr), daemon=True)
            reader.start()
            wait_for(lambda: any("STORAGE" in line for line in told) or render.poll() is not None, 300,
                     "the render saying why it waits")
            assert render.poll() is None, (render.returncode, told)
            filler.unlink()
            out, _ = render.communicate(timeout=300)
            reader.join(10)
            assert render.returncode == 0, (out, told)
            storage = [line for line in told if "STORAGE" in line]
            assert "No space left on device" in storage[0] and len(storage) == len(set(storage)), told
            served = read_stream(disk / "data", "tune", "tune")
        finally:
            serve.terminate()
            serve.wait(30)
    assert main(["render", str(tune), "--data-dir", str(tmp_path / "direct")]) == 0
    direct = read_stream(tmp_path / "direct", "tune", "tune")
    assert served["audio"].tobytes() == direct["audio"].tobytes() and served["audio"].any()
    for table in ("events", "blocks", "params"):
        assert served[table].equals(direct[table]), table
    for key in ("blocks", "events", "gaps", "complete", "take", "audio"):
        assert served["info"][key] == direct["info"][key], key


def test_files_that_cannot_be_written_after_bye_are_written_when_the_sender_says_bye_again(tmp_path: Path) -> None:
    sent = blocks(20)
    folder = tmp_path / "sessions/sess/keys"
    with tmpfs(tmp_path, "16m"), ReceiverThread(tmp_path, commit_interval=0.05) as receiver:
        client = RawClient(receiver.url, hello())
        client.send(sent)
        client.read_until_ack(19)
        with immutable(folder):  # .work/ still writes; the public files not
            client.bye(19)
            client.read_until_ack(19)  # the BYE is durable, so it is acknowledged
            code, reason = closed(client)
            assert code == ErrorCode.STORAGE and "Operation not permitted" in reason, (code, reason)
        again = RawClient(receiver.url, hello())  # released, and everything is durable
        assert again.welcome.durable_through == 19
        again.bye(19)
        assert closed(again)[0] == 1000
        got = read_stream(tmp_path, "sess", "keys")
        assert got["audio"].tobytes() == joined(sent).tobytes() and got["info"]["complete"]
        assert not (folder / ".work").exists()


def test_a_stream_left_with_a_bye_and_no_files_is_finished_by_the_next_receiver(tmp_path: Path) -> None:
    sent = blocks(20)
    folder = tmp_path / "sessions/sess/keys"
    with tmpfs(tmp_path, "16m"):
        with ReceiverThread(tmp_path, commit_interval=0.05) as receiver:
            client = RawClient(receiver.url, hello())
            client.send(sent)
            client.read_until_ack(19)
            with immutable(folder):
                client.bye(19)
                client.read_until_ack(19)
                assert closed(client)[0] == ErrorCode.STORAGE
        # ... and the sender never came back to say BYE again
        assert not (folder / "stream.json").exists()
        with ReceiverThread(tmp_path, commit_interval=0.05) as receiver:
            wait_for(lambda: receiver.receiver.streams_finalised == 1, 60, "the left-over stream finished")
        got = read_stream(tmp_path, "sess", "keys")
        assert got["audio"].tobytes() == joined(sent).tobytes()
        assert got["info"]["complete"] and got["info"]["ended"] == "bye" and not (folder / ".work").exists()
