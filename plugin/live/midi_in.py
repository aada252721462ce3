"""MIDI inputs beside a PortAudio capture: ``--midi-in PORT`` (any python-rtmidi input port)
and ``--virtual-port NAME``, received in the capturing process and stamped on arrival.

Why here and not in the PortAudio process: that process runs one real-time callback that
must get the GIL within a period (host_process.settle), and PortAudio's JACK host API shares
a process badly with another JACK client (portaudio_host.py). So the ports live in the
capturing process, and no Python runs on rtmidi's thread at all: rtmidi queues each message
with its delta time (taken in C when it arrived, before any Python) and a thread here polls
the queues every ``POLL_SECONDS``.

Arrival times. Summing a port's deltas gives each message's arrival ``since`` the port's
first one, on rtmidi's clock. What is unknown is one number, when that first message arrived
on the monotonic clock (``anchor``). Every poll bounds it: a message found by a poll that
returned at ``hi`` arrived at or before ``hi``; one that the previous poll of its port,
begun at ``lo``, did not find arrived after ``lo``. So ``anchor`` lies in
``[lo - since, hi - since]`` for every message, and the intersection over a port's messages
(``Chain``) narrows quickly to the tightest poll, whatever the GIL did to the others. A
message is placed at ``hi_anchor + since`` (never early), with ``hi_anchor - lo_anchor`` as
its uncertainty. An empty intersection (rtmidi's clock drifting from ours, a message dropped
by a full queue breaking the sum) starts a new chain from that message.

A port that vanishes mid-capture (its device unplugged, its program quit) is noticed within
``WATCH_SECONDS``: closed, and named in ``lost``; the capture goes on.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from typing import Any

from sendlearn.errors import MissingExtra, UsageError

POLL_SECONDS = 0.001
WATCH_SECONDS = 0.5
QUEUE_SIZE = 65536  # messages rtmidi holds per port between two polls


def midi_api() -> int:
    """The rtmidi API to use, always explicit (rtmidi would otherwise pick one itself): ALSA
    where its sequencer exists, else JACK (these containers have no ALSA sequencer); on macOS
    and Windows rtmidi's own (CoreMIDI, Windows MM)."""
    import rtmidi

    compiled = rtmidi.get_compiled_api()
    if sys.platform.startswith("linux"):
        if os.path.exists("/dev/snd/seq") and rtmidi.API_LINUX_ALSA in compiled:
            return int(rtmidi.API_LINUX_ALSA)
        if rtmidi.API_UNIX_JACK in compiled:
            return int(rtmidi.API_UNIX_JACK)
    return int(rtmidi.API_UNSPECIFIED)


def _rtmidi() -> Any:
    try:
        import rtmidi
    except ImportError as exc:
        raise MissingExtra("rtmidi", "--midi-in and --virtual-port") from exc
    return rtmidi


def input_ports(api: int) -> list[str]:
    """The names of the MIDI input ports rtmidi sees now."""
    rtmidi = _rtmidi()
    try:
        lister = rtmidi.MidiIn(api, name="sendlearn-list")
    except rtmidi.SystemError:
        return []
    try:
        return list(lister.get_ports())
    finally:
        lister.delete()


def match_port(wanted: str, ports: list[str], flag: str = "--midi-in ") -> str:
    """The port named ``wanted``, or the one port whose name contains it; else a UsageError
    (one line, naming the ports there are)."""
    if wanted in ports:
        return wanted
    found = [port for port in ports if wanted.lower() in port.lower()]
    if len(found) == 1:
        return found[0]
    there = "; ".join(ports) if ports else "none"
    what = f"{len(found)} MIDI input ports match" if found else "no MIDI input port matches"
    raise UsageError(f"{flag}{wanted!r}: {what}; MIDI input ports: {there}")


class Chain:
    """One port's anchor (the monotonic time its chain's first message arrived), bounded."""

    def __init__(self) -> None:
        self.lo, self.hi = -math.inf, math.inf

    def narrow(self, lo: float, hi: float) -> bool:
        """Intersect with [lo, hi]; False (and unchanged) if nothing is left."""
        lo, hi = max(self.lo, lo), min(self.hi, hi)
        if lo > hi:
            return False
        self.lo, self.hi = lo, hi
        return True


class Stamped:
    """A message and where it arrived: ``since`` ns after its chain's anchor (an ``Arrival``)."""

    __slots__ = ("chain", "data", "since")

    def __init__(self, data: bytes, chain: Chain, since: int) -> None:
        self.data, self.chain, self.since = data, chain, since

    def ns(self) -> float:
        return self.chain.hi + self.since

    def uncertainty_ns(self) -> float:
        return self.chain.hi - self.chain.lo


class _Port:
    def __init__(self, midi: Any, name: str, virtual: bool, opened_ns: int, clock: bool = False) -> None:
        self.midi, self.name, self.virtual, self.clock = midi, name, virtual, clock
        self.empty_ns = opened_ns  # nothing can have arrived before the port was opened
        self.chain: Chain | None = None
        self.since = 0
        self.received = 0


