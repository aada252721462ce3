"""The receiver as a service (issue 12): HTTP on its port, hashed and scoped tokens, TLS with a
certificate made here, and a fuzzer driving a running receiver with random and mutated frames."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from disks import fill, tmpfs
from helpers import make_certificate, read_stream, wait_for
from midi_files import write_tune
from receiving import RawClient, blocks, capture, check_dataset, closed, hello
from sendlearn.capture import StreamInfo
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Bye, ErrorCode, Hello, Protocol, Role, State, Welcome
from sendlearn.transport.encode import encode_frame

SR = 48000


def get(url: str, path: str, context: ssl.SSLContext | None = None) -> tuple[int, str, str]:
    base = url.replace("ws://", "http://").replace("wss://", "https://")
    try:
        with urllib.request.urlopen(base + path, timeout=30, context=context) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def metric(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus exposition."""
    return float(re.search(rf"^{name} (\S+)$", text, re.M)[1])


def test_healthz_metrics_and_status_on_the_websocket_port(tmp_path: Path) -> None:
    sent = blocks(40)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        with ReceiverThread(disk, commit_interval=0.05) as receiver:
            assert get(receiver.url, "/healthz")[:1] == (200,)
            client = RawClient(receiver.url, hello())
            client.send(sent[:10])
            client.read_until_ack(9)
            code, kind, body = get(receiver.url, "/status")
            assert code == 200 and kind == "application/json"
            (stream,) = json.loads(body)["streams"]
            assert (stream["session"], stream["stream"], stream["blocks"], stream["midi_events"], stream["quality"],
                    stream["acked_through"]) == ("sess", "keys", 10, 20, 0, 9)
            code, kind, text = get(receiver.url, "/metrics")
            assert code == 200 and kind.startswith("text/plain")
            assert re.search(r"^sendlearn_streams [1-9]", text, re.M) and 'sendlearn_stream_quality{session="sess",' \
                'stream="keys"} 0.0' in text and "sendlearn_ack_lag_seconds_count" in text
            filler = fill(disk)  # the disk refuses: 503 until a write and sync succeed again
            client.send(sent[10:])
            assert closed(client)[0] == ErrorCode.STORAGE
            code, _, body = get(receiver.url, "/healthz")
            assert code == 503 and "No space left on device" in body
            assert re.search(r'^sendlearn_refusals_total\{reason="STORAGE"\} [1-9]', get(receiver.url, "/metrics")[2],
                             re.M)
            filler.unlink()
            again = RawClient(receiver.url, hello())
            again.send(sent[again.welcome.durable_through + 1:])
            again.bye(39)
            assert closed(again)[0] == 1000
            assert get(receiver.url, "/healthz")[0] == 200
        assert read_stream(disk, "sess", "keys")["audio"].shape[1] == 40 * 64


def sendlearn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sendlearn", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160"})


def test_hashed_scoped_tokens_over_tls(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    made = sendlearn("token", "--tokens", str(tokens), "--scope", "lab-")
    assert made.returncode == 0
    token = made.stdout.strip()
    assert token not in tokens.read_text() and tokens.read_text().startswith("sha256:")
    assert tokens.stat().st_mode & 0o777 == 0o600  # made new: the service user's alone
    tokens.chmod(0o640)
    assert sendlearn("token", "--tokens", str(tokens)).returncode == 0
    assert tokens.stat().st_mode & 0o777 == 0o640 and len(tokens.read_text().splitlines()) == 2  # kept, appended
    refused = sendlearn("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "data"))
    assert refused.returncode == 2 and "not a loopback address: give --tokens" in refused.stderr
    cert, key = make_certificate(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--data-dir",
                             str(tmp_path / "data"), "--tokens", str(tokens), "--tls-cert", str(cert), "--tls-key",
                             str(key)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"(wss://\S+),", proc.stdout.readline())[1]
        context = ssl.create_default_context(cafile=str(cert))
        assert get(url, "/healthz", context)[0] == 200
        for wrong, session in (("not-it", "lab-1"), (token, "other"), (None, "lab-1")):
            with connect(url, ssl=context, compression=None, open_timeout=30) as ws:
                ws.send(encode_frame(Hello(session, "keys", "", SR, 2, 256, "raw", wrong)))
                with pytest.raises(ConnectionClosed) as ended:
                    ws.recv(30)  # the ERROR message
                    ws.recv(30)
            assert ended.value.rcvd.code == ErrorCode.UNAUTHORIZED
        info = StreamInfo("lab-1", "keys", SR, 2, 256)
        truth = capture(info, url, 120, token=token, ssl_context=context)
        tune = write_tune(tmp_path / "lab-2.mid", [(0, 60, 100), (480, 64, 90)])
        rendered = subprocess.run([sys.executable, "-m", "sendlearn", "render", str(tune), "--server", url,
                                   "--ca-file", str(cert), "--json"], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "SENDLEARN_TOKEN": token})  # no --token on the command line
        assert rendered.returncode == 0, rendered.stdout + rendered.stderr
        assert json.loads(rendered.stdout)["streams"][0]["ok"]
        later = sendlearn("token", "--tokens", str(tokens)).stdout.strip()  # added while it runs: read again
        with connect(url, ssl=context, compression=None, open_timeout=30) as ws:
            ws.send(encode_frame(Hello("any", "keys", "", SR, 2, 256, "raw", later)))
            protocol = Protocol(Role.SENDER)
            protocol.send(Hello("any", "keys", "", SR, 2, 256, "raw", later))
            protocol.receive_data(ws.recv(30))
            assert isinstance(protocol.events_received()[0], Welcome)
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    check_dataset(read_stream(tmp_path / "data", "lab-1", "keys"), truth, info)


# --- fuzzing a running receiver ----------------------------------------------------------------

def _valid_frames() -> list[bytes]:
    protocol = Protocol(Role.SENDER)
    protocol.send(hello())
    protocol.state = State.STREAMING
    protocol.send_blocks(blocks(3), dropped=[])
    protocol.send(Bye(2))
    return protocol.data_to_send()


VALID = _valid_frames()


@st.composite
def frames(draw: st.DrawFn) -> list[bytes]:
    out = []
    for frame in draw(st.lists(st.sampled_from(range(len(VALID))), min_size=1, max_size=4)):
        data = bytearray(VALID[frame])
        for _ in range(draw(st.integers(0, 4))):
            if data:
                at = draw(st.integers(0, len(data) - 1))
                data[at] = draw(st.integers(0, 255))
        out.append(bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data))
    if draw(st.booleans()):
        out.append(draw(st.binary(max_size=256)))
    if draw(st.booleans()):
        out.append(b"\x00" + msgpack.packb(draw(st.dictionaries(st.sampled_from(["type", "blocks", "midi", "seq"]),
                                                                   st.sampled_from(["block", "hello", [], 1, b"x"]),
                                                                   max_size=4))))
    return out


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    with ReceiverThread(tmp_path_factory.mktemp("fuzz"), commit_interval=0.05, linger=0) as receiver:
        yield receiver


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=frames())
def test_random_and_mutated_frames_never_crash_hang_or_leak(fuzzed: ReceiverThread, sent: list[bytes]) -> None:
    with connect(fuzzed.url, compression=None, max_size=None, open_timeout=30) as ws:
        try:
            for frame in sent:
                ws.send(frame)
            ws.close()
        except ConnectionClosed:
            pass
    # the receiver is still whole: every connection's task ends, and a good stream lands
    loop = fuzzed._loop
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = asyncio.run_coroutine_threadsafe(_tasks(), loop).result(30)
        if tasks <= BASELINE_TASKS and not fuzzed.receiver.open_connections:
            break
        time.sleep(0.05)
    assert tasks <= BASELINE_TASKS and not fuzzed.receiver.open_connections, tasks


