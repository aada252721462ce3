"""SIGTERM stops `sendlearn serve` gracefully; a second signal exits at once, and what the
receiver acknowledged is still whole on disk for the stream's sender to resume.
A real `sendlearn serve` process, real sockets on loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from helpers import read_stream, wait_for
from receiving import RawClient, blocks, closed, free_port, hello, joined, start_receiver
from sendlearn.transport import Bye, Welcome


class Serve:
    """`sendlearn serve` with its JSON log lines collected as they come."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sendlearn", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "listening" in self.process.stdout.readline()
        self.log: list[dict] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.process.stderr:
            try:
                self.log.append(json.loads(line))
            except ValueError:
                self.log.append({"message": line.strip()})

    def said(self, words: str) -> bool:
        return any(words in entry.get("message", "") for entry in self.log)


def test_a_second_signal_exits_at_once_and_what_was_acknowledged_resumes_whole(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    url = f"ws://127.0.0.1:{port}"
    sent = blocks(80)
    serve = Serve(port, data)
    try:
        first = RawClient(url, hello())
        first.send(sent[:50])
        first.read_until_ack(49)
        # a connection that never finishes its handshake holds the drain open (websockets' open
        # timeout), so the second signal surely arrives while the first one is still stopping
        idle = socket.create_connection(("127.0.0.1", port))
        serve.process.send_signal(signal.SIGTERM)
        wait_for(lambda: serve.said("stopping"), 30, "the first signal's log line")
        serve.process.send_signal(signal.SIGTERM)
        serve.process.wait(30)
        idle.close()
    finally:
        serve.process.kill()
    wait_for(lambda: serve.said("second signal"), 10, "the second signal's log line")
    assert serve.process.returncode == 1

    receiver = start_receiver(port, data)
    try:
        second = RawClient(url, hello())
        assert isinstance(second.welcome, Welcome)
        durable = second.welcome.durable_through
        assert durable == 49  # every acknowledged block survived; nothing unsent was invented
        second.send(sent[durable + 1:])
        second.protocol.send(Bye(last_seq=79))
        second.flush()
        code, reason = closed(second)
        assert code == 1000, reason
    finally:
        receiver.terminate()
        receiver.wait(30)
    got = read_stream(data, "sess", "keys")
    assert got["blocks"].column("seq").to_pylist() == list(range(80))
    assert got["audio"].tobytes() == joined(sent).tobytes()
    assert got["info"]["complete"] and got["info"]["gaps"] == []
