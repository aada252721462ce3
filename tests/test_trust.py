"""The receiver's trust boundaries (issue 25), each against a real ``sendlearn serve`` process:
a tokens file that fails closed while it runs (emptied, deleted, broken, edited without a new
mtime), a revoked token's connections cut with their work kept for a resume, and /status and
/metrics that need a token where streams do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import read_stream, wait_for
from receiving import RawClient, closed, joined
from receiving import blocks as sess_keys_blocks
from sendlearn.server.auth import make_token
from sendlearn.transport import ErrorCode, Hello, Protocol, Role, Welcome
from sendlearn.transport.encode import encode_frame

SR = 48000


class Serving:
    """``sendlearn serve --port 0`` in its own process, its JSON log kept."""

    def __init__(self, folder: Path, *flags: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.data_dir, self.log_path = folder / "data", folder / "serve.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--data-dir",
                                      str(self.data_dir), *flags], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"(wss?://\S+),", line)
        assert match, f"serve said {line!r}"
        self.url = match[1]

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(60)
        self.log.close()
        return code

    def logged(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


def get(url: str, path: str, token: str | None = None) -> tuple[int, str]:
    base = url.replace("ws://", "http://")
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (ConnectionResetError, urllib.error.URLError) as exc:  # e.g. queued on a worker as it was killed
        return 0, str(exc)


def blocks(n: int, start: int = 0, session: str = "lab-1", stream: str = "keys") -> list:
    return [replace(block, session=session, stream=stream, digest=None) for block in sess_keys_blocks(n, start)]


def stream_hello(token: str | None, session: str = "lab-1", stream: str = "keys") -> Hello:
    return Hello(session, stream, "", SR, 2, 64, "raw", token, take="take1")


def answer(url: str, hello: Hello) -> tuple[object, int | None, str]:
    """A HELLO on a new connection: the receiver's first message, and how it closed (None: open)."""
    with connect(url, compression=None, open_timeout=30) as ws:
        protocol = Protocol(Role.SENDER)
        protocol.send(hello)
        protocol.data_to_send()
        try:
            ws.send(encode_frame(hello))
            protocol.receive_data(ws.recv(30))
        except ConnectionClosed as exc:  # refused before it read the HELLO (BUSY)
            return None, exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
        (event,) = protocol.events_received()
        if isinstance(event, Welcome):
            return event, None, ""
        try:
            ws.recv(30)
        except Exception:
            pass
        return event, ws.close_code, ws.close_reason or ""


def write_keeping_mtime(path: Path, text: str) -> None:
    """An edit a watcher of mtimes would miss: the same mtime afterwards."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A tokens file of three: ``first`` and ``second`` for any session, ``lab`` for lab- sessions."""
    first, first_line = make_token()
    second, second_line = make_token()
    lab, lab_line = make_token(["lab-"])
    path = tmp_path / "tokens"
    path.write_text(f"{first_line}\n{second_line}\n{lab_line}\n")
    return path, first, second, lab


def test_a_made_token_never_reads_as_an_option() -> None:
    # CI once drew a token starting with "-": `sendlearn status --token -4fN...` was an argparse error.
    # One in 64 plain token_urlsafe(32) draws starts so; 3000 draws all miss it with odds of 3e-21.
    made = [make_token()[0] for _ in range(3000)]
    assert not [token for token in made if token.startswith("-")]
    assert len(set(made)) == 3000 and {len(token) for token in made} == {43}


def test_a_revoked_tokens_stream_is_cut_and_resumes_with_a_valid_token(tmp_path: Path, tokens) -> None:
    path, first, second, _ = tokens
    lines = path.read_text().splitlines()
    server = Serving(tmp_path, "--tokens", str(path), "--linger", "0")
    sent = blocks(30)
    try:
        client = RawClient(server.url, stream_hello(first))
        assert isinstance(client.welcome, Welcome)
        client.send(sent[:10])
        client.read_until_ack(9)
        # the first token's line goes, and the file keeps its mtime: seen by its content
        write_keeping_mtime(path, "\n".join(lines[1:]) + "\n")
        code, reason = closed(client, timeout=30)
        assert (code, reason) == (ErrorCode.UNAUTHORIZED, "token revoked")
        assert (server.data_dir / "sessions/lab-1/keys/.work").is_dir()  # kept for a resume
        assert not (server.data_dir / "sessions/lab-1/keys/info.json").exists()  # not finalised
        event, code, _ = answer(server.url, stream_hello(first))
        assert code == ErrorCode.UNAUTHORIZED
        again = RawClient(server.url, stream_hello(second))
        assert isinstance(again.welcome, Welcome) and again.welcome.durable_through == 9
        again.send(sent[10:])
        again.bye(29)
        assert closed(again)[0] == 1000
    finally:
        assert server.stop() == 0
    stream = read_stream(server.data_dir, "lab-1", "keys")
    assert stream["info"]["complete"] and stream["audio"].tobytes() == joined(sent).tobytes()
    revoked = [line for line in server.logged() if line.get("code") == "UNAUTHORIZED"
               and "revoked" in line["message"]]
    assert revoked and revoked[0]["session"] == "lab-1"


