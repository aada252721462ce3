"""The live bridge against a real jackd: real clients, no mocks.

A player client (tests/jackplay.py) plays noise indexed by absolute JACK frame into the
bridge's inputs and MIDI events at known frames into its MIDI port, while rolling the
transport as timebase master. A monitor client reads the bridge's outputs. Everything runs
in one synchronous server (``jackd -S``), so a cycle's output is read by the clients
downstream of it within the same cycle. The bridge's JACK client runs in a process of its
own (plugin/live/jack_host.py); the blocks arrive here through its shared-memory ring.

Frames line up like this, measured and asserted below: a block captured from cycle L (JACK
frame time L = ``bridge.frame_origin + block.start_sample``) holds exactly what the player
wrote in cycle L, and the monitor reads the same samples from our outputs in cycle L: zero
frames of latency anywhere in a synchronous graph, only graph order.

No test here judges the machine (xruns, callback times): scripts/bench_live.py does, against
bare clients in one run. Tests judge the data.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import jack
import numpy as np
import pytest
import rtmidi

from jackplay import PERIOD, RATE, TICKS, Hog, Master, Monitor, Player, engine_now, noise
from sendlearn.capture import STOPPED, Block
from sendlearn.capture.tempo import settle_bpms
from sendlearn.plugin import CaptureProcessor
from sendlearn.plugin.live.bridge import JackBridge
from sendlearn.plugin.live.ring import Control
from sendlearn.plugin.live.runner import DummyServer, drain


def collect(bridge: JackBridge) -> tuple[list[Block], threading.Thread]:
    blocks: list[Block] = []
    return blocks, drain(bridge.processor.handoff, blocks.append)



def wait_until_decided(bridge: JackBridge, guard: float = 20.0) -> None:
    """Roll on until the master's tempo unit is decided: a loaded machine's late master puts it
    off (its held periods restart the measure). A hang guard, not a timing assertion."""
    deadline = time.monotonic() + guard
    while bridge.playheads.figures()["tempo_unit"] is None and time.monotonic() < deadline:
        time.sleep(0.05)

def test_bridge_captures_what_was_played_exactly(jack_server: DummyServer) -> None:
    channels = 2
    player, monitor = Player(jack_server, channels), Monitor(jack_server, channels)
    with player.client, monitor.client, JackBridge(name="bridge", audio_ports=channels, servername=jack_server.name,
                                                   session="t", stream="exact") as bridge:
        blocks, drainer = collect(bridge)
        player.client.activate()
        monitor.client.activate()
        for out, ours in zip(player.outs, bridge.inputs, strict=True):
            player.client.connect(out, ours)
        for ours, mon in zip(bridge.outputs, monitor.ins, strict=True):
            monitor.client.connect(ours, mon)
        player.client.connect(player.midi, bridge.midi_input)
        time.sleep(0.05)  # connections take effect at a cycle boundary
        settled = player.client.frame_time + 2 * PERIOD
        monitor.recording = True

        # MIDI at known frames: both ends of a period, two on one frame, a sysex, a dense run.
        base = settled + 4 * PERIOD
        base -= base % PERIOD
        offsets = [0, 1, PERIOD - 1, PERIOD, PERIOD, 3 * PERIOD + 64, *range(5 * PERIOD, 5 * PERIOD + 300, 7)]
        events = [(base + o, bytes((0x90 | i % 16, i % 128, 1 + i % 127))) for i, o in enumerate(offsets)]
        events.append((base + 9 * PERIOD + 5, b"\xf0\x7d\x01\x02\xf7"))
        malformed = (base + 10 * PERIOD + 3, b"\x90\x3c")  # a note-on one byte short
        player.play([*events, malformed])

        # Transport: start, roll, locate while rolling, roll, stop.
        player.client.transport_frame = 0
        player.client.transport_start()
        time.sleep(1.0)  # two of the master's beat boundaries (0.44 s a beat): its tempo unit decided,
        wait_until_decided(bridge)  # or later on a loaded machine
        locate_to = 5 * RATE + 17
        player.client.transport_frame = locate_to
        time.sleep(0.25)
        player.client.transport_stop()
        time.sleep(0.1)
        monitor.recording = False
    drainer.join(5)
    assert not drainer.is_alive()

    # A quiet machine runs this with no clock jump at all; a loaded one may xrun, and then
    # every block must still sit on the frames of its own stretch (bridge.jack_frame).
    assert bridge.frame_origins[0][0] == 0 and len(bridge.frame_origins) <= bridge.frame_jumps + 1
    assert bridge.capture_errors == 0, bridge.last_error
    # cycles our callback missed (xruns) are holes of dropped seqs, on JACK's clock
    assert len(blocks) + bridge.processor.dropped == blocks[-1].seq + 1
    assert sum(b.frames for b in blocks) + bridge.missed_frames == blocks[-1].start_sample + blocks[-1].frames
    live = [b for b in blocks if bridge.jack_frame(b.start_sample) >= settled]
    assert len(live) > 100  # 0.6 s of cycles: about 225 on a quiet machine

    # Audio: measure the lag on one clear block, then require it for every clear one, bit-for-bit
    # (clear: the Python player ran on time in that cycle and its neighbours; see jackplay.py).
    clear = [b for b in live if player.clear(bridge.jack_frame(b.start_sample))]
    assert len(clear) >= 0.5 * len(live)
    probe = clear[len(clear) // 2]
    frame = bridge.jack_frame(probe.start_sample)
    lags = [d for d in range(-4 * PERIOD, 4 * PERIOD + 1) if np.array_equal(probe.audio[0], noise(frame + d, PERIOD, 0))]
    assert lags == [0]
    for b in clear:
        expected = np.stack([noise(bridge.jack_frame(b.start_sample), b.frames, c) for c in range(channels)])
        assert b.audio.tobytes() == expected.tobytes(), f"block {b.seq}"

    # Outputs: what the monitor read from our outputs in cycle L is what the player wrote in L.
    monitored = [(cycle, audio) for cycle, audio in monitor.cycles if player.clear(cycle)]
    assert len(monitored) > 50
    for cycle, audio in monitored:
        expected = np.stack([noise(cycle, PERIOD, c) for c in range(channels)])
        assert audio.tobytes() == expected.tobytes(), f"monitor cycle {cycle}"

    # MIDI: every event at exactly the frame it was sent at, exact (timing_error None), in order.
    got = [(bridge.jack_frame(s), e.data, e.timing_error) for b in live for s, e in b.absolute_events()]
    sent = [e for e in events if e in player.sent]
    assert [g for g in got if player.clear(g[0])] == [(f, d, None) for f, d in sent if player.clear(f)]
    assert {(f, d) for f, d, _ in got} <= set(sent)  # nothing invented, nothing moved
    # the malformed one is rejected on its own: its block and neighbours are all there
    if malformed in player.sent:
        assert bridge.processor.rejected_events == 1

    # Playhead: the master's bar, beat and meter at each block's transport frame, its tempo
    # in quarter notes (137 eighths a minute in 7/8 is 68.5 quarter notes).
    rolling = [b for b in blocks if b.playhead.playing]
    assert len(rolling) > 60  # 1.25 s rolling: about 470 on a quiet machine
    check_playheads(blocks, player, bridge.playheads.figures())

    # Start, locate and stop show up: rolling starts near 0, the located frame is a block's
    # transport frame, and playing stops.
    frames = [round(b.playhead.seconds * RATE) for b in rolling]
    assert frames[0] < RATE and locate_to in frames
    assert not blocks[-1].playhead.playing
    first_rolling = blocks.index(rolling[0])
    assert not blocks[first_rolling - 1].playhead.playing


def check_playheads(blocks: list[Block], player: Player, figures: dict) -> None:
    """Each block's playhead is the master's at its transport frame, wherever the master's
    timebase callback ran for that frame (a late Python master leaves JACK publishing its
    previous position on a loaded machine: captured as it was, but not checkable here). Its
    tempo is in quarter notes once settled as finalise settles it (capture/tempo.py): blocks
    before the master's unit was decided stored what it published, and are noted provisional."""
    master = player.master
    num, den = master.meter
    if den != 4:
        assert figures["tempo_unit"] == ("quarter" if master.quarter_notes else "denominator"), figures
    settled = dict(zip([b.start_sample for b in blocks], settle_bpms(
        [b.start_sample for b in blocks], [b.playhead.bpm for b in blocks], [b.playhead.ts_den for b in blocks],
        figures), strict=True))
    provisional = {b.start_sample for b in blocks if settled[b.start_sample] != b.playhead.bpm}
    assert all(b.playhead.bpm == master.published_bpm for b in blocks if b.start_sample in provisional)
    checked = [b for b in blocks if round(b.playhead.seconds * RATE) in player.published or not b.playhead.playing]
    assert len(checked) >= 0.5 * len(blocks)
    for b in checked:
        ph = b.playhead
        bar, beat, tick = master.bbt(round(ph.seconds * RATE))
        assert (settled[b.start_sample], ph.ts_num, ph.ts_den) == (master.quarter_bpm, num, den), f"block {b.seq}"
        # a period the late master missed is its last position carried on (plugin/live/tempo.py): one tick at most
        beats = (bar - 1) * num + beat - 1 + tick / TICKS
        assert (ph.bar - 1) * num + ph.beat - 1 == pytest.approx(beats, abs=1.0001 / TICKS), f"block {b.seq}"
        assert ph.ppq == pytest.approx(((ph.bar - 1) * num + ph.beat - 1) * 4 / den, abs=1e-9)
    # once the master has published, no rolling period falls back to another tempo or meter
    first = next(i for i, b in enumerate(blocks) if b.playhead.playing and b.playhead.ts_den == den)
    assert {(settled[b.start_sample], b.playhead.ts_num, b.playhead.ts_den) for b in blocks[first:]
            if b.playhead.playing} == {(master.quarter_bpm, num, den)}


