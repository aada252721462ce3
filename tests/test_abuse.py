"""The red-team findings of issue 12, each against a real ``sendlearn serve`` process over real
sockets with raw frames: each abuse gets its close code and reason, the receiver keeps answering
pings, its RSS stays bounded, and a well-behaved stream sent meanwhile lands intact.

Timeouts here are hang guards; the only bounds on time are generous ones on ping latency
(the MIDI bomb used to block the loop for 17 s)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import msgpack
import psutil
import pytest
import zstandard
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import make_block
from receiving import capture, check_dataset
from sendlearn.capture import MAX_FRAMES, Block, StreamInfo
from sendlearn.transport import ErrorCode, Hello, Protocol, Role, Welcome
from sendlearn.transport.encode import encode_frame

SR = 48000
RSS_BOUND = 400 << 20  # bytes: the findings took it to 0.7-1.4 GB
PING_BOUND = 5.0  # seconds: a hang guard on the loop's answers, generous for a loaded machine
FLAGS = ["--hello-timeout", "3", "--idle-timeout", "3", "--max-connections-per-address", "24", "--linger", "1"]


class Served:
    """``sendlearn serve`` in its own process, its peak RSS and ping latency watched."""

    def __init__(self, data_dir: Path, log: Path, *flags: str) -> None:
        self.data_dir = data_dir
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--data-dir", str(data_dir), *flags],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"(wss?://\S+),", line)
        assert match, f"serve said {line!r}"
        self.url = match[1]
        self.peak_rss = 0
        self.worst_ping = 0.0
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watching, daemon=True)
        self._watch.start()

    def _watching(self) -> None:
        process = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, process.memory_info().rss)
                with connect(self.url, compression=None, open_timeout=30) as ws:
                    started = time.monotonic()
                    ws.ping().wait(30)
                    self.worst_ping = max(self.worst_ping, time.monotonic() - started)
            except (psutil.Error, OSError, TimeoutError, ConnectionClosed):
                pass
            self._stop.wait(0.1)

    def reset(self) -> None:
        self.peak_rss, self.worst_ping = psutil.Process(self.proc.pid).memory_info().rss, 0.0

    def stop(self) -> int:
        self._stop.set()
        self._watch.join(30)
        self.proc.terminate()
        code = self.proc.wait(60)
        self.log.close()
        return code


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("abuse")
    server = Served(folder / "data", folder / "serve.log", *FLAGS)
    try:
        yield server
    finally:
        assert server.stop() == 0


@contextmanager
def good_stream(served: Served, name: str) -> Iterator[None]:
    """A well-behaved sender streaming while the abuse happens; checked intact afterwards."""
    info = StreamInfo("good", name, SR, 2, 256)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("truth", capture(info, served.url, 300)))
    served.reset()
    thread.start()
    yield
    thread.join(120)
    assert "truth" in result, "the good stream did not finish"
    from helpers import read_stream

    check_dataset(read_stream(served.data_dir, "good", name), result["truth"], info)
    assert served.worst_ping < PING_BOUND, served.worst_ping
    assert served.peak_rss < RSS_BOUND, served.peak_rss


def refused(url: str, frames: list[bytes], timeout: float = 60.0, **connect_options: object) -> tuple[int, str]:
    """Send raw frames, read until the receiver closes: its close code and reason."""
    with connect(url, compression=None, max_size=None, open_timeout=30, **connect_options) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ws.recv(deadline - time.monotonic())
        except ConnectionClosed:
            pass
        except TimeoutError:
            return -1, "still open"
        return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason


def hello_frame(stream: str, channels: int = 2, block_size: int = 256, session: str = "bad") -> bytes:
    return encode_frame(Hello(session, stream, "", SR, channels, block_size, "raw"))


def block_map(entries: list[dict], quality: int = 4, coding: str = "none", audio: bytes = b"",
              dropped: list | None = None) -> dict:
    return {"type": "block", "quality": quality, "coding": coding, "audio": audio, "backfill": False,
            "dropped": dropped or [], "blocks": entries}


def entry(seq: int = 0, frames: int = 64, start: int = 0, midi: list | None = None) -> dict:
    return {"seq": seq, "start": start, "frames": frames, "playhead": [0.0, 0.0, 120.0, 4, 4, 1, 1.0, True, False, False],
            "midi": midi or [], "params": [], "digest": 0}


def zstd_frame(body: bytes) -> bytes:
    return b"\x01" + zstandard.ZstdCompressor(level=3, write_content_size=True).compress(body)


def midi_bomb(events: int, blocks: int = 1) -> bytes:
    """One BLOCK frame of ``events`` one-byte MIDI events spread over ``blocks`` blocks, built
    as msgpack bytes by hand (a Python list of millions would cost the test, not the receiver)."""
    per_block = events // blocks
    header = b"\xdd" + per_block.to_bytes(4, "big")
    items = header + b"\x92\x00\xc4\x01\xf8" * per_block  # [0, b"\xf8"]: one MIDI clock byte
    marker = b"\xa4midi\x90"
    packed = msgpack.packb(block_map([entry(seq) for seq in range(blocks)]))
    assert packed.count(marker) == blocks
    return zstd_frame(packed.replace(marker, b"\xa4midi" + items))


# --- the findings ----------------------------------------------------------------------------

@pytest.mark.parametrize("blocks", [1, 4096])
def test_a_midi_bomb_is_refused_before_it_is_decoded(served: Served, blocks: int) -> None:
    bomb = midi_bomb(3_300_000 if blocks == 1 else 3_200_000, blocks)  # within the 16 MiB body limit
    assert len(bomb) < 64 << 10  # a few kB on the wire
    with good_stream(served, f"bomb{blocks}"):
        for _ in range(2):
            code, reason = refused(served.url, [hello_frame(f"bomb{blocks}"), bomb])
            assert code == ErrorCode.FRAME_TOO_LARGE, (code, reason)
            assert "list" in reason or "events" in reason, reason


def test_blocks_larger_than_declared_and_audio_that_decodes_too_large_are_refused(served: Served) -> None:
    with good_stream(served, "amplify"):
        code, reason = refused(served.url, [hello_frame("tiny", block_size=1),
                                            msgpack_frame(block_map([entry(frames=MAX_FRAMES)]))])
        assert code == ErrorCode.INVALID_BLOCK and "over 4096" in reason, (code, reason)
        # 64 channels x 2^20 frames of FLAC would decode to 256 MiB: refused before the codec runs
        frame = zstd_frame(msgpack.packb(block_map([entry(frames=MAX_FRAMES)], 3, "flac", b"fLaC" + bytes(1900))))
        for _ in range(3):
            code, reason = refused(served.url, [hello_frame("wide", channels=64, block_size=MAX_FRAMES), frame])
            assert code == ErrorCode.FRAME_TOO_LARGE and "decodes to 268435456 bytes" in reason, (code, reason)


def msgpack_frame(message: dict) -> bytes:
    return b"\x00" + msgpack.packb(message)


def block(stream: str, seq: int, frames: int = 64, start: int | None = None) -> Block:
    made = make_block(seq, frames=frames, start=start)
    return Block("bad", stream, seq, made.start_sample, frames, SR, 2, made.playhead, made.midi, made.params,
                 made.audio)


def real_block_frame(stream: str, blocks: list, block_size: int = 64, **kw: object) -> list[bytes]:
    protocol = Protocol(Role.SENDER)
    protocol.send(Hello("bad", stream, "", SR, 2, block_size, "raw"))
    frames = protocol.data_to_send()
    from sendlearn.transport import State

    protocol.state = State.STREAMING
    protocol.send_blocks(blocks, **kw)
    return frames + protocol.data_to_send()


def test_samples_far_ahead_of_the_stream_are_refused_and_no_large_file_appears(served: Served) -> None:
    far = block("sparse", 1000, start=65_601_280)
    with good_stream(served, "sparse"):
        code, reason = refused(served.url, real_block_frame("sparse", [block("sparse", 0), far]))
        assert code == ErrorCode.INVALID_BLOCK and "beyond sample" in reason, (code, reason)
        code, reason = refused(served.url, real_block_frame("sparse2", [block("sparse2", 10_000)]))
        assert code == ErrorCode.INVALID_BLOCK and "seqs past" in reason, (code, reason)
    largest = max(p.stat().st_size for p in served.data_dir.rglob("*") if p.is_file())
    assert largest < 8 << 20


def test_many_dropped_ranges_are_refused_and_merging_them_is_not_quadratic(served: Served, tmp_path: Path) -> None:
    ranges = [[2 * i + 1, 2 * i + 1] for i in range(16000)]
    frame = msgpack_frame(block_map([entry(seq=40000)], dropped=ranges))
    assert len(frame) < 128 << 10
    with good_stream(served, "dropped"):
        code, reason = refused(served.url, [hello_frame("dropped"), frame])
        assert code == ErrorCode.FRAME_TOO_LARGE and "16000 ranges" in reason, (code, reason)
    # within the limit, the ranges are merged one by one, and replayed from the journal alike
    from sendlearn.store.writer import StreamWriter

    info = StreamInfo("s", "d", SR, 2, 64)
    writer = StreamWriter(tmp_path, info)
    for i in range(20000):
        writer._declare_dropped(2 * i + 1, 2 * i + 1)
    writer._declare_dropped(0, 0)
    assert writer.through == 1 and len(writer._dropped) == 20000
    writer._declare_dropped(2, 40000)
    assert writer._dropped == [(0, 40000)] and writer.through == 40000


def test_a_silent_connection_after_hello_is_closed_even_while_it_answers_pings(served: Served) -> None:
    with good_stream(served, "squat"):
        # the squatter claims the real stream's ids with another channel count, then says nothing
        code, reason = refused(served.url, [hello_frame("squatted", channels=1, session="good")],
                               ping_interval=0.2, ping_timeout=30)
        assert code == ErrorCode.TIMEOUT and "no message for 3 s" in reason, (code, reason)
        code, reason = refused(served.url, [])
        assert code == ErrorCode.TIMEOUT and "no HELLO within 3 s" in reason, (code, reason)
        # the real sender of the stream is not refused for the squatter's channel count
        with connect(served.url, compression=None) as ws:
            ws.send(hello_frame("squatted", channels=2, session="good"))
            protocol = Protocol(Role.SENDER)
            protocol.send(Hello("good", "squatted", "", SR, 2, 256, "raw"))
            protocol.data_to_send()
            protocol.receive_data(ws.recv(30))
            assert isinstance(protocol.events_received()[0], Welcome)


def test_hellos_alone_leave_no_files(served: Served) -> None:
    before = {p for p in served.data_dir.rglob("*")}
    for i in range(40):
        with connect(served.url, compression=None) as ws:
            ws.send(hello_frame(f"ghost{i}", session="ghosts"))
            ws.recv(30)  # WELCOME
    # each connection's release (its lock file too) runs after it closes: wait for the last one
    deadline = time.monotonic() + 30
    while {p for p in served.data_dir.rglob("*")} - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {p for p in served.data_dir.rglob("*")} - before == set()


def test_connections_are_capped_and_big_frames_before_hello_are_refused(tmp_path: Path) -> None:
    server = Served(tmp_path / "data", tmp_path / "serve.log", "--max-connections-per-address", "6")
    try:
        with ExitStack() as held:
            for _ in range(6):  # the watcher's ping connection may hold one more
                held.enter_context(connect(server.url, compression=None, open_timeout=30))
            code, reason = refused(server.url, [])
            assert code == ErrorCode.BUSY and "the limit per address" in reason, (code, reason)
        info = StreamInfo("good", "crowd", SR, 2, 256)  # room again once they are gone
        truth = capture(info, server.url, 100)
        # 15 MiB before HELLO: the websocket layer refuses it by its header (1009), nothing is held
        server.reset()
        for _ in range(8):
            code, _ = refused(server.url, [b"\x00" * (15 << 20)])
            assert code == 1009
        assert server.peak_rss < RSS_BOUND
    finally:
        assert server.stop() == 0
    from helpers import read_stream

    check_dataset(read_stream(tmp_path / "data", "good", "crowd"), truth, info)


def test_sigint_drains_finalises_and_exits_0(tmp_path: Path) -> None:
    server = Served(tmp_path / "data", tmp_path / "serve.log", "--linger", "60")
    sent = [block("cut", seq) for seq in range(10)]
    with connect(server.url, compression=None) as ws:
        for frame in real_block_frame("cut", sent):
            ws.send(frame)
        ws.recv(30)  # WELCOME
        deadline = time.monotonic() + 30
        while not (tmp_path / "data/sessions/bad/cut/.work/journal").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        server._stop.set()
        server.proc.send_signal(2)
        assert server.proc.wait(60) == 0
    server.log.close()
    from helpers import read_stream

    got = read_stream(tmp_path / "data", "bad", "cut")  # the lingering stream was finalised on the way out
    assert got["blocks"].column("seq").to_pylist() == list(range(10))
    assert got["info"]["ended"] == "receiver stopped"
    logged = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    assert any(e.get("session") == "bad" and e.get("stream") == "cut" for e in logged)  # one JSON object a line
    assert any(e.get("signal") == "SIGINT" for e in logged)


def test_abandoned_work_folders_expire_and_their_streams_keep_their_files(tmp_path: Path) -> None:
    from helpers import read_stream
    from sendlearn.server.receiver import ReceiverThread
    from sendlearn.server.settings import Service

    folder = tmp_path / "sessions/bad/left/.work"
    with ReceiverThread(tmp_path, linger=0, commit_interval=0.05, service=Service(work_expiry=3600)) as receiver:
        with connect(receiver.url, compression=None) as ws:
            for frame in real_block_frame("left", [block("left", seq) for seq in range(5)]):
                ws.send(frame)
            ws.recv(30)  # WELCOME
            ws.recv(30)  # the ACK: the five blocks are stored and synced
    assert folder.exists()  # cut without BYE: kept for a resume
    with ReceiverThread(tmp_path, service=Service(work_expiry=0.5)):
        deadline = time.monotonic() + 60
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not folder.exists()
    got = read_stream(tmp_path, "bad", "left")
    assert got["blocks"].column("seq").to_pylist() == list(range(5)) and not got["info"]["complete"]
