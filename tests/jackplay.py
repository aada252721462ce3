"""JACK clients the live tests play with: a player that is also a timebase master, a monitor,
a hog that forces xruns. Real clients on a real ``jackd -d dummy`` (the ``jack_server``
fixture in conftest.py), written for the tests and independent of the bridge's code."""

from __future__ import annotations

import bisect
import threading
import time

import jack
import numpy as np

from sendlearn.plugin.live.runner import DummyServer

RATE, PERIOD = 48000, 128
TICKS = 960.0


def noise(start: int, frames: int, channel: int) -> np.ndarray:
    """Deterministic noise, a function of the absolute JACK frame only (exact in float32)."""
    n = np.arange(start, start + frames, dtype=np.uint64) + np.uint64(channel << 40)
    n = (n ^ (n >> np.uint64(17))) * np.uint64(0xED5AD4BB)
    n = (n ^ (n >> np.uint64(11))) * np.uint64(0xAC4C1B51)
    n = n ^ (n >> np.uint64(15))
    return ((n & np.uint64(0xFFFFFF)).astype(np.float32) - 8388608.0) / np.float32(8388608.0)


class Master:
    """A timebase master's own arithmetic: ``beat_rate`` beats of 1/den per minute, and what
    it publishes as ``beats_per_minute``: that rate (JACK's definition, ``quarter_notes=False``)
    or quarter notes per minute (as Ardour 7 does, ``quarter_notes=True``)."""

    def __init__(self, beat_rate: float = 137.0, meter: tuple[int, int] = (7, 8), quarter_notes: bool = False):
        self.beat_rate, self.meter, self.quarter_notes = beat_rate, meter, quarter_notes

    @property
    def published_bpm(self) -> float:
        return self.beat_rate * 4 / self.meter[1] if self.quarter_notes else self.beat_rate

    @property
    def quarter_bpm(self) -> float:
        """The tempo the dataset must hold, whoever published it."""
        return self.beat_rate * 4 / self.meter[1]

    def bbt(self, frame: int) -> tuple[int, int, int]:
        ticks = round(frame * self.beat_rate * TICKS / (60.0 * RATE))
        beat_index, tick = divmod(ticks, int(TICKS))
        bar, beat = divmod(beat_index, self.meter[0])
        return bar + 1, beat + 1, tick


class Player:
    """Plays noise and scheduled MIDI, and is the timebase master (``master``)."""

    def __init__(self, server: DummyServer, channels: int, master: Master | None = None,
                 name: str = "player") -> None:
        self.master = master or Master()
        self.client = jack.Client(name, no_start_server=True, servername=server.name)
        self.outs = [self.client.outports.register(f"out_{i + 1}") for i in range(channels)]
        self.midi = self.client.midi_outports.register("midi_out")
        self.schedule: list[tuple[int, bytes]] = []  # (absolute frame, message), sorted
        self.sent: list[tuple[int, bytes]] = []
        # cycles the player's callback ran in: on a loaded machine a Python client can miss one
        # (JACK then outputs silence for it), which is the test harness, not the bridge, failing
        self.played: set[int] = set()
        # cycles whose frame time JACK reported more than once, or in which the player ran
        # past its period: around those, which cycle the bridge read the player's output in is
        # ambiguous on the test's own clock (the player is late, or two cycles share a frame)
        self.unclear: set[int] = set()
        self.published: set[int] = set()  # transport frames our timebase callback filled in
        self._next = 0
        self.client.set_process_callback(self._process)
        assert self.client.set_timebase_callback(self._timebase)

    def play(self, events: list[tuple[int, bytes]]) -> None:
        self._next, self.schedule = 0, sorted(events, key=lambda e: e[0])

    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        if start in self.played or self.client.frames_since_cycle_start >= frames:
            self.unclear.add(start)
        self.played.add(start)
        for channel, port in enumerate(self.outs):
            port.get_array()[:] = noise(start, frames, channel)
        self.midi.clear_buffer()
        schedule = self.schedule
        while self._next < len(schedule) and schedule[self._next][0] < start + frames:
            frame, data = schedule[self._next]
            self._next += 1
            if frame >= start:  # one in the past (a cycle we missed) is simply not sent
                self.midi.write_midi_event(frame - start, data)
                self.sent.append((frame, data))
        # we overran (a new cycle began while we ran, or ours is past its period): the bridge may
        # have read this cycle's buffers before us, or between our audio and our MIDI
        if self.client.last_frame_time != start or self.client.frames_since_cycle_start >= frames:
            self.unclear.add(start)

    def clear(self, frame: int) -> bool:
        """Whether the cycle holding ``frame`` and its neighbours ran plainly (see ``unclear``)."""
        cycles = sorted(self.played)
        index = bisect.bisect_right(cycles, frame) - 1
        if index < 0 or frame >= cycles[index] + PERIOD:
            return False  # the player did not run in that cycle
        return not set(cycles[max(0, index - 1):index + 2]) & self.unclear

    def _timebase(self, state: int, blocksize: int, pos: jack.Position, new_pos: bool) -> None:
        m = self.master
        self.published.add(pos.frame)  # a late callback leaves JACK holding an older position
        bar, beat, tick = m.bbt(pos.frame)
        pos.bar, pos.beat, pos.tick = bar, beat, tick
        pos.bar_start_tick = (bar - 1) * m.meter[0] * TICKS
        pos.beats_per_bar, pos.beat_type = float(m.meter[0]), float(m.meter[1])
        pos.ticks_per_beat, pos.beats_per_minute = TICKS, m.published_bpm
        pos.valid = jack.POSITION_BBT


class Monitor:
    """Records whatever reaches its inputs, with the JACK frame of each cycle."""

    def __init__(self, server: DummyServer, channels: int) -> None:
        self.client = jack.Client("monitor", no_start_server=True, servername=server.name)
        self.ins = [self.client.inports.register(f"in_{i + 1}") for i in range(channels)]
        self.cycles: list[tuple[int, np.ndarray]] = []
        self.recording = False
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        if self.recording:
            self.cycles.append((self.client.last_frame_time, np.stack([p.get_array() for p in self.ins])))


class Hog:
    """A client that sleeps ``stall`` seconds in its callback every ``every`` cycles while
    ``on``: in a synchronous server the whole graph waits for it, so the server xruns."""

    def __init__(self, server: DummyServer, every: int = 8, stall: float = 0.006) -> None:
        self.client = jack.Client("hog", no_start_server=True, servername=server.name)
        self.every, self.stall = every, stall
        self.on = threading.Event()
        self.xruns = 0
        self._cycles = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _process(self, frames: int) -> None:
        self._cycles += 1
        if self.on.is_set() and self._cycles % self.every == 0:
            time.sleep(self.stall)

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1


def engine_now(client: jack.Client) -> int:
    """Now, on the cycles' timeline: the current cycle's first frame plus the frames since it
    began (the clock the virtual port stamps with). Read twice so a cycle turning between the
    two reads is not mixed in."""
    while True:
        cycle = client.last_frame_time
        since = client.frames_since_cycle_start
        if client.last_frame_time == cycle:
            return cycle + since


def frame_of(origins: list[tuple[int, int]], sample: int) -> int:
    """The JACK frame at which stream sample ``sample`` was recorded, across clock jumps."""
    start, at = max((o for o in origins if o[0] <= sample), key=lambda o: o[0])
    return (at + sample) & 0xFFFFFFFF


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