def test_xruns_are_counted(jack_server: DummyServer) -> None:
    """A client that overruns its period makes the server report an xrun; the bridge counts it."""
    hog = Hog(jack_server, every=1, stall=0.05)  # ~19 periods: no server lets that pass
    with hog.client, JackBridge(name="xrunner", audio_ports=1, servername=jack_server.name) as bridge:
        blocks, drainer = collect(bridge)
        hog.client.activate()
        time.sleep(0.1)
        before = bridge.xruns
        hog.on.set()
        time.sleep(0.06)
        hog.on.clear()
        deadline = time.monotonic() + 10
        while bridge.xruns == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.xruns > before
    drainer.join(5)
    assert not drainer.is_alive()
    # any cycles the stall cost us are holes of dropped seqs, and the stream stays on JACK's clock
    assert len(blocks) + bridge.processor.dropped == blocks[-1].seq + 1
    assert len(bridge.frame_origins) == 1
    assert all(bridge.jack_frame(b.start_sample) == bridge.frame_origin + b.start_sample for b in blocks)


@pytest.mark.parametrize("master", [Master(137.0, (7, 8)), Master(200.0, (6, 8), quarter_notes=True),
                                    Master(90.0, (3, 4))], ids=["jack-7/8", "ardour-6/8", "jack-3/4"])
