"""What the bridge, its tests, its benchmark and ``sendlearn live`` share.

- ``DummyServer``: a private ``jackd -d dummy`` (tests, benchmarks, headless machines).
- ``drain``: a thread emptying a hand-off, standing in for the sender where there is none.
- ``bridge_stats`` / ``run_bridge``: run a bridge until told to stop, reporting as it goes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sendlearn.capture import Block, HandOff
from sendlearn.plugin.lifetime import die_with_parent
from sendlearn.plugin.live.bridge import BridgeError, JackBridge, OpenStream
from sendlearn.plugin.live.portaudio_bridge import PortAudioBridge
from sendlearn.plugin.live.ring import Control


def _serving(name: str) -> bool:
    """Whether a JACK server runs under ``name`` (a client can open on it)."""
    import jack  # here: a PortAudio capture imports this module without libjack

    jack.set_error_function(lambda message: None)  # "cannot connect": the answer we ask for
    try:
        jack.Client("sendlearn-probe", no_start_server=True, servername=name).close()
    except jack.JackOpenError:
        return False
    finally:
        jack.set_error_function(None)
    return True


OWNER_ENV = "SENDLEARN_JACK_OWNER"


class DummyServer:
    """``jackd -d dummy`` under a private server name, started and stopped by us.

    ``sync=True`` passes ``-S``: jackd2 otherwise runs clients asynchronously, and under
    load a late client's output comes from the previous cycle, which breaks any
    frame-for-frame comparison across clients. ``JACK_NO_AUDIO_RESERVATION=1`` stops jackd
    asking D-Bus for a sound card it does not use (there is no D-Bus in these containers).
    While running, ``JACK_DEFAULT_SERVER`` names it in this process's environment: libjack
    reads it when a client opens, and python-rtmidi's JACK clients have no other way to be
    told which server to join. The previous value is restored on ``stop``.

    Without a ``name``, the first of ``NAMES`` no server of ours runs under. JACK's registry
    holds ``NAMES`` servers a machine and frees the entry of one that died without leaving
    (killed, or its parent was) only when a server of the same name registers again: with a
    new name each time, a few killed renders or test runs left every later jackd failing "too
    many servers already active". Two starting at once under one name: the second exits at
    once and the next name is tried. ``SENDLEARN_JACK_OWNER`` (``sendlearn-PID-NAME``) in jackd's
    environment, and in this process's while it runs (so in every process started meanwhile:
    Ardour, the bridge's JACK process), says whose server it is.
    """

    NAMES = 8

    def __init__(self, name: str | None = None, *, rate: int = 48000, period: int = 128,
                 sync: bool = True, log: Path | None = None, timeout: float = 10.0) -> None:
        self._names = [name] if name else [f"sendlearn-{os.getuid()}-{k}" for k in range(self.NAMES)]
        self.name = self._names[0]
        self.rate, self.period, self.sync = rate, period, sync
        self.log = log
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> DummyServer:
        failed: BridgeError | None = None
        for name in self._names:
            if len(self._names) > 1 and _serving(name):
                continue
            self.name = name
            try:
                return self._start()
            except BridgeError as exc:  # jackd exited: the name was taken meanwhile, or the registry is full
                failed = exc
        raise failed or BridgeError(f"every JACK server name of ours is in use: {', '.join(self._names)}")

    def _start(self) -> DummyServer:
        command = ["jackd", "-n", self.name, *(["-S"] if self.sync else []),
                   "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        ours = {"JACK_DEFAULT_SERVER": self.name, OWNER_ENV: f"sendlearn-{os.getpid()}-{self.name}"}
        env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", **ours}
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
        try:
            self._proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        finally:
            if not isinstance(out, int):  # our log file, not subprocess.DEVNULL
                out.close()
        self._saved_env = {key: os.environ.get(key) for key in ours}
        os.environ.update(ours)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import jack  # here: a PortAudio capture imports this module without libjack

        deadline = time.monotonic() + self.timeout
        jack.set_error_function(lambda message: None)  # "cannot connect" until it is up: expected
        try:
            self._poll_ready(deadline)
        finally:
            jack.set_error_function(None)

    def _poll_ready(self, deadline: float) -> None:
        import jack

        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise BridgeError(f"jackd exited with {self._proc and self._proc.returncode}"
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
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

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
    """A snapshot for a status line, the panel and the stream's closing figures."""

    seconds: float
    blocks: int
    dropped: int  # blocks lost before the sender had them: the JACK ring or the hand-off was full
    queued: int
    midi_events: int  # JACK MIDI events captured
    midi_dropped: int  # JACK MIDI events the ring could not hold (or in a dropped period)
    midi_rejected: int  # malformed MIDI the processor refused (JACK port and virtual port)
    virtual_events: int  # messages the virtual port received
    virtual_dropped: int  # ... and could not keep (ring full, message too long, arrived after the end)
    virtual_late: int  # stamped a period or more into their cycle (their bound grew)
    xruns: int
    frame_jumps: int
    missed_frames: int  # frames of JACK time no callback of ours ran in: gaps in the stream
    callback_errors: int  # periods whose copy raised in the JACK process (audio still passed)
    capture_errors: int  # periods this process could not turn into a block
    playheads_held: int  # periods a late timebase master left without BBT: its last position carried on
    callback_p50_us: float
    callback_p99_us: float
    callback_max_us: float
    period_us: float
    frame_origins: tuple[tuple[int, int], ...] = ()  # (stream sample, JACK frame of it) at start and jumps
    tempo: dict[str, Any] = field(default_factory=dict)  # the timebase master's tempo unit (plugin/live/tempo.py)
    freewheel: dict[str, Any] = field(default_factory=dict)  # JACK's freewheeling spans (bridge.freewheel_figures)
    device: dict[str, Any] = field(default_factory=dict)  # a PortAudio device's facts (device_figures)

    def closing_figures(self, max_origins: int = 20_000) -> dict[str, Any]:
        """The figures a live stream ends with (BYE ``stats``, so ``stream.json``): structured
        values, the frame origins as ``[[sample, frame], ...]`` (at most ``max_origins``:
        docs/protocol.md bounds a message's facts; more are counted, never joined into text)."""
        origins = [list(pair) for pair in self.frame_origins[:max_origins]]
        return {
            "xruns": self.xruns, "frame_jumps": self.frame_jumps, "missed_frames": self.missed_frames, "callback_errors": self.callback_errors,
            "capture_errors": self.capture_errors, "playheads_held": self.playheads_held,
            "callback_p99_us": round(self.callback_p99_us, 1),
            "callback_max_us": round(self.callback_max_us, 1), "midi_events": self.midi_events,
            "midi_dropped": self.midi_dropped, "midi_rejected": self.midi_rejected,
            "virtual_events": self.virtual_events, "virtual_dropped": self.virtual_dropped,
            "virtual_late": self.virtual_late, "blocks_dropped": self.dropped,
            "jack_frame_origin": self.frame_origins[0][1] if self.frame_origins else None,
            "jack_frame_origins": origins,
            "jack_frame_origins_left_out": max(0, len(self.frame_origins) - max_origins),
            **self.tempo, **self.freewheel, **self.device,
        }