class MidiInputs:
    """The ports named on the command line (matched by ``match_port``) and a virtual one,
    polled by a thread of their own. ``take()`` hands over what arrived; ``swept_ns`` is the
    start of the last poll that emptied every queue (everything that arrived before it has
    been taken or is waiting in ``take``)."""

    def __init__(self, wanted: list[str], virtual: str | None = None, *, clock: str | None = None,
                 client: str = "sendlearn") -> None:
        rtmidi = _rtmidi()
        self.api = midi_api()
        there = input_ports(self.api) if wanted or clock else []
        names = [match_port(name, there) for name in wanted]
        # the clock port's messages set the playhead (midi_clock.py); they are taken apart
        self.clock_port = None if clock is None else match_port(clock, there, "--clock midi:")
        self.ports: list[_Port] = []
        self._closed = False
        self.lost: list[str] = []  # ports that vanished mid-capture
        self._arrived: deque[Stamped] = deque()
        self._clocked: deque[Stamped] = deque()
        self.swept_ns = 0
        self._stop = threading.Event()
        try:
            for index, name in enumerate([*names, *([self.clock_port] if self.clock_port else [])]):
                midi = rtmidi.MidiIn(self.api, name=f"{client}-in{index + 1}", queue_size_limit=QUEUE_SIZE)
                midi.ignore_types(sysex=False, timing=False, active_sense=False)  # keep everything
                opened = time.perf_counter_ns()
                midi.open_port(there.index(name), name="in")
                self.ports.append(_Port(midi, name, False, opened, clock=index == len(names)))
            if virtual is not None:
                midi = rtmidi.MidiIn(self.api, name=f"{client}-{virtual}", queue_size_limit=QUEUE_SIZE)
                midi.ignore_types(sysex=False, timing=False, active_sense=False)
                opened = time.perf_counter_ns()
                try:
                    midi.open_virtual_port(virtual)
                except (rtmidi.InvalidUseError, rtmidi.SystemError, NotImplementedError) as exc:
                    midi.delete()
                    raise UsageError(f"--virtual-port {virtual!r}: {exc} (this MIDI system has no virtual ports)") \
                        from None
                self.ports.append(_Port(midi, virtual, True, opened))
        except rtmidi.RtMidiError as exc:  # no MIDI system to open, a port gone since it was listed
            self._close_ports()
            raise UsageError(f"MIDI input: {exc}") from None
        except BaseException:
            self._close_ports()
            raise
        self._lister = self.ports[0].midi if self.ports else None
        self._thread = threading.Thread(target=self._run, name="sendlearn-midi-in", daemon=True)
        self._thread.start()

    @property
    def names(self) -> list[str]:
        """The event ports (not the clock's)."""
        return [port.name for port in self.ports if not port.clock]

    @property
    def api_name(self) -> str:
        return str(_rtmidi().get_api_name(self.api))

    @property
    def received(self) -> int:
        return sum(port.received for port in self.ports if not port.clock)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Messages collected and not yet taken."""
        return len(self._arrived)

    def take(self, clock: bool = False) -> list[Stamped]:
        """What arrived since the last call at the event ports (the ``clock`` port), in the
        order polled."""
        arrived = self._clocked if clock else self._arrived
        out = []
        while arrived:
            out.append(arrived.popleft())
        return out

    def _run(self) -> None:
        watched = time.monotonic()
        while not self._stop.is_set():
            start = time.perf_counter_ns()
            for port in self.ports:
                if port.name not in self.lost:
                    self._poll(port)
            self.swept_ns = start
            if time.monotonic() - watched >= WATCH_SECONDS:
                watched = time.monotonic()
                self._watch()
            time.sleep(POLL_SECONDS)

    def _poll(self, port: _Port) -> None:
        while True:
            before = time.perf_counter_ns()
            got = port.midi.get_message()
            after = time.perf_counter_ns()
            if got is None:
                port.empty_ns = before
                return
            message, delta = got
            since = port.since + round(delta * 1e9)
            chain = port.chain
            if chain is None or not chain.narrow(port.empty_ns - since, after - since):
                chain, since = Chain(), 0  # a new chain, anchored on this message
                chain.narrow(port.empty_ns, after)
                port.chain = chain
            port.since = since
            port.received += 1
            (self._clocked if port.clock else self._arrived).append(Stamped(bytes(message), chain, since))

    def _watch(self) -> None:
        """Close ports whose source went away (named ports only: a virtual one is ours)."""
        if self._lister is None:
            return
        try:
            there = set(self._lister.get_ports())
        except Exception:  # noqa: BLE001 (a MIDI system gone: every named port is lost)
            there = set()
        for port in self.ports:
            if not port.virtual and port.name not in self.lost and port.name not in there:
                self.lost.append(port.name)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._close_ports()

    def _close_ports(self) -> None:
        if self._closed:
            return
        self._closed = True
        for port in self.ports:
            try:
                port.midi.close_port()
            finally:
                port.midi.delete()
