"""The live bridge beside a running DAW: a JACK process that only copies, and this side,
which captures.

    with JackBridge(open_stream, name="sendlearn", audio_ports=2, connect=[("ardour:out", "in_1")]) as bridge:
        ...  # blocks flow into the processor that open_stream returned

``JackBridge`` starts the JACK client in a process of its own (plugin/live/jack_host.py), whose
callback copies every period into a shared-memory ring and returns, and reads the ring here
on a thread: each period becomes one ``CaptureProcessor.process`` call with the period's
audio, its JACK MIDI events (exact frames, ``timing_error`` None), the virtual port's
messages (estimated, with their bound) and the transport as a ``Playhead`` (tempo in
quarter notes: plugin/live/tempo.py). So the sink (the store or the link) and the panel can live in this
process without ever taking the GIL from the audio callback.

A period is captured once the next one is in the ring: rtmidi's virtual port delivers its
messages from its own JACK client, which may run after ours in the same cycle, and waiting
lets those messages join the block of the cycle they were delivered in.

Freewheel (a DAW exporting faster than real time): the JACK process then waits for room in
the ring instead of dropping, and this side hands the freewheeling periods' blocks off the
offline way (``put``, waiting for the sink) instead of dropping them, so an export loses
nothing; the stream records its freewheeling spans (``freewheel_figures``). The clock and the
playhead follow JACK's frames as in real time: a freewheeling cycle is a period like any other.

Timeline: the JACK frame time of a block's first frame minus the block's stream sample is
``frame_origin``, and it stays constant: cycles that ran without our callback (an xrun, a
stalled graph) become a gap in the stream rather than being spliced out, so the stream keeps
JACK's clock (``frame_jumps`` counts them). Only when JACK's clock goes back, or leaps by more
than a minute, does a new stretch start (``frame_origins``). Frame times are 32-bit and wrap
after 2**32 frames (~24.8 h at 48 kHz).
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from sendlearn.capture import MidiEvent, Playhead, StreamInfo
from sendlearn.capture.tempo import DENOMINATOR
from sendlearn.errors import SendLearnError, UsageError
from sendlearn.plugin.live.arrival_clock import StreamClock
from sendlearn.plugin.live.ring import Control, Float, Int, Layout, RunState, SharedRings
from sendlearn.plugin.live.tempo import Meter, PlayheadReader, Transport
from sendlearn.plugin.live.virtual_port import FRAME_MASK, VirtualEvents, wrap_delta
from sendlearn.plugin.processor import CaptureProcessor, MidiInput, OpenStream

if TYPE_CHECKING:  # JACK-Client only where JACK is used: a PortAudio capture runs without libjack
    import jack

    from sendlearn.plugin.live.link_clock import LinkClock

MAX_SPANS = 1000  # freewheel spans a stream's figures list; more are counted
MAX_HOLE_SECONDS = 60  # a longer leap of JACK's clock (a suspended machine) starts a new stretch
POLL_SECONDS = 0.002  # the reader's nap when the ring is empty (a 128-frame period is 2.7 ms)


class BridgeError(SendLearnError):
    """The JACK process could not start (no server, a port that does not exist, …) or died."""


class JackBridge:
    """``audio_ports`` JACK inputs passed through to as many outputs, one JACK MIDI input and
    optionally a virtual MIDI input (``virtual_port`` names it), captured into the
    ``CaptureProcessor`` that ``open_stream`` returns for the server's rate and period.

    Running once constructed. ``connect`` pairs a source port with ours (``"in_1"``,
    ``"midi_in"``, or a full name). ``close()`` (or leaving the ``with``) stops the JACK
    process, captures every period it wrote and closes the processor, so whoever drains
    its hand-off sees it finish. ``bpm`` is in quarter notes per minute.
    """

    HOST = "jack"  # StreamInfo.host, and how errors name the audio process

    def __init__(
        self,
        open_stream: OpenStream | None = None,
        *,
        name: str = "sendlearn",
        audio_ports: int = 2,
        session: str = "live",
        stream: str = "jack",
        track: str = "",
        bpm: float = 120.0,
        meter: tuple[int, int] = (4, 4),
        timebase_master: bool = False,
        virtual_port: str | None = None,
        servername: str | None = None,
        connect: list[tuple[str, str]] | None = None,
        link: bool = False,
        quantum: float | None = None,
    ) -> None:
        if audio_ports < 1:
            raise ValueError(f"audio_ports must be >= 1, got {audio_ports}")
        config = {"name": name, "audio_ports": audio_ports, "servername": servername, "virtual_port": virtual_port,
                  "timebase_master": timebase_master, "bpm": bpm, "meter": list(meter),
                  "connect": [list(pair) for pair in connect or []]}
        self._servername = servername
        self._join_link(link, bpm, meter, quantum)
        try:
            self._launch("sendlearn.plugin.live.jack_host", config, open_stream, session, stream, track, bpm, meter)
        except BaseException:
            self._leave_link()
            raise

    def _join_link(self, link: bool, bpm: float, meter: tuple[int, int], quantum: float | None) -> None:
        """``link``: the playhead from Ableton Link at ``quantum`` beats, not the JACK transport
        (plugin/live/link_clock.py), at the moment each block's first frame was captured."""
        self.link: LinkClock | None = None
        if link:
            from sendlearn.plugin.live.link_clock import LinkClock

            self.link = LinkClock(bpm, meter, quantum)

    def _leave_link(self) -> None:
        if self.link is not None:
            self.link.close()

    def _launch(self, module: str, config: dict[str, Any], open_stream: OpenStream | None, session: str,
                stream: str, track: str, bpm: float, meter: tuple[int, int]) -> None:
        """Start the audio process ``module`` with ``config`` and capture what it writes."""
        self._watch: jack.Client | None = None
        self._child = subprocess.Popen([sys.executable, "-m", module, json.dumps(config)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._closed = False
        try:
            self._setup(self._ready(), open_stream, session, stream, track, bpm, Meter(*meter))
        except BaseException:
            self._stop_child()
            self._close_watch()
            raise

    def _ready(self) -> dict[str, Any]:
        assert self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            self._child.wait(10)
            raise BridgeError(f"the {self.HOST} process exited with {self._child.returncode} before it was ready")
        ready = json.loads(line)
        if "error" in ready:
            raise (UsageError if ready.get("usage") else BridgeError)(ready["error"])
        return ready

    def _setup(self, ready: dict[str, Any], open_stream: OpenStream | None, session: str, stream: str,
               track: str, bpm: float, meter: Meter) -> None:
        self.ready = ready
        self.rings = SharedRings.attach(ready["ring"], Layout(len(ready["inputs"]), ready["max_frames"],
                                                                ready["slots"]))
        self.rings.unlink()  # both processes hold it now: nothing to leave behind, even after a SIGKILL
        rate = ready["sample_rate"]
        self.info = StreamInfo(session, stream, rate, len(ready["inputs"]), ready["block_size"],
                               track=track, host=self.HOST)
        self.processor = (open_stream or _default_stream)(self.info)
        if not self.processor.realtime:
            raise ValueError("a live stream needs a realtime processor: it must never wait")
        self.timebase_master: bool = ready["timebase_master"]
        # as the timebase master we publish JACK's definition ourselves: nothing to measure
        self.playheads = PlayheadReader(rate, bpm, meter, own_unit=DENOMINATOR if self.timebase_master else None)
        # with Link: when each block's first frame was, from the earliest callback of the last quarter
        # second (callbacks are late, never early); it follows a device clock drifting from the
        # monotonic one (jackd -d dummy ran 0.28 % slow: the earliest block since the start put
        # beats 10 ms off in 4 s) and one that lost time (the dummy server on a loaded machine)
        self.link_clock = StreamClock(rate, max(1, rate // ready["block_size"] // 4))
        self.virtual = (VirtualEvents(self.rings, ready["block_size"], ready["margin"])
                        if ready["virtual_port"] else None)
        self._origin: int | None = None
        self._origins: list[tuple[int, int]] = []
        self._jumps = 0
        self.midi_events = 0  # JACK MIDI events captured
        self.missed_frames = 0  # JACK frames no callback of ours captured (gaps in the stream)
        self.capture_errors = 0
        self.freewheel_periods = 0  # periods captured while JACK freewheeled
        self.freewheel_spans: list[list[int]] = []  # [[first sample, end sample), ...] of those
        self.last_error: str | None = None
        self.closing: dict[str, Any] = {}
        self._watch = self._watch_xruns(ready["client"])
        self._reader = threading.Thread(target=self._read, name="sendlearn-capture", daemon=True)
        self._reader.start()

    def _watch_xruns(self, name: str) -> jack.Client | None:
        """Xruns are counted here, by a client of our own with no process callback (so not in
        JACK's graph), never in the JACK process: Python on its notification thread would hold
        the GIL just when the audio callback is already late (plugin/live/jack_host.py)."""
        import jack

        try:
            watch = jack.Client(f"{name}-watch"[:60], no_start_server=True, servername=self._servername)
        except jack.JackError:
            return None  # the capture goes on; xruns are then not counted
        control = self.rings.control
        watch.set_xrun_callback(lambda delayed_usecs: control.__setitem__(Control.XRUNS, control[Control.XRUNS] + 1))
        watch.activate()
        return watch

    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    # -- the capturing thread ----------------------------------------------------------

    def _read(self) -> None:
        rings, tail = self.rings, 0
        try:
            while True:
                stopped = rings.count(Control.STATE) == RunState.STOPPED or self._child.poll() is not None
                head = rings.count(Control.HEAD)  # read after the state: final once stopped
                last = head if stopped else head - 1  # a period waits for the next (module docstring)
                while tail < last and (stopped or self._may_capture(tail)):
                    self._capture(tail, tail + 1 < head)
                    tail += 1
                    rings.control[Control.TAIL] = tail
                if stopped:
                    if rings.count(Control.DROPPED_AT_END):
                        self.processor.skip(rings.count(Control.DROPPED_AT_END),
                                            rings.count(Control.DROPPED_FRAMES_AT_END))
                    if self.virtual is not None:
                        self.virtual.finish()
                    return
                time.sleep(POLL_SECONDS)
        finally:
            self.processor.close()

    def _capture(self, index: int, has_following: bool) -> None:
        periods = self.rings.periods
        slots = self.rings.layout.slots
        record = periods[index % slots]
        ints = record["ints"].tolist()
        try:
            if ints[Int.DROPPED_BEFORE]:
                self.processor.skip(ints[Int.DROPPED_BEFORE], ints[Int.DROPPED_FRAMES_BEFORE])
            frames, cycle, count = ints[Int.FRAMES], ints[Int.CYCLE], ints[Int.EVENTS]
            jump = self._follow_clock(cycle)
            midi: list[MidiInput] = []
            offsets, lengths, data = record["event_offset"], record["event_length"], record["event_data"]
            used = 0
            for offset, size in zip(offsets[:count].tolist(), lengths[:count].tolist(), strict=True):
                midi.append((offset, data[used:used + size].tobytes()))
                used += size
            self.midi_events += count
            following = periods[(index + 1) % slots] if has_following else None
            midi += self._estimated_midi(ints, following, jump)
            if self.link is not None:
                self.link_clock.block(self.processor.position, ints[Int.ENTRY_NS], ints[Int.ADC_LAG_NS])
            playhead = self._playhead(record, frames)
            if ints[Int.FREEWHEEL]:
                self._freewheel(record["audio"][:, :frames], midi, playhead)
            else:
                self.processor.process(record["audio"][:, :frames], midi, playhead)
        except Exception as exc:  # one bad period must not end the capture
            self.capture_errors += 1
            self.last_error = repr(exc)

    def _playhead(self, record: np.void, frames: int) -> Playhead:
        """The playhead at this period's first frame: Link's, JACK's transport, or ``--bpm``/``--meter``."""
        if self.link is not None:
            return self.link.playhead(self.link_clock.ns_at(self.processor.position))
        return self.playheads.read(transport(record), self.processor.position, frames)

    def _may_capture(self, index: int) -> bool:
        """Whether period ``index`` (the next, whose following one is in the ring) may be
        captured now; ``PortAudioBridge`` waits for its MIDI to be collected."""
        return True

    def _estimated_midi(self, ints: list[int], following: np.void | None, jump: int) -> list[MidiEvent]:
        """The virtual port's messages for this period, placed with their bounds."""
        if self.virtual is None:
            return []
        frames = ints[Int.FRAMES]
        length = frames if following is None else \
            (int(following["ints"][Int.ENTRY_NS]) - ints[Int.ENTRY_NS]) * self.info.sample_rate // 10**9
        return self.virtual.take(ints[Int.CYCLE], length, jump)

    def _freewheel(self, audio: np.ndarray, midi: list[MidiInput], playhead: Playhead) -> None:
        """A freewheeling period: no deadline, so its block waits for room in the hand-off
        (the processor's offline way) rather than being dropped, and its span is recorded."""
        processor = self.processor
        start = processor.position
        processor.realtime = False
        try:
            processor.process(audio, midi, playhead)
        finally:
            processor.realtime = True
        self.freewheel_periods += 1
        spans = self.freewheel_spans
        if spans and spans[-1][1] == start:
            spans[-1][1] = processor.position
        else:
            spans.append([start, processor.position])

    def _follow_clock(self, cycle: int) -> int:
        """Keep the stream on JACK's clock; return the frames it skipped before this block.

        When JACK's frame time moved on further than our blocks (cycles no callback of ours
        ran in: an xrun, a stalled graph), those frames become a gap of dropped seqs, so sample
        n of the stream stays frame ``frame_origin + n`` and the receiver records the hole.
        Only a clock that went back (JACK reporting a cycle's frame twice) or leapt further
        than ``MAX_HOLE_SECONDS`` starts a new stretch (``frame_origins``) instead."""
        origin = (cycle - self.processor.position) & FRAME_MASK
        if origin == self._origin:
            return 0
        if self._origin is None:
            self._origin = origin
            self._origins.append((self.processor.position, origin))
            return 0
        self._jumps += 1
        ahead = wrap_delta(origin, self._origin)
        if 0 < ahead <= MAX_HOLE_SECONDS * self.info.sample_rate:
            self.processor.skip(-(-ahead // self.info.block_size), ahead)
            self.missed_frames += ahead
            return ahead
        self._origin = origin
        self._origins.append((self.processor.position, origin))
        return abs(ahead)

    # -- control -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the JACK process, capture what it wrote, close the processor."""
        if self._closed:
            return
        self._closed = True
        self._stop_child()
        self._reader.join()
        self._close_watch()
        self._leave_link()

    def _stop_child(self) -> None:
        child = self._child
        try:
            if child.poll() is None and child.stdin is not None:
                child.stdin.write("stop\n")
                child.stdin.flush()
                child.stdin.close()
            if child.stdout is not None:
                line = child.stdout.readline()
                if line:
                    self.closing = json.loads(line)
                    if "error" in self.closing:
                        self.last_error = self.closing["error"]
            child.wait(30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            child.kill()
            child.wait(10)

    def __enter__(self) -> JackBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it saw -------------------------------------------------------------------

    def freewheel_figures(self) -> dict[str, Any]:
        """The freewheel facts a stream closes with (BYE stats, so stream.json's ``sender``)."""
        return {
            "freewheel_periods": self.freewheel_periods,
            "freewheel_spans": [list(span) for span in self.freewheel_spans[:MAX_SPANS]],
            "freewheel_spans_left_out": max(0, len(self.freewheel_spans) - MAX_SPANS),
            "freewheel_waits": self.count(Control.FREEWHEEL_WAITS),
        }

    @property
    def client_name(self) -> str:
        return self.ready["client"]

    @property
    def inputs(self) -> list[str]:
        """Full names of the audio input ports, in channel order."""
        return list(self.ready["inputs"])

    @property
    def outputs(self) -> list[str]:
        return list(self.ready["outputs"])

    @property
    def midi_input(self) -> str:
        return self.ready["midi_input"]

    @property
    def virtual_port_name(self) -> str | None:
        return self.ready["virtual_port"]

    @property
    def pid(self) -> int:
        """The JACK process."""
        return self._child.pid

    def count(self, counter: Control) -> int:
        return self.rings.count(counter)

    @property
    def xruns(self) -> int:
        """Xruns the JACK server reported while we were active (ours or anyone's)."""
        return self.count(Control.XRUNS)

    @property
    def cycles(self) -> int:
        return self.count(Control.CYCLES)

    def callback_times_ns(self) -> np.ndarray:
        """Durations of the latest process callbacks (up to 65536), oldest first."""
        return self.rings.callback_times_ns()

    @property
    def frame_origin(self) -> int | None:
        """JACK frame time of stream sample 0 (mod 2**32), as of the last captured block."""
        return self._origin

    @property
    def frame_origins(self) -> list[tuple[int, int]]:
        """(first stream sample, frame_origin) for each stretch between frame-time jumps."""
        return list(self._origins)

    @property
    def frame_jumps(self) -> int:
        """Times JACK's frame time did not follow on from our last block (missed cycles, or a
        clock that went back)."""
        return self._jumps

    def jack_frame(self, sample: int) -> int:
        """The JACK frame time (mod 2**32) at which stream sample ``sample`` was recorded."""
        index = bisect.bisect_right(self._origins, (sample, FRAME_MASK + 1)) - 1
        if index < 0:
            raise ValueError(f"sample {sample} comes before the first captured block")
        return (self._origins[index][1] + sample) & FRAME_MASK


def transport(record: np.void) -> Transport:
    """The raw transport fields of a period record."""
    ints, floats = record["ints"], record["floats"]
    return Transport(int(ints[Int.STATE]), int(ints[Int.VALID]), int(ints[Int.FRAME]), int(ints[Int.BAR]),
                     int(ints[Int.BEAT]), int(ints[Int.TICK]), float(floats[Float.BEATS_PER_BAR]),
                     float(floats[Float.BEAT_TYPE]), float(floats[Float.TICKS_PER_BEAT]), float(floats[Float.BPM]))


def _default_stream(info: StreamInfo) -> CaptureProcessor:
    return CaptureProcessor.for_stream(info, realtime=True)