def bridge_stats(bridge: JackBridge, started: float) -> BridgeStats:
    times = bridge.callback_times_ns()
    p50, p99, top = (np.percentile(times, [50, 99, 100]) / 1000.0) if len(times) else (0.0, 0.0, 0.0)
    processor = bridge.processor
    virtual = bridge.virtual
    return BridgeStats(
        seconds=time.monotonic() - started, blocks=processor.next_seq,
        dropped=processor.dropped, queued=len(processor.handoff),
        midi_events=bridge.midi_events, midi_dropped=bridge.count(Control.DROPPED_EVENTS),
        midi_rejected=processor.rejected_events + (virtual.rejected if virtual else 0),
        virtual_events=bridge.count(Control.MESSAGES_RECEIVED),
        virtual_dropped=bridge.count(Control.MESSAGES_DROPPED) + (virtual.left_over if virtual else 0),
        virtual_late=virtual.late if virtual else 0,
        xruns=bridge.xruns, frame_jumps=bridge.frame_jumps, missed_frames=bridge.missed_frames, callback_errors=bridge.count(Control.ERRORS),
        capture_errors=bridge.capture_errors, playheads_held=bridge.playheads.held,
        callback_p50_us=float(p50), callback_p99_us=float(p99), callback_max_us=float(top),
        period_us=bridge.info.block_size / bridge.info.sample_rate * 1e6,
        frame_origins=tuple(bridge.frame_origins), tempo=bridge.playheads.figures(),
        freewheel=bridge.freewheel_figures(), device=device_figures(bridge),
    )


def device_figures(bridge: JackBridge) -> dict[str, Any]:
    """Which audio host captured, and for PortAudio what its device reported: overflow flags,
    losses its timestamps showed (plugin/live/adc_clock.py), and why it stopped if on its own."""
    if not isinstance(bridge, PortAudioBridge):  # the JACK path's facts are the fields above, and Link's
        return bridge.link.figures() if bridge.link is not None else {}
    return {"audio_host": "portaudio", "audio_device": bridge.client_name,
            "input_overflows": bridge.count(Control.INPUT_OVERFLOWS), "clock_gaps": bridge.count(Control.CLOCK_GAPS),
            "clock_jumps": bridge.count(Control.CLOCK_JUMPS), "timestamps_trusted": bridge.timestamps_trusted,
            "device_lost": bridge.device_lost, **bridge.midi_figures()}


def run_bridge(
    open_stream: OpenStream | None = None,
    *,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[BridgeStats], None] | None = None,
    tick: float = 0.5,
    bridge_class: type[JackBridge] = JackBridge,
    **bridge_options: Any,
) -> BridgeStats:
    """Run a ``JackBridge`` until ``stop`` is set or ``seconds`` pass (Ctrl-C also ends it),
    calling ``on_tick`` every ``tick`` seconds; return the final stats, taken after the
    bridge has captured every period the JACK process wrote. A JACK process that ends on its
    own (killed, crashed) raises ``BridgeError``: a capture that failed partway, which the
    command aborts rather than completes. A PortAudio device that stops on its own ends the
    run, not in failure: every block it gave is captured and the stats say why (``device_lost``)."""
    stop = stop or threading.Event()
    with bridge_class(open_stream, **bridge_options) as bridge:
        started = time.monotonic()
        try:
            while not stop.wait(tick):
                if bridge.count(Control.DEVICE_LOST):
                    break
                if _gone(bridge.pid):  # not asked to stop: the capture failed partway, say so
                    raise BridgeError("the JACK process ended during the capture"
                                      + (f" ({bridge.last_error})" if bridge.last_error else ""))
                if on_tick is not None:
                    on_tick(bridge_stats(bridge, started))
                if seconds is not None and time.monotonic() - started >= seconds:
                    break
        except KeyboardInterrupt:
            pass
    return bridge_stats(bridge, started)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` (the bridge's JACK process, a child of ours) has ended: its reader
    reaps it within a poll, after which the pid no longer exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
