"""The JACK bridge at 128-frame periods, 48 kHz: xruns, callback cost, virtual-port timing.

    .venv/bin/python scripts/bench_live.py [--seconds 600] [--baseline-seconds S] [--sync]

Starts its own ``jackd -d dummy`` (asynchronous, jackd's default, unless ``--sync``), feeds
it from separate processes the way a DAW would: ``jack_metro`` (audio), ``jack_midiseq``
(JACK MIDI) and a python-rtmidi sender (this script with ``--sender``) writing to the
bridge's virtual port at random times, with the transport rolling. Then, in one session:

1. baseline C: ``jack_simple_client`` (jackd2's example client, a sine in C) alone;
2. baseline Python: a bare pass-through JACK client (JACK-Client, inputs copied to outputs);
3. bridge: ``JackBridge`` with the same inputs, streaming through an adaptive ``Sender`` over a
   loopback websocket to a real receiver (``sendlearn serve`` in its own process); the
   virtual-port figures are read back from the dataset it wrote.

The baselines run half before the bridge and half after it. Xruns are counted for every phase by one control client (no process callback) from the
server's notifications. Reports xruns for each, callback time p50/p99 as % of the period, and the virtual port's
|estimate - truth| p50/p99 with its stored bound (truth: the sender's frame on the cycle
timeline when it sent). Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jack
import numpy as np
import pyarrow.parquet as pq
from receiver_process import ReceiverProcess  # scripts/, beside this file

from sendlearn.capture import StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.plugin.live.bridge import JackBridge
from sendlearn.plugin.live.ring import Control
from sendlearn.plugin.live.runner import DummyServer
from sendlearn.plugin.live.virtual_port import wrap_delta
from sendlearn.transport.sender import Sender

RATE, PERIOD, CHANNELS = 48000, 128, 2
SLOTS = 1 << 16


def engine_now(client: jack.Client) -> int:
    """Now on the cycle timeline (see virtual_port.py for why not ``frame_time``)."""
    while True:
        cycle = client.last_frame_time
        since = client.frames_since_cycle_start
        if client.last_frame_time == cycle:
            return cycle + since


def run_sender(server: str, seconds: float) -> None:
    """Child process: send note-ons at random 5-25 ms gaps; print (frame before send, frame
    after, bytes hex) as JSON. The message entered rtmidi's ring somewhere in between."""
    import rtmidi

    clock = jack.Client("bench-clock", no_start_server=True, servername=server)
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-sender")
    out.open_virtual_port("out")
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the bridge is connected
    rng = np.random.default_rng(1)
    sent = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        time.sleep(float(rng.uniform(0.005, 0.025)))
        message = [0x90 | i % 16, i // 16 % 128, 1 + i // 2048 % 127]  # unique for 260k sends
        before = engine_now(clock)
        out.send_message(message)
        sent.append((before, engine_now(clock), bytes(message).hex()))  # bracket the ring write
        i += 1
    time.sleep(0.1)
    print(json.dumps(sent), flush=True)
    out.close_port()
    out.delete()
    clock.close()


class Bare:
    """The baseline: inputs copied to outputs, nothing else, timed like the bridge."""

    def __init__(self, server: str) -> None:
        self.client = jack.Client("bare", no_start_server=True, servername=server)
        self.pairs = [(self.client.inports.register(f"in_{i + 1}"), self.client.outports.register(f"out_{i + 1}"))
                      for i in range(CHANNELS)]
        self.midi = self.client.midi_inports.register("midi_in")
        self.xruns = 0
        self.times = np.zeros(SLOTS, dtype=np.int64)
        self.cycles = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _process(self, frames: int) -> None:
        t0 = time.perf_counter_ns()
        for source, sink in self.pairs:
            sink.get_array()[:] = source.get_array()
        for _ in self.midi.incoming_midi_events():
            pass
        self.times[self.cycles & (SLOTS - 1)] = time.perf_counter_ns() - t0
        self.cycles += 1

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1

    @property
    def inputs(self) -> list[str]:
        return [s.name for s, _ in self.pairs]

    @property
    def midi_input(self) -> str:
        return self.midi.name


class TimeCollector:
    """Copies new entries out of a client's 65536-slot timing ring every few seconds."""

    def __init__(self, ring: Callable[[], np.ndarray], cycles: Callable[[], int]) -> None:
        self.ring, self.cycles = ring, cycles
        self.seen = 0
        self.parts: list[np.ndarray] = []

    def poll(self) -> None:
        now = self.cycles()
        new = min(now - self.seen, SLOTS)
        if new > 0:
            self.parts.append(np.array(self.ring()[-new:]))
        self.seen = now

    def values_us(self) -> np.ndarray:
        return np.concatenate(self.parts) / 1000.0 if self.parts else np.zeros(1)


def connect_sources(client: jack.Client, inputs: list[str], midi_input: str) -> None:
    audio = [p.name for p in client.get_ports("metro", is_audio=True, is_output=True)]
    midi = [p.name for p in client.get_ports("seq", is_midi=True, is_output=True)]
    for port in inputs:
        client.connect(audio[0], port)
    client.connect(midi[0], midi_input)


def run_phase(seconds: float, collector: TimeCollector, sample: Callable[[], float]) -> list[float]:
    loads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        collector.poll()
        loads.append(sample())
    return loads


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="bridge phase length")
    parser.add_argument("--baseline-seconds", type=float, help="bare client phase length (default: --seconds)")
    parser.add_argument("--sync", action="store_true", help="run jackd -S (synchronous)")
    parser.add_argument("--sender", metavar="SERVER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender(args.sender, args.seconds)
        return
    baseline_seconds = args.seconds if args.baseline_seconds is None else args.baseline_seconds
    log = Path("/tmp") / f"bench_live_jackd_{int(time.time())}.log"
    children: list[subprocess.Popen] = []
    with DummyServer(rate=RATE, period=PERIOD, sync=args.sync, log=log) as server:
        try:
            result = bench(server, args.seconds, baseline_seconds, children)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
                    child.wait(5)
    print_table(result)
    print(json.dumps(result))


def bench(server: DummyServer, seconds: float, baseline_seconds: float, children: list[subprocess.Popen]) -> dict:
    children.append(subprocess.Popen(["jack_metro", "-n", "metro", "-b", "120", "-f", "880", "-D", "40"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    children.append(subprocess.Popen(["jack_midiseq", "seq", "24000", "0", "60", "8000", "12000", "63", "8000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    control = jack.Client("bench-control", no_start_server=True, servername=server.name)
    deadline = time.monotonic() + 10
    while not (control.get_ports("metro", is_output=True) and control.get_ports("seq", is_output=True)):
        if time.monotonic() > deadline:
            raise RuntimeError("jack_metro / jack_midiseq did not register their ports")
        time.sleep(0.05)
    control.transport_start()
    xruns = [0]
    control.set_xrun_callback(lambda delayed: xruns.__setitem__(0, xruns[0] + 1))
    control.activate()

    def c_phase(length: float) -> tuple[int, list[float]]:
        simple = subprocess.Popen(["jack_simple_client", "bench-simple", server.name], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env={**os.environ, "JACK_NO_START_SERVER": "1"})
        children.append(simple)
        time.sleep(0.5)
        before = xruns[0]
        loads = run_phase(length, TimeCollector(lambda: np.zeros(SLOTS, np.int64), lambda: 0), control.cpu_load)
        count = xruns[0] - before
        simple.terminate()
        simple.wait(5)
        return count, loads

    def bare_phase(length: float, times: list[np.ndarray]) -> tuple[int, list[float]]:
        bare = Bare(server.name)
        bare.client.activate()
        connect_sources(control, bare.inputs, bare.midi_input)
        collector = TimeCollector(lambda: np.roll(bare.times, -(bare.cycles & (SLOTS - 1))), lambda: bare.cycles)
        time.sleep(0.5)  # let the graph settle; xruns counted from here
        before = xruns[0]
        collector.seen = bare.cycles
        loads = run_phase(length, collector, control.cpu_load)
        count = xruns[0] - before
        bare.client.deactivate()
        bare.client.close()
        times.append(collector.values_us())
        return count, loads

    # 1, 2: the baselines, half before the bridge and half after it, so a machine whose load
    # drifts during the run (other work beside it) weighs on all three alike
    bare_parts: list[np.ndarray] = []
    c_xruns, c_loads = c_phase(baseline_seconds / 2)
    bare_xruns, bare_loads = bare_phase(baseline_seconds / 2, bare_parts)

    # 3. bridge, with the rtmidi sender (its own process) writing to the virtual port
    sender = subprocess.Popen([sys.executable, __file__, "--sender", server.name, "--seconds", str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    children.append(sender)
    assert sender.stdout is not None and sender.stdin is not None
    if sender.stdout.readline().strip() != "ready":
        raise RuntimeError("the rtmidi sender did not start")
    data_dir = Path(tempfile.mkdtemp(prefix="bench_live_"))
    receiver = ReceiverProcess(data_dir)
    children.append(receiver.process)
    senders: list[Sender] = []

    def open_stream(info: StreamInfo) -> CaptureProcessor:
        processor = CaptureProcessor.for_stream(info, realtime=True)
        senders.append(Sender(receiver.url, info, processor.handoff, adaptive=True).start())
        return processor

    with JackBridge(open_stream, name="bridge", audio_ports=CHANNELS, servername=server.name,
                    virtual_port="keys", session="bench", stream="live") as bridge:
        connect_sources(control, bridge.inputs, bridge.midi_input)
        control.connect("bench-sender:out", bridge.virtual_port_name)
        time.sleep(0.5)
        xruns_before, jumps_before = xruns[0], bridge.frame_jumps  # connecting may cost some
        bridge_times = TimeCollector(bridge.callback_times_ns, lambda: bridge.cycles)
        bridge_times.seen = bridge.cycles
        sender.stdin.write("go\n")
        sender.stdin.flush()
        bridge_loads = run_phase(seconds, bridge_times, control.cpu_load)
        bridge_xruns, jumps = xruns[0] - xruns_before, bridge.frame_jumps - jumps_before
        sent = json.loads(sender.stdout.readline())
    (stream_sender,) = senders
    stream_sender.close(timeout=300)
    more_bare, loads = bare_phase(baseline_seconds / 2, bare_parts)
    bare_xruns, bare_loads = bare_xruns + more_bare, bare_loads + loads
    more_c, loads = c_phase(baseline_seconds / 2)
    c_xruns, c_loads = c_xruns + more_c, c_loads + loads
    receiver.stop()
    events, blocks, sent_bytes = read_dataset(data_dir)
    control.transport_stop()
    control.close()
    try:
        sender.wait(10)
    except subprocess.TimeoutExpired:
        sender.kill()  # its results are in; a hang in rtmidi/JACK teardown must not stop the report
        sender.wait(5)

    errors, bounds, over, widths, missing = [], [], 0, [], 0
    for before, after, hexdata in sent:
        got = events.get(bytes.fromhex(hexdata))
        if got is None:
            missing += 1
            continue
        sample, bound = got
        estimate = bridge.jack_frame(sample)  # per stretch: an xrun moves frame time against samples
        early, late = wrap_delta(estimate, after), wrap_delta(estimate, before)  # vs the bracket's two ends
        errors.append(abs(late))  # reported against "before": conservative
        bounds.append(bound)
        widths.append(wrap_delta(after, before))
        over += not (-bound <= late and early <= bound)  # no instant in the bracket within bound
    errors_a, bounds_a = np.array(errors or [0]), np.array(bounds or [0])
    period_us = PERIOD / RATE * 1e6
    bt, ct = np.concatenate(bare_parts), bridge_times.values_us()
    return {
        "sample_rate": RATE, "period": PERIOD, "sync": server.sync,
        "seconds": seconds, "baseline_seconds": baseline_seconds,
        "xruns_c_client": c_xruns, "xruns_bare": bare_xruns, "xruns_bridge": bridge_xruns,
        # the aim: <= 1.1x the C client's, in the same time
        "xruns_bridge_vs_c": bridge_xruns / max(c_xruns * seconds / max(baseline_seconds, 1e-9), 1.0),
        # xruns beyond what the bare client saw in the same time: the ones we can blame on us
        "xruns_caused_by_bridge": max(0, round(bridge_xruns - bare_xruns * seconds / max(baseline_seconds, 1e-9))),
        "callback_bare_p50_pct": pct(bt, 50) / period_us * 100, "callback_bare_p99_pct": pct(bt, 99) / period_us * 100,
        "callback_p50_pct": pct(ct, 50) / period_us * 100, "callback_p99_pct": pct(ct, 99) / period_us * 100,
        "callback_p50_us": pct(ct, 50), "callback_p99_us": pct(ct, 99), "callback_max_us": float(ct.max()),
        "callback_cycles": int(ct.size),
        "dsp_load_c_mean": float(np.mean(c_loads)), "dsp_load_bare_mean": float(np.mean(bare_loads)), "dsp_load_bridge_mean": float(np.mean(bridge_loads)),
        "blocks": blocks, "dropped": bridge.processor.dropped, "frame_jumps": jumps, "missed_frames": bridge.missed_frames,
        "streamed_bytes": sent_bytes, "stream_quality_final": stream_sender.level.name,
        "stream_connections": stream_sender.connections, "dataset": str(data_dir),
        "callback_errors": bridge.count(Control.ERRORS), "capture_errors": bridge.capture_errors,
        "midi_events": bridge.midi_events, "ring_dropped_periods": bridge.count(Control.DROPPED_PERIODS),
        "virtual_sent": len(sent), "virtual_missing": missing, "virtual_late": bridge.virtual.late, "virtual_moved": bridge.virtual.moved,
        "virtual_received": bridge.count(Control.MESSAGES_RECEIVED),
        "virtual_dropped": bridge.count(Control.MESSAGES_DROPPED), "virtual_left_over": bridge.virtual.left_over,
        "virtual_error_p50": pct(errors_a, 50), "virtual_error_p99": pct(errors_a, 99),
        "virtual_error_max": int(errors_a.max()), "virtual_bound_p50": pct(bounds_a, 50),
        "virtual_bound_max": int(bounds_a.max()),
        "virtual_send_bracket_p99": pct(np.array(widths or [0]), 99), "virtual_over_bound": over,
        "virtual_within_bound": over == 0 and missing == 0,
    }


def read_dataset(data_dir: Path) -> tuple[dict[bytes, tuple[int, int]], int, int]:
    """Virtual-port events (message -> (sample, bound)), block count and audio bytes, from disk."""
    folder = data_dir / "sessions" / "bench" / "live"
    table = pq.read_table(folder / "events.parquet").to_pydict()
    events = {data: (sample, bound) for sample, data, bound in
              zip(table["sample"], table["data"], table["timing_error_samples"], strict=True) if bound is not None}
    info = json.loads((folder / "stream.json").read_text())
    lost = [g for g in info["gaps"] if g["reason"] != "dropped by the sender's audio thread"]
    if not info["complete"] or lost:  # cycles the bridge missed (xruns) are gaps on the clock: expected
        raise RuntimeError(f"the streamed dataset is not whole: {lost}")
    return events, info["blocks"], (folder / info["audio"]["file"]).stat().st_size


def print_table(r: dict) -> None:
    rows = [
        ("server", f"jackd -d dummy -r {r['sample_rate']} -p {r['period']}" + (" (-S)" if r["sync"] else " (async)")),
        ("xruns, C client (jack_simple_client)", f"{r['xruns_c_client']} in {r['baseline_seconds']:.0f} s"),
        ("xruns, bare Python pass-through", f"{r['xruns_bare']} in {r['baseline_seconds']:.0f} s"),
        ("xruns, bridge", f"{r['xruns_bridge']} in {r['seconds']:.0f} s ({r['xruns_bridge_vs_c']:.2f}x the C client)"),
        ("callback, bare p50 / p99", f"{r['callback_bare_p50_pct']:.2f} % / {r['callback_bare_p99_pct']:.2f} % of period"),
        ("callback, bridge p50 / p99", f"{r['callback_p50_pct']:.2f} % / {r['callback_p99_pct']:.2f} % of period "
                                       f"({r['callback_p50_us']:.0f} / {r['callback_p99_us']:.0f} us, "
                                       f"max {r['callback_max_us']:.0f} us)"),
        ("JACK DSP load, C / bare / bridge", f"{r['dsp_load_c_mean']:.1f} % / {r['dsp_load_bare_mean']:.1f} % / "
                                             f"{r['dsp_load_bridge_mean']:.1f} %"),
        ("blocks / dropped / frame jumps", f"{r['blocks']} / {r['dropped']} / {r['frame_jumps']}"),
        ("JACK MIDI events", str(r["midi_events"])),
        ("virtual port |error| p50 / p99 / max", f"{r['virtual_error_p50']:.0f} / {r['virtual_error_p99']:.0f} / "
                                                 f"{r['virtual_error_max']} samples"),
        ("virtual port bound p50 / max", f"{r['virtual_bound_p50']:.0f} / {r['virtual_bound_max']} samples; "
                                         f"over bound: {r['virtual_over_bound']} "
                                         f"({r['virtual_sent']} sent, {r['virtual_missing']} missing)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
