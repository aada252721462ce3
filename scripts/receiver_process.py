"""A `sendlearn serve` in its own process, for benchmarks: its CPU and GIL are not the
sender's, as in real use where plugins and the receiver run on different machines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class ReceiverProcess:
    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sendlearn", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if "listening on " not in line:
            self.process.kill()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.url = line.split("listening on ")[1].split(",")[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """SIGTERM: the receiver finalises its streams and exits."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
