"""A python-rtmidi virtual MIDI input, placed on the JACK timeline with a stored error bound.

Why the offset is an estimate. rtmidi's JACK backend runs its own JACK client; its process
callback reads the port's events and calls our callback for each, from that JACK thread,
*discarding the event's frame offset* (everything looks like period offset 0,
deltas are period-quantised). What survives is *which cycle* delivered the message. We stamp
each message on arrival with ``last_frame_time`` (that cycle's first frame, C) and
``frames_since_cycle_start`` (to check the callback ran inside its cycle), and write it into
the shared message ring: one writer (rtmidi's thread), one reader, no lock.
Not ``frame_time``: it is JACK's wall-clock estimate (a DLL), and whenever cycles run late
(measured here: any stall of the graph) it runs ahead of ``last_frame_time`` for good,
by thousands of frames after a few stalls, while the stream's samples follow the cycles.

The estimate is C, and the bound one period ``n``:
- a sender inside the JACK graph (a DAW's MIDI track, a hardware port) put the event
  somewhere in [C, C+n): the estimate is early by less than ``n``;
- a sender outside the process cycle (rtmidi's own output, any app writing from a thread)
  is flushed by its JACK client at the start of the next cycle, so it sent in [C-n, C):
  the estimate is late by at most ``n``.
C is the one estimate that is within ``n`` of the truth for both, without knowing the
sender. That holds for cycles of one period. When the graph runs late (a loaded machine,
an xrun) a cycle lasts longer than a period of wall-clock time, and a sender reading the
cycle timeline sees up to that many frames after C: so ``n`` in the bound is replaced by the
longest measured length of the delivering cycle and the few before it (the JACK process
stamps each period's start on CLOCK_MONOTONIC), or by ``since`` when our callback stamped
the message later than that. The stored bound adds ``margin`` (default n/16: 8 frames, 167 us at 128/48k) for
the jitter of the cycle timeline itself: a thread outside the process cycle that reads "now"
(``last_frame_time + frames_since_cycle_start``) sees the cycle boundary up to a few frames
off, as the driver's wake-ups jitter. Measured here, the error went past ``n`` by at most
4 frames in about 3 of 1000 messages; with the margin every message was within its bound.
Offsetting by the in-cycle arrival time instead (frames_since_cycle_start) adds only how long
the callback waited for the GIL, which is noise, not information.

Open and close rtmidi JACK ports only while no Python process callback of this process is
active (the bridge creates this port before activating and closes it after deactivating):
python-rtmidi keeps the GIL while RtMidi waits on the JACK server (client open, activate,
and up to 1 s in close_port), the server waits for our process callback, and that waits for
the GIL. Measured: creating a MidiIn beside an active Python client took 8 s and 56 xruns.

The bridge captures a period once the next is in the ring, so a message delivered in cycle C joins
the block of cycle C even when rtmidi's client ran after ours in that cycle. A message that
still reaches a later block (its delivering callback ran more than a cycle late, or it
arrived before the first block) sits at that block's offset 0 and its bound grows by the
frames it was moved. Either way ``MidiEvent.timing_error`` holds the bound, never None:
``max(cycle length, since) + margin + moved`` (+ a clock jump, below).
An xrun can skip frame time between a message's sending and its delivery: a message
delivered in the first cycle after the JACK clock jumped by J frames gets J more bound.

The port lives in the JACK process (plugin/live/jack_host.py) and writes into the shared
message ring (plugin/live/ring.py); ``VirtualEvents`` reads them in the capturing process.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from sendlearn.capture import CaptureError, MidiEvent
from sendlearn.plugin.live.ring import MAX_MESSAGE, MESSAGE_SLOTS, Control, SharedRings

FRAME_MASK = 0xFFFFFFFF  # jack_nframes_t is uint32: frame times wrap after 2**32 (~24.8 h at 48k)


def wrap_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit JACK frame times, as a signed number."""
    d = (a - b) & FRAME_MASK
    return d - (1 << 32) if d >= 1 << 31 else d


class FrameClock(Protocol):
    """What the port reads of the bridge's JACK client (a ``jack.Client``)."""

    @property
    def name(self) -> str: ...
    @property
    def blocksize(self) -> int: ...
    @property
    def last_frame_time(self) -> int: ...
    @property
    def frames_since_cycle_start(self) -> int: ...


