"""What the bridge, its tests, its benchmark and ``sendlearn live`` share.

- ``DummyServer``: a private ``jackd -d dummy`` (tests, benchmarks, headless machines).
- ``drain``: a thread emptying a hand-off, standing in for the sender where there is none.
- ``bridge_stats`` / ``run_bridge``: run a bridge until told to stop, reporting as it goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jack
import numpy as np

from sendlearn.capture import Block, HandOff

from .jack_host import JackBridge, OpenStream

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A jackd we started must not outlive us, even when we are killed: ask Linux to send it
    # SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG). Best effort elsewhere.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class DummyServer:
    """``jackd -d dummy`` under a private server name, started and stopped by us.

    ``sync=True`` passes ``-S``: jackd2 otherwise runs clients asynchronously, and under
    load a late client's output comes from the previous cycle (DESIGN §5), which breaks any
    frame-for-frame comparison across clients. ``JACK_NO_AUDIO_RESERVATION=1`` stops jackd
    asking D-Bus for a sound card it does not use (there is no D-Bus in these containers).
    While running, ``JACK_DEFAULT_SERVER`` names it in this process's environment: libjack
    reads it when a client opens, and python-rtmidi's JACK clients have no other way to be
    told which server to join. The previous value is restored on ``stop``.
    """

    def __init__(self, name: str | None = None, *, rate: int = 48000, period: int = 128,
                 sync: bool = True, log: Path | None = None, timeout: float = 10.0) -> None:
        self.name = name or f"sendlearn-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        self.rate, self.period, self.sync = rate, period, sync
        self.log = log
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._saved_env: str | None = None

    def start(self) -> DummyServer:
        command = ["jackd", "-n", self.name, *(["-S"] if self.sync else []),
                   "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", "JACK_DEFAULT_SERVER": self.name}
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
        try:
            self._proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._saved_env = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        jack.set_error_function(lambda message: None)  # "cannot connect" until it is up: expected
        try:
            self._poll_ready(deadline)
        finally:
            jack.set_error_function(None)

    def _poll_ready(self, deadline: float) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"jackd exited with {self._proc and self._proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                probe = jack.Client("sendlearn-probe", no_start_server=True, servername=self.name)
            except jack.JackOpenError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jackd {self.name!r} accepted no client in {self.timeout} s") from None
                time.sleep(0.05)
                continue
            probe.close()
            return

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._saved_env is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._saved_env

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> DummyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drain(handoff: HandOff, on_block: Callable[[Block], None] | None = None,
          poll: float = 0.05) -> threading.Thread:
    """Start a daemon thread that takes every block until the hand-off is finished."""

    def run() -> None:
        while not handoff.finished:
            block = handoff.take(timeout=poll)
            if block is not None and on_block is not None:
                on_block(block)

    thread = threading.Thread(target=run, name="sendlearn-drain", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class BridgeStats:
    """A snapshot for a status line or panel."""

    seconds: float
    blocks: int
    dropped: int
    queued: int
    midi_events: int
    virtual_events: int
    xruns: int
    frame_jumps: int
    callback_errors: int
    callback_p50_us: float
    callback_p99_us: float
    period_us: float
    frame_origins: tuple[tuple[int, int], ...] = ()  # (stream sample, JACK frame of it) at start and jumps


def bridge_stats(bridge: JackBridge, started: float) -> BridgeStats:
    times = bridge.callback_times_ns()
    p50, p99 = (np.percentile(times, [50, 99]) / 1000.0) if len(times) else (0.0, 0.0)
    return BridgeStats(
        seconds=time.monotonic() - started, blocks=bridge.processor.next_seq,
        dropped=bridge.processor.dropped, queued=len(bridge.processor.handoff),
        midi_events=bridge.midi_events,
        virtual_events=bridge.virtual.received if bridge.virtual else 0,
        xruns=bridge.xruns, frame_jumps=bridge.frame_jumps, callback_errors=bridge.callback_errors,
        callback_p50_us=float(p50), callback_p99_us=float(p99),
        period_us=bridge.info.block_size / bridge.info.sample_rate * 1e6,
        frame_origins=tuple(bridge.frame_origins),
    )


def run_bridge(
    open_stream: OpenStream | None = None,
    *,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[BridgeStats], None] | None = None,
    tick: float = 0.5,
    connect: dict[str, str] | None = None,
    **bridge_options: Any,
) -> BridgeStats:
    """Run a ``JackBridge`` until ``stop`` is set or ``seconds`` pass (Ctrl-C also ends it),
    calling ``on_tick`` every ``tick`` seconds; return the final stats. ``connect`` maps
    source ports to our port names (``"in_1"``, ``"midi_in"``) or full names."""
    stop = stop or threading.Event()
    with JackBridge(open_stream, **bridge_options) as bridge:
        own = bridge.client.name + ":"
        for source, sink in (connect or {}).items():
            bridge.client.connect(source, sink if ":" in sink else own + sink)
        started = time.monotonic()
        try:
            while not stop.wait(tick):
                if on_tick is not None:
                    on_tick(bridge_stats(bridge, started))
                if seconds is not None and time.monotonic() - started >= seconds:
                    break
        except KeyboardInterrupt:
            pass
    return bridge_stats(bridge, started)  # after close: includes the last, pending period
