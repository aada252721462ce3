"""The JACK process of the live bridge: a client whose callback copies each period into
shared memory and returns. Nothing else runs in this process.

    python -m sendlearn.plugin.live.jack_host CONFIG_JSON     # started by bridge.JackBridge

Every period the callback copies each input port to its output port bit-for-bit (the audio
path, before anything else), then writes the period into the next free slot of the ring
(plugin/live/ring.py): the JACK frame time of its first frame, the raw transport fields, the JACK
MIDI port's events at their exact in-period frames, and the audio. It builds no block,
takes no lock and does no I/O; the capturing process (plugin/live/bridge.py) does the rest. A
python-rtmidi virtual port, if asked for, stamps each message with the cycle it arrived in
(plugin/live/virtual_port.py) and writes it into the ring's message ring.

Talking to the parent: one JSON line on stdout when running (``ring``: the shared file,
``sample_rate``, ``block_size``, port names) or ``{"error": ...}``; then it waits for a
``stop`` line on stdin (or end of input, SIGTERM, SIGHUP or the parent's death), deactivates,
marks the ring stopped and prints one JSON line of closing figures. SIGINT is ignored: a
Ctrl-C reaches the whole process group, and the parent decides when the capture ends.

Freewheel: while JACK freewheels (``jack_set_freewheel``: a DAW exporting faster than real
time) no cycle has a deadline, so a period that finds the ring full waits for the reader to
make room instead of being dropped; every freewheeling period is marked in the ring
(``Int.FREEWHEEL``). JACK notifies the freewheel switch synchronously, between the last
real-time cycle and the first freewheeling one (and back), so the flag is exact per period;
in real time the callback never waits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import jack
import numpy as np

from sendlearn.plugin.lifetime import die_with_parent
from sendlearn.plugin.live.host_process import MIN_SLOT_FRAMES, STOP_SIGNALS, settle, stop_on_command, tell_parent
from sendlearn.plugin.live.ring import (
    MAX_EVENTS,
    MIDI_BYTES,
    TIMING_SLOTS,
    Control,
    Layout,
    RunState,
    SharedRings,
    slots_for,
)
from sendlearn.plugin.live.tempo import TICKS_PER_BEAT, Meter, jack_beats_per_minute, manual_bbt

STOP_SECONDS = 10.0  # then the process exits without a clean deactivate
FREEWHEEL_NAP = 0.0002  # seconds: a freewheeling callback's nap while the ring is full


class JackWriter:
    """The JACK client: ``audio_ports`` inputs passed through to as many outputs, one JACK
    MIDI input, optionally a virtual MIDI input, all written into ``rings``."""

    def __init__(self, *, name: str, audio_ports: int, servername: str | None = None,
                 virtual_port: str | None = None, timebase_master: bool = False,
                 bpm: float = 120.0, meter: tuple[int, int] = (4, 4), margin: int | None = None) -> None:
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        client = self.client
        self.rate, self.block_size = client.samplerate, client.blocksize
        layout = Layout(audio_ports, max(MIN_SLOT_FRAMES, self.block_size), slots_for(self.block_size, self.rate))
        self.rings = SharedRings.create(layout)
        periods = self.rings.periods
        self._ints, self._floats, self._audio = periods["ints"], periods["floats"], periods["audio"]
        self._offsets, self._lengths, self._data = (periods["event_offset"], periods["event_length"],
                                                    periods["event_data"])
        self._control, self._times = self.rings.control, self.rings.times
        self._pairs = [(client.inports.register(f"in_{i + 1}"), client.outports.register(f"out_{i + 1}"))
                       for i in range(audio_ports)]
        self._midi_port = client.midi_inports.register("midi_in")
        self._head = self._cycles = 0
        self._drops, self._drop_frames = 0, 0  # dropped since the last period written
        # set by ``stop`` before it deactivates: JACK disconnects our ports while deactivating and
        # may run a few more periods with silent inputs, which are not what was played
        self._ended = False
        self._freewheeling = False  # set by JACK's freewheel notification, read by the callback
        self.last_error: str | None = None
        self.bpm, self.meter = float(bpm), Meter(*meter)
        client.set_process_callback(self._process)
        # no xrun callback: Python on JACK's notification thread would hold the GIL just when the
        # callback is late already (the capturing process counts xruns: bridge.py)
        client.set_freewheel_callback(self._freewheel)
        # conditional: never take the timebase from a DAW that already publishes one
        self.timebase_master = timebase_master and client.set_timebase_callback(self._publish, conditional=True)
        self.virtual = None
        if virtual_port is not None:
            from sendlearn.plugin.live.virtual_port import VirtualPort  # rtmidi only where a virtual port is asked for

            self.virtual = VirtualPort(virtual_port, client, self.rings, margin=margin)

    # -- the audio thread --------------------------------------------------------------

    def _process(self, frames: int) -> None:
        started = time.perf_counter_ns()
        control = self._control
        slots = self.rings.layout.slots
        slot = self._head % slots
        room = self._head - int(control[Control.TAIL]) < slots and frames <= self.rings.layout.max_frames
        waited = 0
        if not room and self._freewheeling and frames <= self.rings.layout.max_frames:
            waited = self._wait_for_room()  # no deadline: never drop a freewheeling period
            room = self._head - int(control[Control.TAIL]) < slots
        capturing = not self._ended
        audio = self._audio
        for channel, (source, sink) in enumerate(self._pairs):
            samples = source.get_array()
            sink.get_array()[:] = samples  # the audio path: bit-for-bit, before anything else
            if room and capturing:
                audio[slot, channel, :frames] = samples
        try:
            if not capturing:
                pass  # after the end: passed through, not captured, not a drop
            elif room:
                if self._record(slot, frames, started):
                    self._head += 1
                    control[Control.HEAD] = self._head  # last: the reader may take the slot now
            else:
                self._drop(frames)
        except Exception as exc:  # capture must never stop the pass-through
            control[Control.ERRORS] += 1
            self.last_error = repr(exc)
            self._drops += 1
            self._drop_frames += frames
        self._times[self._cycles % TIMING_SLOTS] = time.perf_counter_ns() - started - waited
        self._cycles += 1
        control[Control.CYCLES] = self._cycles

    def _record(self, slot: int, frames: int, started: int) -> bool:
        """Write the period into ``slot``; whether it is whole. A ``stop`` that came while this
        callback ran (its thread took the GIL) may have had JACK disconnect our MIDI port after
        the audio was read: the period is then after the end, never a block whose events are lost
        (likely what CI at 953b86c saw on a starved machine: a stream's last note missing while
        its block held the player's audio)."""
        client = self.client
        count = used = 0
        offsets, lengths, data = self._offsets, self._lengths, self._data
        for offset, message in self._midi_port.incoming_midi_events():
            size = len(message)
            if count >= MAX_EVENTS or used + size > MIDI_BYTES:
                self._control[Control.DROPPED_EVENTS] += 1
                continue
            offsets[slot, count], lengths[slot, count] = offset, size
            data[slot, used:used + size] = np.frombuffer(message, np.uint8)
            count += 1
            used += size
        if self._ended:
            return False
        state, pos = client.transport_query_struct()
        # two stores for the whole header (order as in ring.Int and ring.Float)
        self._ints[slot] = (client.last_frame_time, started, frames, self._drops, self._drop_frames, state,
                            pos.valid, pos.frame, pos.bar, pos.beat, pos.tick, count, used, self._freewheeling, 0)
        self._floats[slot] = (pos.beats_per_bar, pos.beat_type, pos.ticks_per_beat, pos.beats_per_minute)
        self._drops = self._drop_frames = 0
        return True

    def _drop(self, frames: int) -> None:
        """The reader is a whole ring behind: this period is lost, and counted."""
        control = self._control
        control[Control.DROPPED_PERIODS] += 1
        control[Control.DROPPED_EVENTS] += sum(1 for _ in self._midi_port.incoming_midi_events())
        self._drops += 1
        self._drop_frames += frames

    def _wait_for_room(self) -> int:
        """Freewheeling only: nap until the reader frees a slot, JACK leaves freewheel or the
        capture ends; return the nanoseconds waited (not the callback's own cost)."""
        started = time.perf_counter_ns()
        control, slots = self._control, self.rings.layout.slots
        control[Control.FREEWHEEL_WAITS] += 1
        while self._freewheeling and not self._ended and self._head - int(control[Control.TAIL]) >= slots:
            time.sleep(FREEWHEEL_NAP)
        return time.perf_counter_ns() - started

    def _freewheel(self, starting: bool) -> None:
        """JACK's notification thread: freewheel starts or stops. JACK delivers it between
        cycles, so the next period already runs in the new mode."""
        self._freewheeling = starting
        self._control[Control.FREEWHEELING] = int(starting)

    def _publish(self, state: int, blocksize: int, pos: Any, new_pos: bool) -> None:
        """Timebase callback: fill ``pos`` with our tempo and meter, JACK's way (beats of 1/den)."""
        bar, beat, tick = manual_bbt(pos.frame, self.rate, self.bpm, self.meter)
        pos.bar, pos.beat, pos.tick = bar, beat, int(tick)
        pos.bar_start_tick = (bar - 1) * self.meter.num * TICKS_PER_BEAT
        pos.beats_per_bar, pos.beat_type = float(self.meter.num), float(self.meter.den)
        pos.ticks_per_beat = TICKS_PER_BEAT
        pos.beats_per_minute = jack_beats_per_minute(self.bpm, self.meter)
        pos.valid = pos.valid | jack.POSITION_BBT

    # -- control -----------------------------------------------------------------------

    def start(self, connect: list[tuple[str, str]]) -> dict[str, Any]:
        settle()
        self.client.activate()
        self._control[Control.STATE] = RunState.RUNNING
        own = self.client.name + ":"
        for source, sink in connect:
            self.client.connect(source, sink if ":" in sink else own + sink)
        return {
            "ring": str(self.rings.path), "slots": self.rings.layout.slots, "max_frames": self.rings.layout.max_frames,
            "sample_rate": self.rate, "block_size": self.block_size, "client": self.client.name,
            "inputs": [s.name for s, _ in self._pairs], "outputs": [o.name for _, o in self._pairs],
            "midi_input": self._midi_port.name, "timebase_master": bool(self.timebase_master),
            "virtual_port": self.virtual.port_name if self.virtual else None,
            "margin": self.virtual.margin if self.virtual else None,
        }

    def stop(self) -> dict[str, Any]:
        """End the capture, deactivate (the callback has stopped when this returns), then say so
        in the ring. The capture ends first: the periods JACK runs while it disconnects our ports
        hear silence, not the player."""
        client = self.client
        self._ended = True
        client.deactivate()
        if self.timebase_master:
            try:
                client.release_timebase()
            except jack.JackError:
                pass  # another client took over: nothing of ours to release
        self._control[Control.DROPPED_AT_END] = self._drops  # no later period will carry them
        self._control[Control.DROPPED_FRAMES_AT_END] = self._drop_frames
        self._control[Control.STATE] = RunState.STOPPED
        if self.virtual is not None:
            self.virtual.close()
        client.close()
        return {"cycles": self._cycles, "last_error": self.last_error}


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv or sys.argv)[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # blocked before any thread starts (libjack's and rtmidi's inherit the mask): the main
    # thread takes them in ``sigwait``, without the GIL, and wakes for nothing else
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    die_with_parent()
    connect = [tuple(pair) for pair in config.pop("connect", [])]
    try:
        writer = JackWriter(**config)
    except (jack.JackError, OSError, ValueError) as exc:
        tell_parent({"error": f"cannot run as a JACK client: {exc}"})
        return 1
    try:
        ready = writer.start(connect)
    except jack.JackError as exc:
        writer.stop()
        tell_parent({"error": str(exc)})
        return 1
    tell_parent(ready)

    stop_on_command()
    signal.sigwait(STOP_SIGNALS)
    closing: list[dict[str, Any]] = []
    stopping = threading.Thread(target=lambda: closing.append(writer.stop()), daemon=True)
    stopping.start()
    stopping.join(STOP_SECONDS)  # a JACK server that died under us can hang deactivate for good
    if not closing:
        tell_parent({"error": f"the JACK client did not stop within {STOP_SECONDS} s"})
        os._exit(2)
    tell_parent(closing[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
