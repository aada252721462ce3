"""The live bridge from any PortAudio input device: the audio process is
plugin/live/portaudio_host.py, the capture is ``JackBridge``'s, and MIDI inputs and MIDI clock
are received here and placed on the device's clock (plugin/live/midi_in.py, arrival_clock.py,
midi_clock.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from sendlearn.capture import MidiEvent, Playhead
from sendlearn.errors import UsageError
from sendlearn.plugin.live.arrival_clock import Arrival, Placer, StreamClock
from sendlearn.plugin.live.bridge import JackBridge
from sendlearn.plugin.live.ring import Control, Int
from sendlearn.plugin.processor import OpenStream

if TYPE_CHECKING:
    import jack

    from sendlearn.plugin.live.midi_clock import MidiClock
    from sendlearn.plugin.live.midi_in import MidiInputs


class PortAudioBridge(JackBridge):
    """The same capture from any PortAudio input device (plugin/live/portaudio_host.py): ``device``
    is an index or a name (a part of one will do; None: the default input), ``channels`` its
    first N inputs (None: all), ``rate`` in Hz (None: the device's default), ``block_size``
    frames a block. No JACK MIDI, no transport: the playhead is ``bpm``/``meter``'s.
    ``device_lost`` says why, when the device stopped on its own.

    ``midi_in`` (rtmidi input ports, by name or a unique part of one) and ``virtual_port`` are
    received here (plugin/live/midi_in.py) and placed on the stream's samples from the
    device's clock, each with its bound (plugin/live/arrival_clock.py). A period is captured
    once every message that can fall in it has been collected (or it has waited ``MIDI_WAIT_NS``).
    ``clock``: a MIDI clock port; ``link``: the playhead from Ableton Link at ``quantum`` beats
    (plugin/live/link_clock.py), at the moment each block's first frame reached the device."""

    HOST = "portaudio"
    MIDI_WAIT_NS = 500_000_000  # a starved MIDI poller never holds the ring up longer than this
    MIDI_GUARD_NS = 1_000_000  # rtmidi stamps a message a little before it queues it

    def __init__(self, open_stream: OpenStream | None = None, *, device: str | None = None,
                 channels: int | None = None, rate: int | None = None, block_size: int = 256,
                 session: str = "live", stream: str = "portaudio", track: str = "", bpm: float = 120.0,
                 meter: tuple[int, int] = (4, 4), midi_in: list[str] | None = None,
                 virtual_port: str | None = None, clock: str | None = None, link: bool = False,
                 quantum: float | None = None) -> None:
        if not 1 <= block_size <= 8192:
            raise UsageError(f"--block-size {block_size}: give 1 to 8192 frames")
        config = {"device": device, "channels": channels, "rate": rate, "block_size": block_size}
        self._servername = None
        self.midi: MidiInputs | None = None
        self.clock: MidiClock | None = None
        self._clock_port, self._bpm, self._meter = clock, bpm, meter
        if midi_in or virtual_port or clock:  # first: a port that is not there is a usage error before any audio
            from sendlearn.plugin.live.midi_in import MidiInputs

            self.midi = MidiInputs(list(midi_in or []), virtual_port, clock=clock)
        try:
            self._join_link(link, bpm, meter, quantum)  # sets self.link first, so it is there to leave
            self._launch("sendlearn.plugin.live.portaudio_host", config, open_stream, session, stream, track,
                         bpm, meter)
        except BaseException:
            self._close_inputs()
            self._leave_link()
            raise

    def _setup(self, ready: dict[str, Any], *args: Any) -> None:
        seconds = ready["sample_rate"] // ready["block_size"]  # blocks in about a second
        self.stream_clock = StreamClock(ready["sample_rate"], seconds if ready.get("timestamps_trusted", True) else None)
        self.placer = Placer(self.stream_clock, ready["block_size"])
        self._ticks: list[Arrival] = []  # the clock port's messages not yet reached
        if self.midi is not None and self.midi.clock_port is not None:
            from sendlearn.plugin.live.midi_clock import MidiClock

            self.clock = MidiClock(ready["sample_rate"], self._bpm, self._meter, self.midi.clock_port)
        super()._setup(ready, *args)

    def _watch_xruns(self, name: str) -> jack.Client | None:
        return None  # PortAudio reports overflows per block (Control.INPUT_OVERFLOWS)

    def _may_capture(self, index: int) -> bool:
        midi = self.midi
        if midi is None or self.stream_clock.zero_ns is None or not midi.alive:
            return True
        ints = self.rings.periods[index % self.rings.layout.slots]["ints"]
        if time.perf_counter_ns() - int(ints[Int.ENTRY_NS]) > self.MIDI_WAIT_NS:
            return True
        end = self.processor.position + int(ints[Int.FRAMES])
        return midi.swept_ns >= self.placer.horizon_ns(end) + self.MIDI_GUARD_NS

    def _estimated_midi(self, ints: list[int], following: np.void | None, jump: int) -> list[MidiEvent]:
        if self.midi is None:
            return []
        start, frames = self.processor.position, ints[Int.FRAMES]
        self.stream_clock.block(start, ints[Int.ENTRY_NS], ints[Int.ADC_LAG_NS])
        if following is not None:  # the next callback's lateness bounds this period's arrivals too
            self.stream_clock.peek(start + frames, int(following["ints"][Int.ENTRY_NS]),
                                   int(following["ints"][Int.ADC_LAG_NS]))
        # no following period: the capture has stopped and this is its last block
        return self.placer.place(start, frames, self.midi.take(), last=following is None)

    def _playhead(self, record: np.void, frames: int) -> Playhead:
        """``--clock midi:PORT``: the clock's messages up to this period's first frame, read."""
        clock, midi = self.clock, self.midi
        if clock is None or midi is None:  # Link's, or --bpm/--meter
            return super()._playhead(record, frames)
        start, at = self.processor.position, self.stream_clock.sample_at_local
        self._ticks += midi.take(clock=True)
        due = sorted(((at(tick.ns()), tick) for tick in self._ticks), key=lambda pair: pair[0])
        self._ticks = [tick for sample, tick in due if sample >= start]
        for sample, tick in due:
            if sample < start:
                clock.feed(sample, tick.data)
        return clock.playhead(start)

    def close(self) -> None:
        super().close()
        self._close_inputs()

    def _close_inputs(self) -> None:
        if self.midi is not None:
            self.midi.close()

    def midi_figures(self) -> dict[str, Any]:
        """The MIDI inputs' and the playhead source's facts a stream closes with (stream.json's
        ``sender``)."""
        midi, placer = self.midi, self.placer
        source = (self.link.figures() if self.link is not None else self.clock.figures() if self.clock is not None
                  else {"playhead_source": "free (--bpm, --meter; not playing)"})
        if midi is None:
            return source
        if self.clock is not None and not midi.names:
            return {**source, "midi_api": midi.api_name, "midi_in_ports_lost": list(midi.lost)}
        waiting = len(placer.waiting) + midi.pending  # not placed (yet, or ever: after the last block)
        return {"midi_in_ports": midi.names, "midi_in_received": midi.received, "midi_in_placed": placer.placed,
                "midi_in_moved": placer.moved, "midi_in_left_over": waiting, "midi_in_bound_max": placer.bound_max,
                "midi_in_ports_lost": list(midi.lost), "midi_api": midi.api_name, **source}

    @property
    def timestamps_trusted(self) -> bool:
        """Whether the device's timestamps place losses as gaps (not JACK's: adc_clock.py)."""
        return bool(self.ready.get("timestamps_trusted", True))

    @property
    def device_lost(self) -> str | None:
        """Why the device stopped on its own, once it has; else None."""
        if not self.count(Control.DEVICE_LOST):
            return None
        return self.closing.get("device_lost") or "the audio device stopped on its own"