def test_tempo_is_stored_in_quarter_notes_whoever_is_master(jack_server: DummyServer, master: Master) -> None:
    """JACK's definition (beats of the denominator) and Ardour's (quarter notes, whatever the
    meter) give the same quarter-note tempo: the unit is read off the master's beats and bars."""
    player = Player(jack_server, 1, master, name="tempo-player")
    with player.client, JackBridge(name="tempo", audio_ports=1, servername=jack_server.name) as bridge:
        blocks, drainer = collect(bridge)
        player.client.activate()
        player.client.transport_frame = 0
        player.client.transport_start()
        time.sleep(1.1)  # two beat boundaries at 137 eighths a minute: 0.88 s at most
        if master.meter[1] != 4:  # x/4 never needs the unit
            wait_until_decided(bridge)
        time.sleep(0.1)  # and some blocks after the decision
        player.client.transport_stop()
        time.sleep(0.05)
    drainer.join(5)
    rolling = [b for b in blocks if b.playhead.playing]
    assert len(rolling) > 50
    check_playheads(rolling, player, bridge.playheads.figures())


@pytest.mark.parametrize("meter", [(3, 4), (7, 8)])
def test_manual_tempo_and_own_timebase(jack_server: DummyServer, meter: tuple[int, int]) -> None:
    """No master: bpm (quarter notes) and meter arguments. timebase_master=True: we publish
    them as BBT, JACK's way (beats of the denominator), and read back the same quarter notes."""
    num, den = meter
    transport = jack.Client("transport", no_start_server=True, servername=jack_server.name)
    for master in (False, True):
        with JackBridge(name=f"tb{int(master)}", audio_ports=1, servername=jack_server.name, bpm=90.0,
                        meter=meter, timebase_master=master) as bridge:
            blocks, drainer = collect(bridge)
            assert bridge.timebase_master is master
            transport.transport_frame = 0
            transport.transport_start()
            time.sleep(0.3)
            transport.transport_stop()
            time.sleep(0.05)
        drainer.join(5)
        rolling = [b for b in blocks if b.playhead.playing]
        assert len(rolling) > 50
        for b in rolling:
            ph = b.playhead
            beats = ph.seconds * 90.0 / 60.0 * den / 4  # beats of 1/den
            assert (ph.bpm, ph.ts_num, ph.ts_den) == (90.0, num, den)
            assert ph.bar == int(beats // num) + 1
            tolerance = 1 / 1920 if master else 1e-9  # as master we publish whole ticks
            assert ph.beat == pytest.approx(beats % num + 1, abs=tolerance)
            assert ph.ppq == pytest.approx(beats * 4 / den, abs=4 * tolerance)
    transport.close()


def test_virtual_port_events_within_their_stored_bound(jack_server: DummyServer) -> None:
    """Messages sent through python-rtmidi (JACK API) at known frame times land within the
    error bound stored with each of them: a period plus the clock margin, unless moved.
    rtmidi clients are opened before the bridge activates and closed after it stops (see
    virtual_port.py: opening one beside an active Python process callback stalls JACK)."""
    n = 300
    rng = np.random.default_rng(7)
    clock = jack.Client("clock", no_start_server=True, servername=jack_server.name)
    sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="sender")
    sender.open_virtual_port("out")
    try:
        with JackBridge(name="vbridge", audio_ports=1, servername=jack_server.name, virtual_port="keys") as bridge:
            blocks, drainer = collect(bridge)
            clock.connect("sender:out", bridge.virtual_port_name)
            time.sleep(0.05)
            truth = []
            for i in range(n):
                time.sleep(float(rng.uniform(0.0, 0.004)))
                message = [0x90 | i % 16, i // 16 % 128, 1 + i % 127]
                before = engine_now(clock)
                sender.send_message(message)
                truth.append((before, engine_now(clock), bytes(message)))  # the ring write is in between
            time.sleep(0.05)
        drainer.join(5)
    finally:
        sender.close_port()
        sender.delete()
        clock.close()
    port = bridge.virtual
    assert port is not None and port.period == PERIOD and port.margin == PERIOD // 16
    got = {e.data: (bridge.jack_frame(s), e.timing_error) for b in blocks for s, e in b.absolute_events()}
    # "moved": delivered after its block had gone, so placed at the next one with a larger
    # bound; "late": stamped a period or more into its cycle, with a larger bound. Both are
    # checked below like every other event: no event lies beyond its bound.
    assert len(got) == n and bridge.count(Control.MESSAGES_DROPPED) == 0
    errors, bounds = [], []
    for before, after, data in truth:
        estimate, bound = got[data]
        assert bound is not None
        # some instant between the two clock reads is within the bound of the estimate
        assert estimate - after <= bound and before - estimate <= bound, (estimate - before, bound)
        errors.append(estimate - before)
        bounds.append(bound)
    signed = np.array(errors)
    errors, bounds = np.abs(signed), np.array(bounds)
    p50, p99 = np.percentile(errors, [50, 99])
    print(f"\nvirtual port |error| p50 {p50:.0f} p99 {p99:.0f} max {errors.max()} samples "
          f"(signed {signed.min()}..{signed.max()}); bound p50 {np.median(bounds):.0f} max {bounds.max()}; "
          f"moved {np.sum(bounds > PERIOD + port.margin)}/{n}")
    assert np.all(bounds >= PERIOD + port.margin)


def test_run_bridge_reports_and_finishes(jack_server: DummyServer) -> None:
    """``run_bridge`` (what ``sendlearn live`` will call) ticks, stops, and counts the last period."""
    from sendlearn.plugin.live.runner import run_bridge

    ticks = []
    stats = run_bridge(seconds=0.3, tick=0.1, on_tick=ticks.append, name="runner", audio_ports=1,
                       servername=jack_server.name)
    assert len(ticks) >= 2 and ticks[-1].blocks > 0
    assert stats.blocks > ticks[-1].blocks and stats.dropped == stats.callback_errors == stats.capture_errors == 0
    assert stats.frame_origins and stats.frame_origins[0][0] == 0
    figures = stats.closing_figures()
    assert figures["jack_frame_origins"] == [list(pair) for pair in stats.frame_origins]


class StalledProcessor(CaptureProcessor):
    """A capturing side that falls behind once (a stalled disk, a paused debugger): its first
    ``process`` call waits until ``released`` is set, which the test sets once the ring has
    overflowed (a fixed 3 s stall overflowed no ring in CI at b5525b1, its JACK running slower
    than the clock: the ring holds ~2 s of JACK's frames, not of the clock's)."""

    released = threading.Event()
    stalled = False

    def process(self, audio, midi=(), playhead=STOPPED, params=()):  # noqa: ANN001, ANN201
        if not self.stalled:
            self.stalled = True
            self.released.wait(60)  # a hang guard only
        return super().process(audio, midi, playhead, params)


def test_a_full_ring_drops_whole_periods_and_the_stream_keeps_its_clock(jack_server: DummyServer) -> None:
    """The JACK process never waits: while the capturing side is stalled, periods that do not
    fit the ring are dropped and counted, and the stream skips their seqs and samples (a gap
    the receiver records), so every later block still sits on its own frames."""
    player = Player(jack_server, 1, name="ring-player")
    StalledProcessor.released.clear()
    opened = []

    def open_stream(info):  # noqa: ANN001, ANN202
        opened.append(StalledProcessor.for_stream(info, realtime=True))
        return opened[0]

    with player.client, JackBridge(open_stream, name="stall", audio_ports=1, servername=jack_server.name,
                                   connect=[("ring-player:out_1", "in_1")]) as bridge:
        blocks, drainer = collect(bridge)
        player.client.activate()
        deadline = time.monotonic() + 60  # a hang guard only
        while bridge.count(Control.DROPPED_PERIODS) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)  # a few more periods dropped, then the capturing side goes on
        StalledProcessor.released.set()
        while bridge.count(Control.TAIL) < bridge.count(Control.DROPPED_PERIODS) + 1000 and time.monotonic() < deadline:
            time.sleep(0.05)  # capturing again, past the hole
    drainer.join(5)
    dropped = bridge.count(Control.DROPPED_PERIODS)
    assert dropped > 0 and bridge.capture_errors == 0
    seqs = [b.seq for b in blocks]
    assert len(seqs) + bridge.processor.dropped == seqs[-1] + 1  # every seq used once, dropped ones as holes
    assert bridge.processor.dropped >= dropped
    assert all(b.start_sample == b.seq * PERIOD for b in blocks)  # the clock did not slip
    played = [b for b in blocks if player.clear(bridge.jack_frame(b.start_sample)) and b.audio.any()]
    assert len(played) > 100
    for b in played:  # on its frames, across the hole and any xrun the loaded machine adds
        assert b.audio[0].tobytes() == noise(bridge.jack_frame(b.start_sample), b.frames, 0).tobytes(), b.seq


