"""Whatever happens to the link or the receiver, the dataset ends whole: every block exactly
once, full-quality audio bit-for-bit, and what could not be recovered recorded as a gap.
Real processes, real sockets, loopback only."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from helpers import read_stream, wait_for
from netproxy import Proxy
from receiving import free_port, start_receiver
from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Quality
from sendlearn.transport.ladder import QualityLadder
from sendlearn.transport.sender import Sender
from spool_sender import block_audio, block_midi, info

HERE = Path(__file__).parent
INFO = info("faults", "keys")


def check_exactly_once(data_dir: Path, blocks: int) -> dict:
    got = read_stream(data_dir, INFO.session, INFO.stream)
    assert got["blocks"].column("seq").to_pylist() == list(range(blocks))
    expected = np.concatenate([block_audio(INFO.stream, n) for n in range(blocks)], axis=1)
    assert got["audio"].tobytes() == expected.tobytes()
    events = got["events"].to_pydict()
    truth = [(n * INFO.block_size + o, d) for n in range(blocks) for o, d in block_midi(n)]
    assert list(zip(events["sample"], events["data"], strict=True)) == truth
    assert got["info"]["complete"] and got["info"]["gaps"] == []
    return got


def test_receiver_killed_mid_stream_and_restarted(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    receiver = start_receiver(port, data)
    sender = subprocess.Popen([sys.executable, str(HERE / "spool_sender.py"), f"ws://127.0.0.1:{port}",
                               str(tmp_path / "spool"), INFO.session, INFO.stream, "600", "0.003"], stdout=subprocess.PIPE, text=True)
    try:
        audio = data / "sessions" / INFO.session / INFO.stream / ".work" / "audio.f32"
        wait_for(lambda: audio.exists() and audio.stat().st_size > 200 * 2048, 30, "blocks on disk")
        receiver.send_signal(signal.SIGKILL)
        receiver.wait(10)
        time.sleep(0.5)  # the sender keeps producing and spooling while the receiver is gone
        receiver = start_receiver(port, data)
        out, _ = sender.communicate(timeout=120)
    finally:
        sender.kill()
        receiver.terminate()
        receiver.wait(20)
    assert sender.returncode == 0, out
    connections = int(out.split("connections=")[1])
    assert connections >= 2, out
    got = check_exactly_once(data, 600)
    assert got["info"]["duplicates_ignored"] >= 0


def test_sender_killed_and_restarted_on_its_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with ReceiverThread(tmp_path / "data", commit_interval=0.05) as receiver:
        first = subprocess.Popen([sys.executable, str(HERE / "spool_sender.py"), receiver.url, str(spool), INFO.session,
                                  INFO.stream, "500", "0.004"], stdout=subprocess.PIPE, text=True)
        audio = tmp_path / "data" / "sessions" / INFO.session / INFO.stream / ".work" / "audio.f32"
        wait_for(lambda: audio.exists() and audio.stat().st_size > 150 * 2048, 30, "blocks on disk")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(0.3)
        second = subprocess.run([sys.executable, str(HERE / "spool_sender.py"), receiver.url, str(spool), INFO.session,
                                 INFO.stream, "500"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        resumed_at = int(second.stdout.split("resuming at ")[1].split()[0])
        assert 0 < resumed_at < 500
    check_exactly_once(tmp_path / "data", 500)
    assert not list(spool.glob("segment-*.log")) or all(p.stat().st_size < 2_000_000 for p in spool.glob("*.log"))


class LivePlayer:
    """A producer at real-time pace on a live (dropping, never waiting) processor."""

    def __init__(self, info: StreamInfo, url: str, blocks: int, ladder: QualityLadder) -> None:
        self.info, self.blocks = info, blocks
        self.processor = CaptureProcessor.for_stream(info, realtime=True, capacity=4096)
        self.sender = Sender(url, info, self.processor.handoff, adaptive=True, ladder=ladder,
                             backfill_timeout=30).start()
        self.source = np.random.default_rng(7).uniform(-0.9, 0.9, (info.channels, blocks * info.block_size)
                                                       ).astype(np.float32)
        self.produced = 0
        self.thread = threading.Thread(target=self._play)

    def _play(self) -> None:
        period = self.info.block_size / self.info.sample_rate
        start = time.monotonic()
        for n in range(self.blocks):
            self.processor.process(self.source[:, n * self.info.block_size:(n + 1) * self.info.block_size],
                                   [(0, bytes((0x90, 40 + n % 40, 100)))], Playhead(playing=True))
            self.produced = n + 1
            time.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))


def test_link_faults_step_the_ladder_down_and_up_and_backfill_completes(tmp_path: Path) -> None:
    info = StreamInfo("faults", "live", 48000, 2, 480, "Live", "test")
    blocks = 900  # 9 s of audio, played in real time
    with ReceiverThread(tmp_path, commit_interval=0.05) as receiver, Proxy(int(receiver.url.rsplit(":", 1)[1])
                                                                          ) as proxy:
        ladder = QualityLadder(high=0.5, low=0.15, hold=0.5, settle=0.25)
        player = LivePlayer(info, proxy.url, blocks, ladder)
        player.thread.start()
        wait_for(lambda: player.produced > 100, 10, "a healthy start")
        assert player.sender.level is Quality.FLOAT32
        proxy.throttle(60_000)  # float32 stereo needs 384 kB/s; 16-bit FLAC fits, barely
        wait_for(lambda: player.sender.level > Quality.PCM16 or player.produced > 600, 10, "a step down")
        lowest = player.sender.level
        proxy.throttle(None)
        wait_for(lambda: player.produced > 650, 10, "more play")
        proxy.cut()  # and the link dies outright once
        proxy.stall(True)
        time.sleep(0.6)
        proxy.stall(False)
        player.thread.join(30)
        player.sender.close(timeout=60)
        assert player.processor.dropped == 0
    assert lowest > Quality.FLOAT32, ladder.steps
    assert any(level is Quality.FLOAT32 for _, level in ladder.steps[1:]), ladder.steps  # and back up
    assert player.sender.connections >= 2
    got = read_stream(tmp_path, "faults", "live")
    assert got["blocks"].column("seq").to_pylist() == list(range(blocks))
    assert got["audio"].tobytes() == player.source.tobytes()  # backfilled to the bit
    assert set(got["blocks"].column("quality").to_pylist()) == {"FLOAT32"}
    assert any(got["blocks"].column("backfilled").to_pylist())
    info_json = got["info"]
    assert info_json["quality"]["backfills"] and info_json["gaps"] == [] and info_json["complete"]
    assert got["events"].num_rows == blocks


def test_a_full_spool_keeps_midi_and_marks_lost_audio(tmp_path: Path) -> None:
    from sendlearn.transport.spool import Spool

    info = StreamInfo("faults", "tiny", 48000, 1, 128)
    with ReceiverThread(tmp_path) as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=True, capacity=1000)
        spool = Spool(None, info, max_bytes=20 * 1024)  # room for a few dozen blocks
        sender = Sender(receiver.url, info, processor.handoff, spool=spool, adaptive=True)
        for _ in range(200):  # produced before the sender starts: the spool must overflow
            processor.process(np.full((1, 128), 0.25, np.float32), [(5, b"\x90\x40\x40")])
        sender.start()
        sender.close(timeout=60)
    got = read_stream(tmp_path, "faults", "tiny")
    assert got["events"].num_rows == 200  # every event kept
    qualities = got["blocks"].column("quality").to_pylist()
    assert sender.audio_lost_spool_full > 0
    assert qualities.count("NONE") == sender.audio_lost_spool_full
    assert got["info"]["quality"]["history"][-1]["quality"] == "NONE"


def test_an_offline_sender_with_a_small_spool_waits_and_loses_nothing(tmp_path: Path) -> None:
    from sendlearn.transport.spool import Spool

    info = StreamInfo("faults", "offline", 48000, 2, 16384)
    source = np.random.default_rng(3).uniform(-1, 1, (2, 40 * 16384)).astype(np.float32)
    with ReceiverThread(tmp_path) as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=False, capacity=4)
        sender = Sender(receiver.url, info, processor.handoff, spool=Spool(None, info, max_bytes=1 << 20)).start()
        for n in range(40):  # 128 KiB blocks into a 1 MiB spool: it fills many times over
            processor.process(source[:, n * 16384:(n + 1) * 16384], [(0, b"\x90\x3c\x40")], Playhead(playing=True))
        sender.close(timeout=60)
    got = read_stream(tmp_path, "faults", "offline")
    assert sender.audio_lost_spool_full == 0
    assert set(got["blocks"].column("quality").to_pylist()) == {"FLOAT32"}
    assert got["audio"].tobytes() == source.tobytes()