class VirtualPort:
    """A virtual MIDI input named ``name``, in the JACK process, writing into ``rings``.

    ``api`` is always explicit (rtmidi would otherwise pick one itself): ``API_UNIX_JACK``
    on these machines, where ALSA does not exist. ``clock`` is the bridge's JACK client,
    read for frame times only. A full ring or a message longer than the ring's slot drops
    the message and counts it, never blocking rtmidi's thread.
    """

    def __init__(self, name: str, clock: FrameClock, rings: SharedRings, *, api: int | None = None,
                 client_name: str | None = None, margin: int | None = None) -> None:
        import rtmidi

        self._clock = clock
        self._rings = rings
        self._control = rings.control
        m = rings.messages
        self._cycle, self._since, self._length, self._data = m["cycle"], m["since"], m["length"], m["data"]
        self._head = 0
        self.period = clock.blocksize
        self.margin = self.period // 16 if margin is None else margin
        # Our own client's name is unique on the server, so this one is too: JACK would
        # otherwise rename it silently and ``port_name`` would point elsewhere.
        self.client_name = client_name or f"{clock.name}-{name}"
        self._midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK if api is None else api, name=self.client_name)
        self._midi_in.ignore_types(sysex=False, timing=False, active_sense=False)  # keep everything
        self._midi_in.set_callback(self._arrived)
        self._midi_in.open_virtual_port(name)
        self.name = name

    def _arrived(self, message: tuple[list[int], float], _data: object) -> None:
        # rtmidi's JACK process thread: stamp first, before anything else takes time.
        cycle = self._clock.last_frame_time
        since = self._clock.frames_since_cycle_start
        control = self._control
        control[Control.MESSAGES_RECEIVED] += 1
        size = len(message[0])
        if self._head - int(control[Control.MESSAGE_TAIL]) >= MESSAGE_SLOTS or size > MAX_MESSAGE:
            control[Control.MESSAGES_DROPPED] += 1
            return
        slot = self._head % MESSAGE_SLOTS
        self._cycle[slot], self._since[slot], self._length[slot] = cycle, since, size
        self._data[slot, :size] = message[0]
        self._head += 1
        control[Control.MESSAGE_HEAD] = self._head  # last: the reader may take it now

    def close(self) -> None:
        self._midi_in.cancel_callback()
        self._midi_in.close_port()
        self._midi_in.delete()

    @property
    def port_name(self) -> str:
        """The JACK port senders connect to (``client:port``)."""
        return f"{self.client_name}:{self.name}"


class VirtualEvents:
    """The capturing process's side: turns the ring's messages into the events of the block
    recorded in the cycle they were delivered in, each with its error bound."""

    def __init__(self, rings: SharedRings, period: int, margin: int) -> None:
        self._rings = rings
        self.period, self.margin = period, margin
        self._tail = 0
        self._lengths: deque[int] = deque(maxlen=4)
        self.late = 0  # stamped a period or more into their cycle (the bound grew with it)
        self.moved = 0  # delivered after their block had gone: placed at a later block's offset 0
        self.rejected = 0  # not one well-formed MIDI message
        self.left_over = 0  # arrived after the last block (see ``finish``)

    def take(self, block_cycle: int, length: int, jump: int = 0) -> list[MidiEvent]:
        """Messages delivered up to the cycle starting at ``block_cycle`` (a JACK frame time).
        ``length``: how long that cycle lasted, in frames of wall-clock time (measured: a late
        graph stretches it past the period); ``jump``: frames the JACK clock skipped just
        before this block (an xrun), else 0."""
        self._lengths.append(max(int(length), self.period))
        stretch = max(self._lengths)  # this cycle's length and the few before it
        rings, events = self._rings, []
        head = rings.count(Control.MESSAGE_HEAD)
        m = rings.messages
        while self._tail < head:
            slot = self._tail % MESSAGE_SLOTS
            moved = wrap_delta(block_cycle, int(m["cycle"][slot]))
            if moved < 0:
                break  # delivered in a later cycle than this block's
            since, size = int(m["since"][slot]), int(m["length"][slot])
            data = m["data"][slot, :size].tobytes()
            self._tail += 1
            rings.control[Control.MESSAGE_TAIL] = self._tail
            if since >= self.period:
                self.late += 1
            if moved > 0:
                self.moved += 1
            bound = max(stretch, since) + self.margin + moved + (jump if moved == 0 else 0)
            try:
                events.append(MidiEvent(0, data, timing_error=bound))
            except CaptureError:
                self.rejected += 1  # running status, a truncated sysex: not one whole message
        return events

    def finish(self) -> int:
        """The capture has ended: messages still waiting arrived after its last block. They are
        not placed anywhere; their number is returned (and counted in ``left_over``)."""
        head = self._rings.count(Control.MESSAGE_HEAD)
        self.left_over += head - self._tail
        self._tail = head
        self._rings.control[Control.MESSAGE_TAIL] = head
        return self.left_over
