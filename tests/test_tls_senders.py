"""Senders take wss:// with the system's trust store, and --ca-file adds a CA to it: `sendlearn
render` and `sendlearn status --server` against a real `sendlearn serve` that speaks TLS with
certificates the test makes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mido

from helpers import make_ca_and_certificate, make_certificate, read_stream
from receiving import free_port, start_receiver
from sendlearn.cli.main import main


def tune(path: Path) -> Path:
    midi = mido.MidiFile()
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for i in range(6):
        track.append(mido.Message("note_on", note=60 + i, velocity=90, time=0 if i == 0 else 240))
        track.append(mido.Message("note_off", note=60 + i, time=200))
    midi.save(path)
    return path


def render(*argv: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["render", *argv, "--json"])
    return code, json.loads(out.getvalue())


def test_render_streams_over_wss_with_the_receivers_ca(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    serve = start_receiver(port, tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        url = f"wss://127.0.0.1:{port}"
        mid = tune(tmp_path / "tune.mid")
        code, summary = render(str(mid), "--server", url)  # the system's CAs do not know it
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in summary["failures"][0]["reason"]
        code, summary = render(str(mid), "--server", url, "--ca-file", str(cert))
        assert code == 0 and summary["ok"], summary
    finally:
        serve.terminate()
        serve.wait(60)
    stream = read_stream(tmp_path / "data", "tune", "tune")
    assert stream["info"]["complete"] and stream["info"]["blocks"] > 0


def test_a_batch_streams_over_wss_with_the_receivers_ca(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    serve = start_receiver(port, tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("one", "two"):
        tune(inputs / f"{name}.mid")
    try:
        url = f"wss://127.0.0.1:{port}"
        refused = io.StringIO()
        with contextlib.redirect_stderr(refused):  # the system's CAs do not know it: checked before any render
            assert main(["render", str(inputs), "--workers", "2", "--server", url]) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in refused.getvalue()
        code, summary = render(str(inputs), "--workers", "2", "--server", url, "--ca-file", str(cert))
        assert code == 0 and summary["failed"] == 0, summary
    finally:
        serve.terminate()
        serve.wait(60)
    for name in ("one", "two"):
        stream = read_stream(tmp_path / "data", name, name)
        assert stream["info"]["complete"] and stream["info"]["blocks"] > 0


def sendlearn(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """A sendlearn command in a process of its own, with ``env`` added to its environment."""
    return subprocess.run([sys.executable, "-m", "sendlearn", *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_a_certificate_from_a_ca_the_system_trusts_needs_no_ca_file(tmp_path: Path) -> None:
    """The route docs/serve.md documents: the CA installed for the sender's process through
    SSL_CERT_FILE, no --ca-file. Render (one, and a batch of worker processes) and status all
    verify the receiver; without the CA they refuse it; --ca-file adds a CA and keeps the system's."""
    ca, cert, key = make_ca_and_certificate(tmp_path / "lab")
    other_ca = make_ca_and_certificate(tmp_path / "other", "other")[0]
    port = free_port()
    serve = start_receiver(port, tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
    url = f"wss://127.0.0.1:{port}"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("one", "two"):
        tune(inputs / f"{name}.mid")
    try:
        trusted = {"SSL_CERT_FILE": str(ca)}
        one = sendlearn("render", str(tune(tmp_path / "tune.mid")), "--server", url, "--json", **trusted)
        assert one.returncode == 0 and json.loads(one.stdout)["ok"], one.stdout + one.stderr
        batch = sendlearn("render", str(inputs), "--workers", "2", "--server", url, "--json", **trusted)
        assert batch.returncode == 0 and json.loads(batch.stdout)["failed"] == 0, batch.stdout + batch.stderr
        status = sendlearn("status", "--server", url, "--json", **trusted)
        assert status.returncode == 0 and json.loads(status.stdout)["storage_error"] is None, status.stderr
        # --ca-file adds a CA: the system's (here SSL_CERT_FILE's) still verifies the receiver
        added = sendlearn("status", "--server", url, "--json", "--ca-file", str(other_ca), **trusted)
        assert added.returncode == 0, added.stderr
        # a trust store without the CA: every sender refuses the receiver
        untrusted = {"SSL_CERT_FILE": str(other_ca)}
        refused = sendlearn("render", str(tmp_path / "tune.mid"), "--server", url, "--json", **untrusted)
        assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
        refused = sendlearn("status", "--server", url, "--json", **untrusted)
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    finally:
        serve.terminate()
        serve.wait(60)
    for session in ("tune", "one", "two"):
        stream = read_stream(tmp_path / "data", session, session)
        assert stream["info"]["complete"] and stream["info"]["blocks"] > 0
