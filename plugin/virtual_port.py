"""A python-rtmidi virtual MIDI input, placed on the JACK timeline with a stored error bound.

Why the offset is an estimate. rtmidi's JACK backend runs its own JACK client; its process
callback reads the port's events and calls our callback for each, from that JACK thread,
*discarding the event's frame offset* (DESIGN §5: everything looks like period offset 0,
deltas are period-quantised). What survives is *which cycle* delivered the message. We stamp
each message on arrival with ``last_frame_time`` (that cycle's first frame, C) and
``frames_since_cycle_start`` (to check the callback ran inside its cycle), and push it into a
deque: append here, popleft on the audio thread, both atomic under the GIL, no lock.
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
sender. The stored bound adds ``margin`` (default n/16: 8 frames, 167 us at 128/48k) for
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

The bridge captures one period behind the audio, so a message delivered in cycle C joins
the block of cycle C even when rtmidi's client ran after ours in that cycle. A message that
still reaches a later block (its delivering callback ran more than a cycle late, or it
arrived before the first block) sits at that block's offset 0 and its bound grows by the
frames it was moved. Either way ``MidiEvent.timing_error`` holds the bound, never None:
``period + margin + moved``.
The bound assumes no xrun: an xrun can skip frame time between delivery and stamp.
"""

from __future__ import annotations

from collections import deque

import jack
import rtmidi

from sendlearn.capture import CaptureError, MidiEvent

FRAME_MASK = 0xFFFFFFFF


def _delta(a: int, b: int) -> int:
    d = (a - b) & FRAME_MASK  # 32-bit frame times wrap
    return d - (1 << 32) if d >= 1 << 31 else d


class VirtualPort:
    """A virtual MIDI input named ``name`` whose messages the bridge captures.

    ``api`` is always explicit (rtmidi would otherwise pick one itself): ``API_UNIX_JACK``
    on these machines, where ALSA does not exist. ``clock`` is the bridge's JACK client,
    read for frame times only. At most ``capacity`` messages wait; more are dropped and
    counted (``dropped``), never blocking rtmidi's thread.
    """

    def __init__(
        self, name: str, clock: jack.Client, *, api: int = rtmidi.API_UNIX_JACK,
        client_name: str | None = None, capacity: int = 4096, margin: int | None = None,
    ) -> None:
        self._clock = clock
        self._queue: deque[tuple[int, int, bytes]] = deque()
        self.capacity = capacity
        self._received = 0
        self._dropped = 0
        self._late = 0
        self._rejected = 0
        self.period = clock.blocksize
        self.margin = self.period // 16 if margin is None else margin
        # Our own client's name is unique on the server, so this one is too: JACK would
        # otherwise rename it silently and ``port_name`` would point elsewhere.
        self.client_name = client_name or f"{clock.name}-{name}"
        self._midi_in = rtmidi.MidiIn(api, name=self.client_name)
        self._midi_in.ignore_types(sysex=False, timing=False, active_sense=False)  # keep everything
        self._midi_in.set_callback(self._arrived)
        self._midi_in.open_virtual_port(name)
        self.name = name

    def _arrived(self, message: tuple[list[int], float], _data: object) -> None:
        # rtmidi's JACK process thread: stamp first, before anything else takes time.
        cycle = self._clock.last_frame_time
        since = self._clock.frames_since_cycle_start
        self._received += 1
        if len(self._queue) >= self.capacity:
            self._dropped += 1
            return
        self._queue.append((cycle, since, bytes(message[0])))

    def take(self, block_cycle: int, frames: int) -> list[MidiEvent]:
        """Messages delivered up to the cycle starting at ``block_cycle`` (a JACK frame time),
        as events of the block recorded in that cycle. Later ones stay for the next block."""
        events = []
        queue = self._queue
        while queue:
            cycle, since, data = queue[0]
            moved = _delta(block_cycle, cycle)
            if moved < 0:
                break  # delivered in a later cycle than this block's
            queue.popleft()
            if since >= self.period:
                self._late += 1  # stamped after its cycle ended: C may be off (see docstring)
            try:
                events.append(MidiEvent(0, data, timing_error=self.period + self.margin + moved))
            except CaptureError:
                self._rejected += 1  # running status, a truncated sysex: not one whole message
        return events

    def close(self) -> None:
        self._midi_in.cancel_callback()
        self._midi_in.close_port()
        self._midi_in.delete()

    @property
    def port_name(self) -> str:
        """The JACK port senders connect to (``client:port``)."""
        return f"{self.client_name}:{self.name}"

    @property
    def received(self) -> int:
        return self._received

    @property
    def dropped(self) -> int:
        """Messages refused because ``capacity`` were already waiting."""
        return self._dropped

    @property
    def late(self) -> int:
        """Messages whose callback ran a period or more after its cycle began."""
        return self._late

    @property
    def rejected(self) -> int:
        """Messages that were not one well-formed MIDI message."""
        return self._rejected

    def __len__(self) -> int:
        return len(self._queue)
