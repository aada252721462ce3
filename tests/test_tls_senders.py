"""Senders take wss:// with --ca-file: `sendlearn render` into a real `sendlearn serve` that
speaks TLS with a certificate the test makes."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import mido

from helpers import make_certificate, read_stream
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
