"""The JACK bridge at 128-frame periods, 48 kHz: xruns beside a C and a bare Python client, callback cost, virtual-port timing.

    .venv/bin/python scripts/bench_live.py [--seconds 60] [--rounds 2] [--cpus N] [--hogs H] [--sync] [--audio portaudio]

Starts its own ``jackd -d dummy`` (asynchronous, jackd's default, unless ``--sync``), feeds
it from separate processes the way a DAW would: ``jack_metro`` (audio), ``jack_midiseq``
(JACK MIDI) and a python-rtmidi sender (this script with ``--sender``) writing to the
bridge's virtual port at random times, with the transport rolling. Then ``--rounds`` rounds of
three phases of ``--seconds`` each, interleaved in turning order (C, bare, bridge; bare, bridge,
C; ...) so a machine whose load drifts weighs on all three alike:

1. C: ``jack_simple_client`` (jackd2's example client, a sine in C) alone;
2. bare Python: a pass-through JACK client (JACK-Client, inputs copied to outputs) in a Python
   process of its own (this script with ``--bare``), as the bridge's JACK process is;
3. bridge: ``JackBridge`` with the same inputs, streaming through an adaptive ``Sender`` over a
   loopback websocket to a real receiver (``sendlearn serve`` in its own process); the
   virtual-port figures are read back from the dataset it wrote.

``--audio portaudio`` adds a fourth phase to each round: ``PortAudioBridge`` capturing the same
metronome through PortAudio's JACK host API (its device is the ``metro`` client), streamed to the
receiver alike, reported beside the bridge: server xruns in its phase, PortAudio's input
overflows and clock leaps, callback cost, blocks and drops.

``--cpus N`` pins this process before anything starts, as ``taskset`` would, so jackd, the
feeders, both baselines, the bridge's two processes and the receiver all share N CPUs: any
machine measures the small-machine case. ``--hogs H`` runs H busy Python loops beside them.
Xruns are counted for every phase by one control client (no process callback) from the
server's notifications. Reports xruns for each (and per round), callback time p50/p99 as % of
the period, JACK's DSP load, and the virtual port's |estimate - truth| p50/p99 with its stored
bound (truth: the sender's frame on the cycle timeline when it sent). Prints a table, then one
JSON object as the last line.
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
from sendlearn.plugin.live.portaudio_bridge import PortAudioBridge
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


def run_bare(server: str) -> None:
    """Child process: the bare client alone in a Python process of its own (as the bridge's
    JACK process is), gc frozen like it. Prints its ports; on a line from stdin (the phase's
    start) and then EOF (its end) saves the callback times it took meanwhile to the path given."""
    import gc

    bare = Bare(server)
    gc.collect()
    gc.freeze()
    bare.client.activate()
    print(json.dumps({"inputs": bare.inputs, "midi_input": bare.midi_input}), flush=True)
    sys.stdin.readline()
    start = bare.cycles
    path = sys.stdin.readline().strip()
    end = bare.cycles
    bare.client.deactivate()
    count = min(end - start, SLOTS)
    np.save(path, np.roll(bare.times, -(end & (SLOTS - 1)))[SLOTS - count:])
    bare.client.close()


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
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of C, bare and bridge phases, interleaved (the order turns each round)")
    parser.add_argument("--cpus", type=int, help="pin everything (jackd, baselines, bridge, receiver) to this many CPUs")
    parser.add_argument("--hogs", type=int, default=0, help="busy Python loops beside it (load), pinned alike")
    parser.add_argument("--sync", action="store_true", help="run jackd -S (synchronous)")
    parser.add_argument("--audio", choices=["jack", "portaudio"], default="jack",
                        help="portaudio: also a phase capturing through PortAudio's JACK host API, side by side")
    parser.add_argument("--sender", metavar="SERVER", help=argparse.SUPPRESS)
    parser.add_argument("--bare", metavar="SERVER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender(args.sender, args.seconds)
        return
    if args.bare:
        run_bare(args.bare)
        return
    cpus = sorted(os.sched_getaffinity(0))
    if args.cpus is not None:
        if not 1 <= args.cpus <= len(cpus):
            parser.error(f"--cpus must be 1..{len(cpus)}")
        cpus = cpus[:args.cpus]
        # as ``taskset``: every process and thread started from here on inherits the mask
        os.sched_setaffinity(0, cpus)
    log = Path("/tmp") / f"bench_live_jackd_{int(time.time())}.log"
    children: list[subprocess.Popen] = []
    for _ in range(args.hogs):
        children.append(subprocess.Popen([sys.executable, "-c", "while 1: pass"]))
    load_before = os.getloadavg()
    try:
        with DummyServer(rate=RATE, period=PERIOD, sync=args.sync, log=log) as server:
            result = bench(server, args.seconds, args.rounds, children, portaudio=args.audio == "portaudio")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(5)
    result.update(cpus=cpus, hogs=args.hogs, machine_cpus=os.cpu_count(), loadavg_before=load_before,
                  loadavg_after=os.getloadavg())
    print_table(result)
    print(json.dumps(result))


def bench(server: DummyServer, seconds: float, rounds: int, children: list[subprocess.Popen],
          portaudio: bool = False) -> dict:
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
    data_dir = Path(tempfile.mkdtemp(prefix="bench_live_"))
    receiver = ReceiverProcess(data_dir)
    children.append(receiver.process)

    def c_phase() -> dict:
        simple = subprocess.Popen(["jack_simple_client", "bench-simple", server.name], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env={**os.environ, "JACK_NO_START_SERVER": "1"})
        children.append(simple)
        time.sleep(0.5)
        before = xruns[0]
        loads = run_phase(seconds, TimeCollector(lambda: np.zeros(SLOTS, np.int64), lambda: 0), control.cpu_load)
        count = xruns[0] - before
        simple.terminate()
        simple.wait(5)
        return {"xruns": count, "loads": loads}

    def bare_phase() -> dict:
        # a process of its own, like the bridge's JACK process: not this one, busy with the rest
        bare = subprocess.Popen([sys.executable, __file__, "--bare", server.name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        children.append(bare)
        assert bare.stdout is not None and bare.stdin is not None
        ports = json.loads(bare.stdout.readline())
        connect_sources(control, ports["inputs"], ports["midi_input"])
        time.sleep(0.5)  # let the graph settle; xruns counted from here
        before = xruns[0]
        bare.stdin.write("go\n")
        bare.stdin.flush()
        loads = run_phase(seconds, TimeCollector(lambda: np.zeros(SLOTS, np.int64), lambda: 0), control.cpu_load)
        count = xruns[0] - before
        path = Path(data_dir) / f"bare_{time.monotonic_ns()}.npy"
        bare.stdin.write(f"{path}\n")
        bare.stdin.close()
        bare.wait(30)
        return {"xruns": count, "loads": loads, "times": np.load(path) / 1000.0}

    def bridge_phase(index: int) -> dict:
        # the rtmidi sender (its own process) writes to the virtual port, opened before the bridge
        sender = subprocess.Popen([sys.executable, __file__, "--sender", server.name, "--seconds", str(seconds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(sender)
        assert sender.stdout is not None and sender.stdin is not None
        if sender.stdout.readline().strip() != "ready":
            raise RuntimeError("the rtmidi sender did not start")
        senders: list[Sender] = []

        def open_stream(info: StreamInfo) -> CaptureProcessor:
            processor = CaptureProcessor.for_stream(info, realtime=True)
            senders.append(Sender(receiver.url, info, processor.handoff, adaptive=True).start())
            return processor

        with JackBridge(open_stream, name="bridge", audio_ports=CHANNELS, servername=server.name,
                        virtual_port="keys", session="bench", stream=f"live{index}") as bridge:
            connect_sources(control, bridge.inputs, bridge.midi_input)
            control.connect("bench-sender:out", bridge.virtual_port_name)
            time.sleep(0.5)
            xruns_before, jumps_before = xruns[0], bridge.frame_jumps  # connecting may cost some
            times = TimeCollector(bridge.callback_times_ns, lambda: bridge.cycles)
            times.seen = bridge.cycles
            sender.stdin.write("go\n")
            sender.stdin.flush()
            loads = run_phase(seconds, times, control.cpu_load)
            count, jumps = xruns[0] - xruns_before, bridge.frame_jumps - jumps_before
            sent = json.loads(sender.stdout.readline())
        (stream_sender,) = senders
        stream_sender.close(timeout=300)
        try:
            sender.wait(10)
        except subprocess.TimeoutExpired:
            sender.kill()  # its results are in; a hang in rtmidi/JACK teardown must not stop the report
            sender.wait(5)
        return {"xruns": count, "loads": loads, "times": times.values_us(), "bridge": bridge, "sent": sent,
                "jumps": jumps, "quality": stream_sender.level.name, "connections": stream_sender.connections}

    def portaudio_phase(index: int) -> dict:
        senders: list[Sender] = []

        def open_stream(info: StreamInfo) -> CaptureProcessor:
            processor = CaptureProcessor.for_stream(info, realtime=True)
            senders.append(Sender(receiver.url, info, processor.handoff, adaptive=True).start())
            return processor

        with PortAudioBridge(open_stream, device="metro", block_size=PERIOD, session="bench",
                             stream=f"portaudio{index}") as bridge:
            time.sleep(0.5)
            xruns_before = xruns[0]
            overflows, leaps = bridge.count(Control.INPUT_OVERFLOWS), bridge.count(Control.CLOCK_JUMPS)
            times = TimeCollector(bridge.callback_times_ns, lambda: bridge.cycles)
            times.seen = bridge.cycles
            loads = run_phase(seconds, times, control.cpu_load)
            count = xruns[0] - xruns_before
            overflows = bridge.count(Control.INPUT_OVERFLOWS) - overflows
            leaps = bridge.count(Control.CLOCK_JUMPS) - leaps
        (stream_sender,) = senders
        stream_sender.close(timeout=300)
        return {"xruns": count, "loads": loads, "times": times.values_us(), "bridge": bridge,
                "overflows": overflows, "leaps": leaps}

    phases: dict[str, list[dict]] = {"c": [], "bare": [], "bridge": [], **({"portaudio": []} if portaudio else {})}
    order = list(phases)
    for index in range(rounds):
        # interleaved: C, bare, bridge; then bare, bridge, C; ... so a machine whose load drifts
        # (other work beside it) weighs on all of them alike
        for kind in order[index % len(order):] + order[:index % len(order)]:
            phase = (bridge_phase(index) if kind == "bridge" else bare_phase() if kind == "bare"
                     else portaudio_phase(index) if kind == "portaudio" else c_phase())
            phases[kind].append(phase)
            print(f"round {index + 1}/{rounds} {kind}: {phase['xruns']} xruns in {seconds:.0f} s", file=sys.stderr,
                  flush=True)
    receiver.stop()
    control.transport_stop()
    control.close()

    errors, bounds, over, widths, missing = [], [], 0, [], 0
    blocks = sent_bytes = 0
    for index, phase in enumerate(phases["bridge"]):
        events, count, size = read_dataset(data_dir, f"live{index}")
        blocks, sent_bytes = blocks + count, sent_bytes + size
        bridge = phase["bridge"]
        for before, after, hexdata in phase["sent"]:
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
    bt = np.concatenate([p["times"] for p in phases["bare"]])
    ct = np.concatenate([p["times"] for p in phases["bridge"]])
    bridges = [p["bridge"] for p in phases["bridge"]]
    last = phases["bridge"][-1]

    def total(kind: str) -> int:
        return sum(p["xruns"] for p in phases[kind])

    def mean_load(kind: str) -> float:
        return float(np.mean([load for p in phases[kind] for load in p["loads"]]))

    extra = {}
    if portaudio:
        pa = phases["portaudio"]
        pt = np.concatenate([p["times"] for p in pa])
        extra = {
            "xruns_portaudio": total("portaudio"), "portaudio_input_overflows": sum(p["overflows"] for p in pa),
            "portaudio_clock_leaps": sum(p["leaps"] for p in pa),
            "portaudio_callback_p50_pct": pct(pt, 50) / period_us * 100,
            "portaudio_callback_p99_pct": pct(pt, 99) / period_us * 100,
            "portaudio_blocks": sum(p["bridge"].processor.next_seq for p in pa),
            "portaudio_dropped": sum(p["bridge"].processor.dropped for p in pa),
            "dsp_load_portaudio_mean": mean_load("portaudio"),
        }
    return {
        **extra,
        "sample_rate": RATE, "period": PERIOD, "sync": server.sync, "seconds": seconds, "rounds": rounds,
        "xruns_c_client": total("c"), "xruns_bare": total("bare"), "xruns_bridge": total("bridge"),
        "xruns_by_round": {kind: [p["xruns"] for p in phases[kind]] for kind in phases},
        # the aim: <= 1.5x the bare Python client's, in the same time (no xrun at all: 1.0)
        "xruns_bridge_vs_bare": total("bridge") / max(total("bare"), 1) if total("bridge") else 1.0,
        "xruns_bridge_vs_c": total("bridge") / max(total("c"), 1) if total("bridge") else 1.0,
        "callback_bare_p50_pct": pct(bt, 50) / period_us * 100, "callback_bare_p99_pct": pct(bt, 99) / period_us * 100,
        "callback_p50_pct": pct(ct, 50) / period_us * 100, "callback_p99_pct": pct(ct, 99) / period_us * 100,
        "callback_p50_us": pct(ct, 50), "callback_p99_us": pct(ct, 99), "callback_max_us": float(ct.max()),
        "callback_cycles": int(ct.size),
        "dsp_load_c_mean": mean_load("c"), "dsp_load_bare_mean": mean_load("bare"),
        "dsp_load_bridge_mean": mean_load("bridge"),
        "blocks": blocks, "dropped": sum(b.processor.dropped for b in bridges),
        "frame_jumps": sum(p["jumps"] for p in phases["bridge"]),
        "missed_frames": sum(b.missed_frames for b in bridges),
        "streamed_bytes": sent_bytes, "stream_quality_final": last["quality"],
        "stream_connections": last["connections"], "dataset": str(data_dir),
        "callback_errors": sum(b.count(Control.ERRORS) for b in bridges),
        "capture_errors": sum(b.capture_errors for b in bridges),
        "midi_events": sum(b.midi_events for b in bridges),
        "ring_dropped_periods": sum(b.count(Control.DROPPED_PERIODS) for b in bridges),
        "virtual_sent": sum(len(p["sent"]) for p in phases["bridge"]), "virtual_missing": missing,
        "virtual_late": sum(b.virtual.late for b in bridges), "virtual_moved": sum(b.virtual.moved for b in bridges),
        "virtual_received": sum(b.count(Control.MESSAGES_RECEIVED) for b in bridges),
        "virtual_dropped": sum(b.count(Control.MESSAGES_DROPPED) for b in bridges),
        "virtual_left_over": sum(b.virtual.left_over for b in bridges),
        "virtual_error_p50": pct(errors_a, 50), "virtual_error_p99": pct(errors_a, 99),
        "virtual_error_max": int(errors_a.max()), "virtual_bound_p50": pct(bounds_a, 50),
        "virtual_bound_max": int(bounds_a.max()),
        "virtual_send_bracket_p99": pct(np.array(widths or [0]), 99), "virtual_over_bound": over,
        "virtual_within_bound": over == 0 and missing == 0,
    }


def read_dataset(data_dir: Path, stream: str) -> tuple[dict[bytes, tuple[int, int]], int, int]:
    """Virtual-port events (message -> (sample, bound)), block count and audio bytes, from disk."""
    folder = data_dir / "sessions" / "bench" / stream
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
        ("CPUs / hogs / load average before, after", f"{r['cpus']} of {r['machine_cpus']} / {r['hogs']} / "
                                                     f"{r['loadavg_before'][0]:.2f}, {r['loadavg_after'][0]:.2f}"),
        ("phases", f"{r['rounds']} rounds x {r['seconds']:.0f} s each, interleaved"),
        ("xruns, C client (jack_simple_client)", f"{r['xruns_c_client']} {r['xruns_by_round']['c']}"),
        ("xruns, bare Python pass-through", f"{r['xruns_bare']} {r['xruns_by_round']['bare']}"),
        ("xruns, bridge", f"{r['xruns_bridge']} {r['xruns_by_round']['bridge']} "
                          f"({r['xruns_bridge_vs_bare']:.2f}x bare, {r['xruns_bridge_vs_c']:.2f}x C)"),
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
    if "xruns_portaudio" in r:
        rows += [
            ("xruns, PortAudio (JACK host API)", f"{r['xruns_portaudio']} {r['xruns_by_round']['portaudio']}"),
            ("PortAudio input overflows / clock leaps", f"{r['portaudio_input_overflows']} / {r['portaudio_clock_leaps']}"),
            ("callback, PortAudio p50 / p99", f"{r['portaudio_callback_p50_pct']:.2f} % / "
                                              f"{r['portaudio_callback_p99_pct']:.2f} % of period"),
            ("PortAudio blocks / dropped, DSP load", f"{r['portaudio_blocks']} / {r['portaudio_dropped']}, "
                                                     f"{r['dsp_load_portaudio_mean']:.1f} %"),
        ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
