"""The live bridge: a JACK client that passes audio through and captures it, sample-exact.

    with JackBridge(open_stream, name="sendlearn", audio_ports=2) as bridge:
        bridge.client.connect("ardour:Master/audio_out 1", bridge.inputs[0])
        ...

Every period the process callback copies each input port to its output port bit-for-bit
(the audio path), then records the period: audio, the JACK MIDI port's events at their
exact in-period frames (error 0, ``timing_error`` None) and the transport as a ``Playhead``.

Capture runs one period behind the audio. The block recorded during cycle ``k`` reaches
``CaptureProcessor.process`` in cycle ``k+1``: rtmidi's virtual port (virtual_port.py)
delivers its messages from its own JACK client, which may run after ours in the same cycle,
and the delay lets those messages join the block of the cycle they were delivered in rather
than the next one. The output ports are not delayed; only the dataset sees the period later.

Timeline: the JACK frame time (``last_frame_time``) of a block's first frame minus the
block's stream sample is ``frame_origin``. It is constant while JACK runs without skipping
cycles; when it changes (an xrun skipped time) ``frame_jumps`` counts it. Frame times are
32-bit and wrap after 2**32 frames (~24.8 h at 48 kHz): differences are taken modulo 2**32.

The callback does no I/O and takes no lock. What it still allocates is what Python and
JACK-Client make it: the port arrays JACK-Client wraps each cycle (JACK may move port
buffers between cycles, so they cannot be cached), one ``bytes`` per MIDI event, and the
block ``process`` builds. The (channels, frames) capture buffers are preallocated.
"""

from __future__ import annotations

import bisect
import gc
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jack
import numpy as np

from sendlearn.capture import CaptureError, Playhead, StreamInfo

from .processor import CaptureProcessor, MidiInput
from .virtual_port import VirtualPort

OpenStream = Callable[[StreamInfo], CaptureProcessor]

FRAME_MASK = 0xFFFFFFFF  # jack_nframes_t is uint32
TICKS_PER_BEAT = 1920.0  # what we publish when we are the timebase master
SWITCH_INTERVAL = 0.0005  # seconds: see _make_room_for_the_audio_thread
TIMING_SLOTS = 1 << 16  # callback durations kept for benchmarks (a ring, newest overwrite oldest)


class Meter(NamedTuple):
    """A time signature: ``num`` beats of 1/``den`` notes per bar."""

    num: int
    den: int


class _Pending(NamedTuple):
    """A period recorded in this cycle, captured in the next (see the module docstring)."""

    cycle: int  # JACK frame time of its first frame
    audio: np.ndarray
    midi: list[tuple[int, bytes]]  # checked by process(): a malformed event is rejected alone
    playhead: Playhead


