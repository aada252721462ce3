from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sendlearn.capture import Block, MidiEvent, ParamChange, Playhead


def make_audio(channels: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (channels, frames)).astype(np.float32)


def make_block(seq: int = 0, frames: int = 512, channels: int = 2, start: int | None = None, **kw) -> Block:
    defaults = dict(
        playhead=lambda: Playhead(seconds=seq * frames / 48000, bpm=120.0, playing=True),
        midi=lambda: (MidiEvent(0, b"\x90\x3c\x64"), MidiEvent(frames - 1, b"\x80\x3c\x00")),
        params=lambda: (ParamChange(3, "cutoff", 0.25),),
        audio=lambda: make_audio(channels, frames, seq),
    )
    defaults = {k: kw[k] if k in kw else make() for k, make in defaults.items()}
    return Block("sess", "keys", seq, seq * frames if start is None else start, frames, 48000, channels, **defaults)


def read_stream(data_dir, session: str, stream: str) -> dict:
    """A written stream read back through the public reader, ``sendlearn.dataset``."""
    from sendlearn.dataset import Dataset

    written = Dataset(data_dir).stream(session, stream)
    return {
        "folder": written.path, "info": written.info, "audio": written.audio(), "rate": written.sample_rate,
        "events": written.events(), "blocks": written.blocks(), "params": written.params(), "midi": written.midi(),
    }


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by openssl: (cert, key)."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def make_ca_and_certificate(folder: Path, name: str = "lab") -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for 127.0.0.1 and localhost, made by openssl:
    (the CA's certificate, the server's certificate, its key). Installing the CA for a process
    (SSL_CERT_FILE) is what putting a receiver behind a real certificate looks like to a sender."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca-key.pem"
    cert, key, request = folder / f"{name}-cert.pem", folder / f"{name}-key.pem", folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "extendedKeyUsage=serverAuth\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(request))
    run("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1",
        "-extfile", str(extensions), "-out", str(cert))
    return ca, cert, key


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    """A hang guard, not a timing assertion: the machine may be slow."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.02)