BASELINE_TASKS = 4  # the server's accept loop, the receiver's recovery and sweep, and _tasks itself


async def _tasks() -> int:
    return len(asyncio.all_tasks())


def test_the_fuzzed_receiver_still_takes_a_stream(fuzzed: ReceiverThread) -> None:
    info = StreamInfo("after", "fuzz", SR, 2, 256)
    truth = capture(info, fuzzed.url, 60)
    check_dataset(read_stream(fuzzed.receiver.data_dir, "after", "fuzz"), truth, info)


def test_status_panel_shows_a_running_receivers_streams(tmp_path: Path, receiver: ReceiverThread) -> None:
    client = RawClient(receiver.url, hello())
    client.send(blocks(12))
    client.read_until_ack(11)
    shown = sendlearn("status", "--server", receiver.url, "--once")
    as_json = sendlearn("status", "--server", receiver.url, "--json")
    receiver.stop()  # finalises the open streams before the dataset is read
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "keys" in line)
    assert "sess" in row and " 12 " in row and " 24 " in row and "float32" in row, shown.stdout
    (stream,) = json.loads(as_json.stdout)["streams"]
    assert stream["blocks"] == 12 and stream["acked_through"] == 11
    gone = sendlearn("status", "--server", receiver.url, "--once")
    assert gone.returncode == 2 and "--server" in gone.stderr


def test_one_writer_per_stream_across_receivers_on_one_data_dir(tmp_path: Path) -> None:
    with ReceiverThread(tmp_path, commit_interval=0.05) as one, ReceiverThread(tmp_path) as other:
        client = RawClient(one.url, hello())
        client.send(blocks(5))
        client.read_until_ack(4)
        with connect(other.url, compression=None) as ws:
            ws.send(encode_frame(hello()))
            with pytest.raises(ConnectionClosed) as ended:
                ws.recv(60)  # the ERROR message
                ws.recv(60)
        assert ended.value.rcvd.code == ErrorCode.STREAM_BUSY
        client.bye(4)
        assert closed(client)[0] == 1000
    assert read_stream(tmp_path, "sess", "keys")["blocks"].column("seq").to_pylist() == list(range(5))


def test_workers_share_the_port_and_each_stream_lands_whole(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--workers", "2",
                             "--data-dir", str(tmp_path / "data")], stdout=subprocess.PIPE,
                            stderr=(tmp_path / "log").open("w"), text=True)
    try:
        url = re.search(r"(ws://\S+),", proc.stdout.readline())[1]
        infos = [StreamInfo("multi", f"s{i}", SR, 2, 256) for i in range(4)]
        truths: dict = {}
        threads = [threading.Thread(target=lambda i=info: truths.setdefault(i.stream, capture(i, url, 80)))
                   for info in infos]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        # whichever worker answers /metrics reports every worker's figures
        wait_for(lambda: metric(get(url, "/metrics")[2], "sendlearn_streams_finalised_total") == len(infos), 60,
                 "every stream finalised")
        for _ in range(8):  # new connections: the kernel hands them to either worker
            text = get(url, "/metrics")[2]
            assert metric(text, "sendlearn_blocks_total") == 80 * len(infos)
            assert metric(text, "sendlearn_streams_finalised_total") == len(infos)
    finally:
        proc.send_signal(15)
        assert proc.wait(120) == 0
    for info in infos:
        check_dataset(read_stream(tmp_path / "data", "multi", info.stream), truths[info.stream], info)
    workers = {json.loads(line).get("worker") for line in (tmp_path / "log").read_text().splitlines()
               if line.startswith("{")}
    assert {0, 1} <= workers