def test_jack_servers_killed_without_leaving_do_not_use_up_the_registry(tmp_path: Path) -> None:
    """JACK's registry holds 8 servers a machine; one SIGKILLed (a render or test run killed)
    keeps its entry until a server of its name registers again. Twelve servers started and
    killed in turn, more than the registry holds: every one starts, and the one after them."""
    names = []
    for k in range(13):
        server = DummyServer(log=tmp_path / f"jackd{k}.log").start()
        names.append(server.name)
        if k < 12:
            os.kill(server.pid or 0, signal.SIGKILL)
        server.stop()
    assert len(names) == 13 and set(names) <= {f"sendlearn-{os.getuid()}-{k}" for k in range(DummyServer.NAMES)}


def test_a_stop_while_a_period_is_read_leaves_that_period_out(jack_server: DummyServer) -> None:
    """``stop`` runs on another thread of the JACK process: it may take the GIL while the callback
    is between the period's audio and its MIDI, and JACK then disconnects our ports, so the MIDI
    read after it is not what was played. That period is after the end: no block without its
    events. Here the stop lands exactly there, in JACK's own thread, at the 50th period read."""
    from sendlearn.plugin.live.jack_host import JackWriter

    writer = JackWriter(name="racer", audio_ports=1, servername=jack_server.name)
    reads = []

    class StopMidway:
        def __init__(self, port: jack.MidiPort) -> None:
            self.port = port

        def incoming_midi_events(self):  # noqa: ANN202
            reads.append(writer.client.last_frame_time)
            if len(reads) == 50:
                writer._ended = True  # what stop() does first, its thread holding the GIL here
            return self.port.incoming_midi_events()

    writer._midi_port = StopMidway(writer._midi_port)  # type: ignore[assignment]
    try:
        writer.client.activate()
        deadline = time.monotonic() + 60  # a hang guard only
        while len(reads) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # periods after the end: passed through, never captured
    finally:
        writer.stop()
        writer.rings.unlink()
    assert len(reads) == 50  # the periods after the stop did not read MIDI at all
    assert writer.rings.count(Control.HEAD) == 49  # the 50th, read across the stop, is not a period


def test_an_audio_process_whose_parent_is_gone_ends_quietly() -> None:
    """Ctrl-C on a batch takes a worker before its audio process has said its closing line: the
    pipe is closed, and the line is dropped without a traceback on the user's shared stderr."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5); "
                              "from sendlearn.plugin.live.host_process import tell_parent; "
                              "tell_parent({'cycles': 1}); tell_parent({'cycles': 2})"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the parent is gone
    assert child.wait(timeout=30) == 0
    assert child.stderr.read() == b""
