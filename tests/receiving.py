"""Talking to a receiver from tests, over real sockets.

- ``capture``: a real processor and sender stream varied blocks into a receiver; it returns what
  went in, and ``check_dataset`` compares that with what the receiver wrote.
- ``RawClient``: a sender speaking the protocol by hand, with ``hello``, ``blocks`` and ``joined``
  for its streams; ``refusal`` and ``closed``: how the receiver ended a connection.
- ``free_port`` and ``start_receiver``: ``sendlearn serve`` in a process of its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import make_block
from sendlearn.capture import Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.transport import Ack, Bye, Hello, Protocol, Quality, Role
from sendlearn.transport.sender import Sender

SR = 48000
MESSAGES = [b"\x90\x3c\x64", b"\x80\x3c\x00", b"\xb0\x40\x7f", b"\xe0\x00\x50", b"\xd0\x30", b"\xa0\x3c\x22",
            b"\xc0\x05", b"\xf0\x7e\x7f\x09\x01\xf7", b"\x91\x24\x01"]


# --- a real sender's stream and its check ----------------------------------------------------

def ppq_at(sample: int, change: int | None) -> float:
    """Quarter notes at ``sample``: 90 bpm, then 150 bpm from sample ``change`` on."""
    if change is None or sample <= change:
        return sample / SR * 90 / 60
    return change / SR * 90 / 60 + (sample - change) / SR * 150 / 60


def playhead_for(sample: int, bpm: float, change: int | None = None) -> Playhead:
    ppq = ppq_at(sample, change)
    return Playhead(seconds=sample / SR, ppq=ppq, bpm=bpm, ts_num=3, ts_den=4, bar=int(ppq // 3) + 1,
                    beat=ppq % 3 + 1.0, playing=True)


def capture(info: StreamInfo, url: str, n_blocks: int, seed: int = 0, quality: Quality = Quality.FLOAT32,
            tempo_change_at: int | None = None, **sender_options: object) -> dict:
    """Run a processor + sender over ``n_blocks`` varied blocks; return what went in."""
    processor = CaptureProcessor.for_stream(info, realtime=False)
    sender = Sender(url, info, processor.handoff, quality=quality, **sender_options).start()
    rng = np.random.default_rng(seed)
    source = rng.uniform(-1, 1, (info.channels, n_blocks * info.block_size)).astype(np.float32)
    truth: dict = {"audio": source, "events": [], "blocks": [], "params": []}
    for i in range(n_blocks):
        start = i * info.block_size
        bpm = 90.0 if tempo_change_at is None or i < tempo_change_at else 150.0
        offsets = sorted(rng.choice(info.block_size, size=3, replace=False).tolist())
        midi = [(int(o), MESSAGES[(i + k) % len(MESSAGES)]) for k, o in enumerate(offsets)]
        params = [(int(offsets[0]), "cutoff", float(i) / n_blocks)]
        change = None if tempo_change_at is None else tempo_change_at * info.block_size
        playhead = playhead_for(start, bpm, change)
        processor.process(source[:, start:start + info.block_size], midi, playhead, params)
        truth["events"] += [(start + o, d) for o, d in midi]
        truth["blocks"].append((i, start, playhead))
        truth["params"].append((start + params[0][0], params[0][2]))
    sender.close(timeout=60)
    truth["sender"] = sender
    return truth


def check_dataset(got: dict, truth: dict, info: StreamInfo) -> None:
    assert got["rate"] == info.sample_rate
    assert got["audio"].tobytes() == truth["audio"].tobytes()  # float32 WAV: bit for bit
    events = got["events"].to_pydict()
    assert list(zip(events["sample"], events["data"], strict=True)) == truth["events"]
    assert all(e is None for e in events["timing_error_samples"])
    blocks = got["blocks"].to_pydict()
    assert blocks["seq"] == [b[0] for b in truth["blocks"]]
    assert blocks["sample"] == [b[1] for b in truth["blocks"]]
    for k, (_, _, p) in enumerate(truth["blocks"]):
        assert (blocks["bpm"][k], blocks["ppq"][k], blocks["bar"][k], blocks["beat"][k], blocks["ts_num"][k],
                blocks["playing"][k]) == (p.bpm, p.ppq, p.bar, p.beat, p.ts_num, p.playing)
    params = got["params"].to_pydict()
    assert list(zip(params["sample"], params["value"], strict=True)) == truth["params"]
    assert got["info"]["complete"] and got["info"]["gaps"] == [] and got["info"]["ended"] == "bye"


# --- the protocol by hand ----------------------------------------------------------------------

class RawClient:
    """A sender speaking the protocol by hand over a real websocket."""

    def __init__(self, url: str, hello: Hello) -> None:
        self.ws = connect(url, compression=None, max_size=None).__enter__()
        self.protocol = Protocol(Role.SENDER)
        self.protocol.send(hello)
        self.flush()
        self.welcome = self.read()

    def flush(self) -> None:
        for frame in self.protocol.data_to_send():
            self.ws.send(frame)

    def read(self, timeout: float = 10.0) -> object:
        self.protocol.receive_data(self.ws.recv(timeout))
        (event,) = self.protocol.events_received()
        return event

    def send(self, blocks: list, **kw: object) -> None:
        self.protocol.send_blocks(blocks, **kw)
        self.flush()

    def bye(self, last_seq: int, dropped: tuple = ()) -> None:
        """The stream ends at ``last_seq``; ``dropped``: (first, last) seqs dropped after the last block sent."""
        self.protocol.send(Bye(last_seq, (), dropped))
        self.flush()

    def read_until_ack(self, through: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.read(deadline - time.monotonic())
            if isinstance(event, Ack) and event.through >= through:
                return
        raise AssertionError(f"no ACK through {through}")


def hello(channels: int = 2, block_size: int = 64, take: str = "take1") -> Hello:
    """The HELLO of stream sess/keys for a ``RawClient``."""
    return Hello("sess", "keys", "", SR, channels, block_size, "raw", None, 0, take=take)


def blocks(n: int, start: int = 0, frames: int = 64, channels: int = 2) -> list:
    """Blocks ``start`` to ``start + n - 1`` of stream sess/keys (``helpers.make_block``)."""
    return [make_block(seq, frames=frames, channels=channels) for seq in range(start, start + n)]


def joined(sent: list) -> np.ndarray:
    """The audio of ``sent`` blocks end to end: what the stream's audio file must hold."""
    return np.concatenate([b.audio for b in sent], axis=1)


def refusal(url: str, frames: list[bytes]) -> tuple[int, str]:
    """Send ``frames`` on a new connection; the close code and reason the receiver ended it with."""
    with connect(url, compression=None, max_size=None) as ws:
        for frame in frames:
            ws.send(frame)
        try:
            while True:
                ws.recv(10)
        except Exception:
            pass
        return ws.close_code, ws.close_reason


def closed(client: RawClient, timeout: float = 30.0) -> tuple[int | None, str]:
    """Read until the receiver closes; its close code and reason."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            client.ws.recv(deadline - time.monotonic())
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
    except TimeoutError:
        pass
    return None, "still open"


# --- sendlearn serve in its own process --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(port: int, data_dir: Path, *flags: str) -> subprocess.Popen:
    """``sendlearn serve`` on ``port`` (with ``flags``), once it says it is listening."""
    process = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", str(port), "--data-dir",
                                str(data_dir), *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "listening" in process.stdout.readline()
    return process