def test_an_empty_missing_or_broken_tokens_file_accepts_no_token(tmp_path: Path, tokens) -> None:
    path, first, _, _ = tokens
    text = path.read_text()
    server = Serving(tmp_path, "--tokens", str(path))
    try:
        assert isinstance(answer(server.url, stream_hello(first))[0], Welcome)
        for broken in ("", None, "not a hash line\n" + text, "\xff"):
            if broken is None:
                path.unlink()
            else:
                path.write_text(broken) if broken != "\xff" else path.write_bytes(b"\xff" + text.encode())
            wait_for(lambda: answer(server.url, stream_hello(first))[1] == ErrorCode.UNAUTHORIZED, 10,
                     f"HELLO refused with the tokens file {broken!r}")
            code, body = get(server.url, "/healthz")
            if broken in ("", None):  # nothing to accept: not an error
                assert code == 200, body
            else:  # a file that does not parse is an error until fixed
                assert code == 503 and "tokens" in body and ("line 1" in body or "UTF-8" in body), body
            path.write_text(text)  # fixed: the same token is accepted again
            wait_for(lambda: isinstance(answer(server.url, stream_hello(first))[0], Welcome), 10,
                     "the token accepted again")
            assert get(server.url, "/healthz")[0] == 200
    finally:
        assert server.stop() == 0
    logged = [line["message"] for line in server.logged() if line["logger"] == "sendlearn.receiver"]
    assert any("is empty" in m for m in logged) and any("is missing" in m for m in logged)
    assert sum("every new HELLO is refused" in m for m in logged) == 2  # logged at each change, once


def test_status_and_metrics_need_a_token_and_scopes_limit_status(tmp_path: Path, tokens) -> None:
    path, first, _, lab = tokens
    server = Serving(tmp_path, "--tokens", str(path))
    try:
        inside = RawClient(server.url, stream_hello(lab, "lab-1", "keys"))
        outside = RawClient(server.url, stream_hello(first, "other", "secret"))
        for client, (session, stream) in ((inside, ("lab-1", "keys")), (outside, ("other", "secret"))):
            client.send(blocks(3, session=session, stream=stream))
            client.read_until_ack(2)
        assert get(server.url, "/healthz")[0] == 200
        for path_ in ("/status", "/metrics"):
            for wrong in (None, "not-a-token"):
                code, body = get(server.url, path_, wrong)
                assert code == 401 and "secret" not in body and "other" not in body, (path_, code, body)
        code, body = get(server.url, "/status", first)
        assert code == 200 and {(s["session"], s["stream"]) for s in json.loads(body)["streams"]} == \
            {("lab-1", "keys"), ("other", "secret")}
        code, body = get(server.url, "/status", lab)  # its scopes: lab- sessions only
        assert code == 200 and [(s["session"], s["stream"]) for s in json.loads(body)["streams"]] == \
            [("lab-1", "keys")]
        code, body = get(server.url, "/metrics", lab)
        assert code == 200 and "sendlearn_connections" in body
        env = {k: v for k, v in os.environ.items() if k != "SENDLEARN_TOKEN"}
        panel = subprocess.run([sys.executable, "-m", "sendlearn", "status", "--server", server.url, "--json"],
                               capture_output=True, text=True, timeout=120, env=env)
        assert panel.returncode == 2 and "401" in panel.stderr and "--token" in panel.stderr
        for how in (["--token", lab], []):
            panel = subprocess.run([sys.executable, "-m", "sendlearn", "status", "--server", server.url, "--json",
                                    *how], capture_output=True, text=True, timeout=120,
                                   env={**env, "SENDLEARN_TOKEN": lab} if not how else env)
            assert panel.returncode == 0, panel.stderr
            assert [s["session"] for s in json.loads(panel.stdout)["streams"]] == ["lab-1"]
    finally:
        assert server.stop() == 0
    scraped = Serving(tmp_path / "open", "--tokens", str(path), "--metrics-open")
    try:
        assert get(scraped.url, "/metrics")[0] == 200
        assert get(scraped.url, "/status")[0] == 401
    finally:
        assert scraped.stop() == 0


# --- locks against another local user, a real unprivileged one ----------------------------------

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