def wrap_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit JACK frame times, as a signed number."""
    d = (a - b) & FRAME_MASK
    return d - (1 << 32) if d >= 1 << 31 else d


def manual_bbt(frame: int, rate: int, bpm: float, meter: Meter) -> tuple[int, int, float]:
    """(bar, beat, tick) at ``frame`` for a constant tempo and meter from frame 0, JACK style:
    bar and beat 1-based, beats of 1/den notes, ``bpm`` counting those beats."""
    beats = frame / rate * bpm / 60.0
    whole = int(beats)
    bar, beat = divmod(whole, meter.num)
    return bar + 1, beat + 1, (beats - whole) * TICKS_PER_BEAT


class TransportReader:
    """Turns JACK's transport into a ``Playhead`` for the period being processed.

    With a timebase master publishing BBT (``valid & POSITION_BBT``), bar, beat, tempo and
    meter are the master's. Without one, JACK gives only the frame, and tempo and meter come
    from ``bpm``/``meter`` (a constant tempo from transport frame 0). ``ppq`` counts quarter
    notes from bar 1 assuming the meter has not changed since (JACK gives no absolute beat
    count). ``bpm`` is passed on as JACK defines it: beats of the meter's denominator.
    Call ``read`` only from the process thread: JACK-Client reuses one position struct.
    """

    def __init__(self, client: jack.Client, bpm: float, meter: Meter) -> None:
        self._client = client
        self._rate = client.samplerate
        self.bpm = float(bpm)
        self.meter = meter
        self._last: Playhead | None = None
        self._key: tuple = ()
        self.invalid = 0  # positions from a master that did not make a valid Playhead

    def read(self) -> Playhead:
        state, pos = self._client.transport_query_struct()
        key = (state, pos.frame, pos.valid, pos.beats_per_minute, pos.beats_per_bar, pos.beat_type)
        if key == self._key and self._last is not None:
            return self._last  # stopped and unmoved: no new object on the audio thread
        playing = state == jack.ROLLING
        playhead = None
        if pos.valid & jack.POSITION_BBT:
            playhead = self._from_bbt(pos, playing)
        if playhead is None:
            playhead = self._manual(pos.frame, playing)
        self._last, self._key = playhead, key
        return playhead

    def _from_bbt(self, pos: Any, playing: bool) -> Playhead | None:
        try:
            num, den = int(round(pos.beats_per_bar)), int(round(pos.beat_type))
            beat = pos.beat + pos.tick / pos.ticks_per_beat
            beats = (pos.bar - 1) * pos.beats_per_bar + (beat - 1.0)
            return Playhead(
                seconds=pos.frame / self._rate, ppq=beats * 4.0 / den, bpm=float(pos.beats_per_minute),
                ts_num=num, ts_den=den, bar=int(pos.bar), beat=float(beat), playing=playing,
            )
        except (CaptureError, ZeroDivisionError, ValueError, OverflowError):
            self.invalid += 1  # a master publishing nonsense must not stop the audio
            return None

    def _manual(self, frame: int, playing: bool) -> Playhead:
        bar, beat, tick = manual_bbt(frame, self._rate, self.bpm, self.meter)
        beats = (bar - 1) * self.meter.num + (beat - 1) + tick / TICKS_PER_BEAT
        return Playhead(
            seconds=frame / self._rate, ppq=beats * 4.0 / self.meter.den, bpm=self.bpm,
            ts_num=self.meter.num, ts_den=self.meter.den, bar=bar, beat=beat + tick / TICKS_PER_BEAT,
            playing=playing,
        )

    def publish(self, state: int, blocksize: int, pos: Any, new_pos: bool) -> None:
        """Timebase callback: fill ``pos`` (the next cycle's) with our tempo and meter."""
        bar, beat, tick = manual_bbt(pos.frame, self._rate, self.bpm, self.meter)
        pos.bar, pos.beat, pos.tick = bar, beat, int(tick)
        pos.bar_start_tick = (bar - 1) * self.meter.num * TICKS_PER_BEAT
        pos.beats_per_bar, pos.beat_type = float(self.meter.num), float(self.meter.den)
        pos.ticks_per_beat, pos.beats_per_minute = TICKS_PER_BEAT, self.bpm
        pos.valid = pos.valid | jack.POSITION_BBT


class JackBridge:
    """A JACK client: ``audio_ports`` inputs passed through to as many outputs, one JACK MIDI
    input, optionally a python-rtmidi virtual input (``virtual_port`` names it), all captured
    into the ``CaptureProcessor`` that ``open_stream`` returns for the server's rate and period.

    The client is active once constructed; connect ports with ``client.connect``. Use as a
    context manager, or call ``close()``, which deactivates the client, captures the last
    period and closes the processor (so whoever drains its hand-off sees it finish).
    """

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
    ) -> None:
        if audio_ports < 1:
            raise ValueError(f"audio_ports must be >= 1, got {audio_ports}")
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        self._closed = False
        try:
            self._setup(open_stream, audio_ports, session, stream, track, bpm, Meter(*meter),
                        timebase_master, virtual_port)
        except BaseException:
            self.client.close()
            if hasattr(self, "processor"):
                self.processor.close()
            raise

    def _setup(self, open_stream: OpenStream | None, audio_ports: int, session: str, stream: str,
               track: str, bpm: float, meter: Meter, timebase_master: bool, virtual_port: str | None) -> None:
        client = self.client
        self.info = StreamInfo(session, stream, client.samplerate, audio_ports, client.blocksize,
                               track=track, host="jack")
        self.processor = (open_stream or _default_stream)(self.info)
        if not self.processor.realtime:
            raise ValueError("the JACK audio thread needs a realtime processor: it must never wait")
        self._pairs = [(client.inports.register(f"in_{i + 1}"), client.outports.register(f"out_{i + 1}"))
                       for i in range(audio_ports)]
        self._midi_port = client.midi_inports.register("midi_in")
        self.transport = TransportReader(client, bpm, meter)
        self._alloc(client.blocksize)
        self._pending: _Pending | None = None
        self._xruns = 0
        self._midi_events = 0
        self._errors = 0
        self.last_error: str | None = None
        self._origin: int | None = None
        self._origins: list[tuple[int, int]] = []
        self._jumps = 0
        self._times = np.zeros(TIMING_SLOTS, dtype=np.int64)
        self._cycles = 0
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._xrun)
        client.set_blocksize_callback(self._alloc)
        # conditional: never take the timebase from a DAW that already publishes one
        self.timebase_master = timebase_master and client.set_timebase_callback(
            self.transport.publish, conditional=True)
        self.virtual = VirtualPort(virtual_port, client) if virtual_port is not None else None
        _make_room_for_the_audio_thread()
        client.activate()

    def _alloc(self, blocksize: int) -> None:
        # Two buffers: one holds the pending period while the other records the current one.
        # A pending period keeps a reference to its own buffer, so a size change is safe.
        self._buffers = [np.zeros((len(self._pairs), blocksize), dtype=np.float32) for _ in range(2)]
        self._flip = 0

    # -- the audio thread --------------------------------------------------------------

    def _process(self, frames: int) -> None:
        started = time.perf_counter_ns()
        buffer = self._buffers[self._flip]
        for channel, (source, sink) in enumerate(self._pairs):
            samples = source.get_array()
            sink.get_array()[:] = samples  # the audio path: bit-for-bit, before anything else
            buffer[channel, :frames] = samples
        try:
            self._capture(frames, buffer)
        except Exception as exc:  # capture must never stop the pass-through
            self._errors += 1
            self.last_error = repr(exc)
        self._times[self._cycles & (TIMING_SLOTS - 1)] = time.perf_counter_ns() - started
        self._cycles += 1

    def _capture(self, frames: int, buffer: np.ndarray) -> None:
        midi = [(offset, bytes(data)) for offset, data in self._midi_port.incoming_midi_events()]
        self._midi_events += len(midi)
        current = _Pending(self.client.last_frame_time, buffer[:, :frames], midi, self.transport.read())
        self._flip ^= 1
        pending, self._pending = self._pending, current
        if pending is not None:
            self._emit(pending)

    def _emit(self, pending: _Pending) -> None:
        midi: list[MidiInput] = [*pending.midi]
        if self.virtual is not None:
            midi += self.virtual.take(pending.cycle, pending.audio.shape[1])
        origin = (pending.cycle - self.processor.position) & FRAME_MASK
        if origin != self._origin:
            if self._origin is not None:
                self._jumps += 1
            self._origin = origin
            self._origins.append((self.processor.position, origin))  # rare: start and xruns only
        self.processor.process(pending.audio, midi, pending.playhead)

    def _xrun(self, delayed_usecs: float) -> None:
        self._xruns += 1  # JACK's notification thread, not the audio thread

    # -- control -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the callback, capture the period still pending, close the processor."""
        if self._closed:
            return
        self._closed = True
        client = self.client
        client.deactivate()
        if self.timebase_master:
            try:
                client.release_timebase()
            except jack.JackError:
                pass  # another client took over: nothing of ours to release
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._emit(pending)  # the callback has stopped: safe from this thread
        if self.virtual is not None:
            self.virtual.close()
        client.close()
        self.processor.close()

    def __enter__(self) -> JackBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it saw -------------------------------------------------------------------

    @property
    def inputs(self) -> list[str]:
        """Full names of the audio input ports, in channel order."""
        return [source.name for source, _ in self._pairs]

    @property
    def outputs(self) -> list[str]:
        return [sink.name for _, sink in self._pairs]

    @property
    def midi_input(self) -> str:
        return self._midi_port.name

    @property
    def xruns(self) -> int:
        """Xruns the JACK server reported while we were active (ours or anyone's)."""
        return self._xruns

    @property
    def midi_events(self) -> int:
        """Events read from the JACK MIDI port."""
        return self._midi_events

    @property
    def callback_errors(self) -> int:
        """Periods whose capture raised (audio still passed through); see ``last_error``."""
        return self._errors

    @property
    def frame_origin(self) -> int | None:
        """JACK frame time of stream sample 0 (mod 2**32), as of the last captured block."""
        return self._origin

    @property
    def frame_origins(self) -> list[tuple[int, int]]:
        """(first stream sample, frame_origin) for each stretch between frame-time jumps."""
        return list(self._origins)

    def jack_frame(self, sample: int) -> int:
        """The JACK frame time (mod 2**32) at which stream sample ``sample`` was recorded."""
        index = bisect.bisect_right(self._origins, (sample, FRAME_MASK + 1)) - 1
        if index < 0:
            raise ValueError(f"sample {sample} comes before the first captured block")
        return (self._origins[index][1] + sample) & FRAME_MASK

    @property
    def frame_jumps(self) -> int:
        """Times JACK's frame time skipped against our contiguous stream samples."""
        return self._jumps

    @property
    def cycles(self) -> int:
        return self._cycles

    def callback_times_ns(self) -> np.ndarray:
        """Durations of the latest process callbacks (up to 65536), oldest first."""
        cycles = self._cycles
        if cycles <= TIMING_SLOTS:
            return self._times[:cycles].copy()
        return np.roll(self._times, -(cycles & (TIMING_SLOTS - 1)))


def _make_room_for_the_audio_thread() -> None:
    """Our process callback is Python: it needs the GIL within a period (2.7 ms at 128/48k).

    A thread waiting for the GIL gets it after the holder has run for the switch interval,
    5 ms by default: longer than the period, so a busy sender thread could cost an xrun.
    0.5 ms bounds that wait. And objects alive now (the libraries, the session) are frozen out
    of the collector's reach, so a full collection has less to walk while the callback waits.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    gc.collect()
    gc.freeze()


def _default_stream(info: StreamInfo) -> CaptureProcessor:
    return CaptureProcessor.for_stream(info, realtime=True)
