"""JACK freewheel (a DAW exporting faster than real time) through the live bridge, against a
real ``jackd -S -d dummy``: every freewheeling period is captured, bit for bit, with its
events and the master's playhead, even while the capturing side holds everything up.

While JACK freewheels there is no deadline: the JACK process waits for room in a full ring
and the capturing process waits for room in a full hand-off, where in real time both would
drop. The test forces that: the consumer of the blocks stops taking them as soon as JACK
freewheels and resumes only once the JACK process has had to wait for room in the ring, so
both queues were full. Tests judge the data, never the machine.
"""

from __future__ import annotations

import threading
import time

import jack
import numpy as np

from jackplay import PERIOD, RATE, Master, Player, noise
from sendlearn.capture import Block
from sendlearn.plugin.live.bridge import JackBridge
from sendlearn.plugin.live.ring import Control
from sendlearn.plugin.live.runner import DummyServer, bridge_stats, drain

GUARD = 8.0  # seconds: a hang guard, below jackd's 10 s freewheel timeout for a client
# how long the sink may stall while the queues fill: the JACK process itself waits only from its first
# wait until the test sees it (5 ms polls) and lets the sink go; filling them took over 8 s on a loaded CI
FILL_GUARD = 60.0


def wait_until(condition, seconds: float = GUARD) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_freewheel_captures_every_period_exactly(jack_server: DummyServer) -> None:
    master = Master(137.0, (7, 8))
    player = Player(jack_server, 1, master, name="fw-player")
    toggler = jack.Client("freewheeler", no_start_server=True, servername=jack_server.name)
    release = threading.Event()
    blocks: list[Block] = []
    with player.client, JackBridge(name="fw", audio_ports=1, servername=jack_server.name,
                                   connect=[("fw-player:out_1", "in_1"), ("fw-player:midi_out", "midi_in")]) as bridge:

        def take(block: Block) -> None:
            if bridge.count(Control.FREEWHEELING) and not release.is_set():
                release.wait(FILL_GUARD)  # a sink that stalls while JACK freewheels: nothing may be lost
            blocks.append(block)

        drainer = drain(bridge.processor.handoff, take)
        player.client.activate()
        time.sleep(0.05)
        start = player.client.last_frame_time + 4 * PERIOD
        # an event every 331 frames for 200 s of JACK time: through real time, freewheel and back
        events = [(start + k * 331, bytes((0x90 | k % 16, k // 16 % 128, 1 + k % 127))) for k in range(29000)]
        player.play(events)
        player.client.transport_frame = 0
        player.client.transport_start()
        # the master's tempo unit decided in real time first (two of its beat boundaries, about 1 s;
        # a loaded machine's late master puts it off), so the freewheeling blocks carry quarter notes
        wait_until(lambda: bridge.playheads.figures()["tempo_unit"] is not None)

        toggler.set_freewheel(True)
        try:
            waited = wait_until(lambda: bridge.count(Control.FREEWHEEL_WAITS) > 0, FILL_GUARD)  # both queues are full
            release.set()
            time.sleep(0.2)
        finally:
            release.set()
            toggler.set_freewheel(False)
        time.sleep(0.3)  # real time again
        player.client.transport_stop()
        time.sleep(0.05)
        stats = bridge_stats(bridge, time.monotonic())
    drainer.join(10)
    toggler.close()
    assert not drainer.is_alive()
    assert waited, "the JACK process never had to wait for room while freewheeling"
    assert bridge.capture_errors == 0, bridge.last_error

    # the freewheeling span: one stretch of the stream, no period lost in it
    figures = bridge.freewheel_figures()
    assert figures["freewheel_periods"] > bridge.rings.layout.slots + bridge.processor.handoff.capacity
    assert figures["freewheel_waits"] > 0
    [[first, end]] = figures["freewheel_spans"]
    assert end - first == figures["freewheel_periods"] * PERIOD
    assert stats.closing_figures()["freewheel_spans"] == [[first, end]]
    span = [b for b in blocks if first <= b.start_sample < end]
    assert len(span) == figures["freewheel_periods"]
    assert [b.start_sample for b in span] == list(range(first, end, PERIOD))
    assert [b.seq for b in span] == list(range(span[0].seq, span[0].seq + len(span)))
    frames = [bridge.jack_frame(b.start_sample) for b in span]
    assert frames == list(range(frames[0], frames[0] + len(span) * PERIOD, PERIOD))  # JACK's every cycle

    # every freewheeling period holds what the player wrote in it, bit for bit
    for b, frame in zip(span, frames, strict=True):
        assert frame in player.played, f"block {b.seq}: the player did not run in cycle {frame}"
        assert b.audio[0].tobytes() == noise(frame, b.frames, 0).tobytes(), f"block {b.seq}"

    # every event sent in the span arrives at its frame, exact, and nothing else
    lo, hi = frames[0], frames[-1] + PERIOD
    got = [(bridge.jack_frame(s), e.data, e.timing_error) for b in span for s, e in b.absolute_events()]
    sent = [(f, d, None) for f, d in player.sent if lo <= f < hi]
    assert len(sent) > 100 and got == sent

    # the playhead follows the master through the span: its bar and beat at each block's
    # transport frame, its meter, its tempo in quarter notes (137 eighths a minute: 68.5)
    assert bridge.playheads.figures()["tempo_unit"] == "denominator"
    num, den = master.meter
    for b in span:
        ph = b.playhead
        transport_frame = round(ph.seconds * RATE)
        assert ph.playing and transport_frame in player.published, f"block {b.seq}"
        bar, beat, tick = master.bbt(transport_frame)
        assert (ph.bpm, ph.ts_num, ph.ts_den, ph.bar) == (master.quarter_bpm, num, den, bar), f"block {b.seq}"
        assert np.isclose(ph.beat, beat + tick / 960.0, atol=1e-9), f"block {b.seq}"
    transport = [round(b.playhead.seconds * RATE) for b in span]
    assert transport == list(range(transport[0], transport[0] + len(span) * PERIOD, PERIOD))

    # the stream around it: every seq used once (holes only where real time lost a cycle)
    assert len(blocks) + bridge.processor.dropped == blocks[-1].seq + 1
    assert blocks[-1].start_sample > end  # real time resumed and was captured after the span