AS_NOBODY = r'''
import errno, fcntl, json, os, sys
locks = sys.argv[1]
tried = {}
def attempt(name, work):
    try:
        work()
        tried[name] = "done"
    except OSError as exc:
        tried[name] = errno.errorcode.get(exc.errno, str(exc.errno))
names = os.listdir(locks) if os.access(locks, os.R_OK | os.X_OK) else []
lock = os.path.join(locks, sys.argv[2])
attempt("hold", lambda: fcntl.flock(os.open(lock, os.O_RDONLY), fcntl.LOCK_SH | fcntl.LOCK_NB))
attempt("plant", lambda: os.symlink("/etc/sendlearn-planted", os.path.join(locks, "planted+stream.lock")))
attempt("remove", lambda: os.unlink(lock))
attempt("remove folder", lambda: os.rename(locks, locks + ".gone"))
attempt("list", lambda: os.listdir(locks))
print(json.dumps(tried))
'''


def shared_folder() -> Path:
    """A folder other users can reach (pytest's tmp_path is root's alone), removed by the test."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sendlearn-trust-", dir="/tmp"))
    folder.chmod(0o755)
    return folder


def as_nobody(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, "/usr/bin/python3", *argv], capture_output=True, text=True, timeout=timeout)


def require_root() -> None:
    """setpriv to another user needs root; make test runs as root (it installs apt packages), so a
    run that is not root fails here naming why, never skips."""
    assert os.geteuid() == 0, "these tests act as another user through setpriv, which needs root"


def test_another_user_cannot_hold_plant_or_remove_a_lock(tmp_path: Path) -> None:
    require_root()
    import shutil

    folder = shared_folder()
    try:
        server = Serving(folder)
        try:
            assert (server.data_dir / ".locks").stat().st_mode & 0o777 == 0o700
            client = RawClient(server.url, stream_hello(None))
            client.send(blocks(5))
            client.read_until_ack(4)  # connected: its lock is held, its file there
            tried = as_nobody("-c", AS_NOBODY, str(server.data_dir / ".locks"), "lab-1+keys.lock")
            assert tried.returncode == 0, tried.stderr
            assert json.loads(tried.stdout) == {"hold": "EACCES", "plant": "EACCES", "remove": "EACCES",
                                                "remove folder": "EACCES", "list": "EACCES"}
            client.send(blocks(5, 5))
            client.bye(9)
            assert closed(client)[0] == 1000
            assert get(server.url, "/healthz")[0] == 200
            assert list((server.data_dir / ".locks").iterdir()) == []  # released: removed by its holder
        finally:
            assert server.stop() == 0
        assert read_stream(server.data_dir, "lab-1", "keys")["info"]["complete"]
    finally:
        shutil.rmtree(folder)


HOLD = r'''
import fcntl, os, sys, time
locks = sys.argv[1]
os.mkdir(locks, 0o777)
os.chmod(locks, 0o777)
fd = os.open(os.path.join(locks, sys.argv[2]), os.O_RDONLY | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(600)
'''


def test_a_locks_folder_another_user_made_first_is_a_storage_error_not_busy_forever(tmp_path: Path) -> None:
    """A data dir anyone may write (a shared scratch disk): another user makes .locks/ before the
    receiver starts and holds a stream's lock in it. The receiver refuses the folder with a named
    storage error on /healthz, and takes streams again once it is gone."""
    require_root()
    import shutil

    folder = shared_folder()
    data = folder / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o1777)
    squatter = subprocess.Popen([*NOBODY, "/usr/bin/python3", "-c", HOLD, str(data / ".locks"), "lab-1+keys.lock"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "held"
        server = Serving(folder)
        try:
            for _ in range(2):  # the same answer each time, never STREAM_BUSY
                event, code, reason = answer(server.url, stream_hello(None))
                assert code == ErrorCode.STORAGE and "belongs to uid 65534" in reason, (code, reason)
            code, body = get(server.url, "/healthz")
            assert code == 503 and "storage:" in body and "belongs to uid 65534" in body, body
            squatter.kill()
            squatter.wait(30)
            shutil.rmtree(data / ".locks")  # the operator removes it
            client = RawClient(server.url, stream_hello(None))
            assert isinstance(client.welcome, Welcome)
            client.send(blocks(3))
            client.bye(2)
            assert closed(client)[0] == 1000
            assert get(server.url, "/healthz")[0] == 200
            assert (data / ".locks").stat().st_uid == 0 and (data / ".locks").stat().st_mode & 0o777 == 0o700
        finally:
            assert server.stop() == 0
    finally:
        squatter.kill()
        squatter.wait(30)
        shutil.rmtree(folder)


# --- the small ones: draining, connections before their handshake, --workers' metrics and log --------

def test_sigterm_closes_connected_streams_with_going_away(tmp_path: Path) -> None:
    server = Serving(tmp_path, "--linger", "60")
    client = RawClient(server.url, stream_hello(None))
    client.send(blocks(5))
    client.read_until_ack(4)
    server.proc.terminate()
    code, reason = closed(client)
    assert code == ErrorCode.GOING_AWAY and "shutting down" in reason, (code, reason)  # docs/protocol.md
    assert server.proc.wait(60) == 0
    server.log.close()
    stream = read_stream(server.data_dir, "lab-1", "keys")
    assert stream["info"]["ended"] == "receiver stopped" and stream["blocks"].num_rows == 5


def test_connections_before_their_handshake_count_against_the_caps(tmp_path: Path) -> None:
    import select
    import socket

    cap = 4
    server = Serving(tmp_path, "--max-connections-per-address", str(cap))
    port = int(server.url.rsplit(":", 1)[1])
    silent = []
    try:
        for _ in range(cap):  # sockets that never send a request
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        event, code, reason = answer(server.url, stream_hello(None))
        assert code == ErrorCode.BUSY and "the limit per address" in reason, (event, code, reason)
        from sendlearn.server.receiver import CAP_GRACE

        more = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(cap + CAP_GRACE + 10)]
        silent += more
        ended: set[socket.socket] = set()
        wait_for(lambda: ended.update(select.select(silent, [], [], 0.1)[0]) or len(ended) >= len(more) - CAP_GRACE,
                 8, "the sockets past the cap and its grace closed")  # well before websockets' 10 s
        for sock in ended:
            try:
                assert sock.recv(1) == b""  # closed unanswered
            except ConnectionResetError:
                pass
        assert len(ended) == len(more) - CAP_GRACE
    finally:
        for sock in silent:
            sock.close()
    wait_for(lambda: isinstance(answer(server.url, stream_hello(None))[0], Welcome), 30, "room again")
    assert server.stop() == 0


def metric_lines(url: str, name: str) -> list[str]:
    code, text = get(url, "/metrics")
    if code != 200:
        return [f"no answer: {code} {text}"]
    return [line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


def test_workers_a_dead_one_is_replaced_its_gauges_cleared_labels_go_and_every_log_line_is_json(
        tmp_path: Path) -> None:
    import signal

    import psutil

    server = Serving(tmp_path, "--workers", "2", "--linger", "0")
    parent = psutil.Process(server.proc.pid)

    def workers() -> list[psutil.Process]:  # not multiprocessing's resource tracker
        return [child for child in parent.children() if "resource_tracker" not in " ".join(child.cmdline())]
    try:
        wait_for(lambda: len(workers()) == 2, 60, "two workers")
        done = RawClient(server.url, stream_hello(None, "lab-1", "done"))
        done.send(blocks(3, session="lab-1", stream="done"))
        done.read_until_ack(2)
        assert metric_lines(server.url, 'sendlearn_stream_quality{session="lab-1",stream="done"}')
        done.bye(2)
        assert closed(done)[0] == 1000
        # a finished stream's label goes (prometheus-client could not remove it with --workers)
        wait_for(lambda: not metric_lines(server.url, "sendlearn_stream_quality"), 10, "its label gone")
        held = RawClient(server.url, stream_hello(None, "lab-1", "cut"))
        held.send(blocks(3, session="lab-1", stream="cut"))
        held.read_until_ack(2)
        assert metric_lines(server.url, "sendlearn_streams") == ["sendlearn_streams 1.0"]
        local = held.ws.socket.getsockname()[1]
        (holder,) = [child for child in workers()
                     if any(c.raddr and c.raddr.port == local for c in child.net_connections("tcp"))]
        holder.send_signal(signal.SIGKILL)
        # its connections and streams leave /metrics (the scrape itself is the one connection left)
        wait_for(lambda: metric_lines(server.url, "sendlearn_streams") == ["sendlearn_streams 0.0"]
                 and metric_lines(server.url, "sendlearn_connections") == ["sendlearn_connections 1.0"]
                 and not metric_lines(server.url, "sendlearn_stream_quality"), 30, "the dead worker's gauges cleared")
        wait_for(lambda: any("replaced" in line["message"] for line in server.logged()), 60, "the worker replaced")
        (died,) = [line for line in server.logged() if "died" in line["message"]]
        assert died["pid"] == holder.pid and died["level"] == "ERROR"
        successor = {child.pid for child in workers()} - {holder.pid}
        assert len(successor) == 2
        for i in range(30):  # the successor takes streams too (the kernel spreads connections)
            probe = RawClient(server.url, stream_hello(None, "lab-1", f"probe{i}"))
            assert isinstance(probe.welcome, Welcome)
            probe.ws.close()
        taken = {line.get("worker") for line in server.logged()[server.logged().index(died):]
                 if line["message"].startswith("stream lab-1/probe")}
        assert taken == {0, 1}
    finally:
        assert server.stop() == 0
    server.logged()  # every line one JSON object: no warning printed as free text
