"""``sendlearn live``: capture beside a running DAW through JACK (and a virtual MIDI port), or
from any audio device through PortAudio (``--audio portaudio[:DEVICE]``, docs/live.md)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sendlearn.transport.tls import client_context

if TYPE_CHECKING:  # imported where they run: the CLI starts without JACK or the sender's libraries
    from sendlearn.capture import StreamInfo
    from sendlearn.capture.sink import LiveStream
    from sendlearn.plugin.live.runner import BridgeStats

# blocks the hand-off holds between the capturing thread and the sink's drain: ~2.7 s of
# 128-frame periods at 48 kHz. A block offered to a full hand-off is dropped, counted, and
# recorded in the dataset as a gap ("dropped by the sender's audio thread").
HANDOFF_BLOCKS = 1024


def add_parser(commands: argparse._SubParsersAction, default_data_dir: Path) -> None:
    live = commands.add_parser("live", help="capture beside a running DAW through JACK or any audio device")
    where = live.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=default_data_dir,
                       help="write here, straight into the store (default %(default)s)")
    where.add_argument("--server", help="stream to this receiver (ws:// or wss:// URL)")
    live.add_argument("--token", help="token for --server (default: $SENDLEARN_TOKEN)")
    live.add_argument("--ca-file", help="CA certificate for a wss:// --server")
    live.add_argument("--spool", type=Path, help="with --server: keep unacknowledged blocks here; a restart on it "
                      "goes on with the same take (one folder per session-stream inside)")
    live.add_argument("--session", default="live", help="session id (default %(default)s)")
    live.add_argument("--stream", help="stream id (default: jack, or portaudio with --audio portaudio)")
    live.add_argument("--audio", default="jack", metavar="jack|portaudio[:DEVICE]",
                      help="where the audio comes from: our JACK client (default), or a PortAudio input device "
                      "(an index or a part of its name, see --list-devices; no DEVICE: the default input)")
    live.add_argument("--list-devices", action="store_true",
                      help="print the audio devices PortAudio sees (host API, channels, rates) and exit")
    live.add_argument("--channels", type=int, help="with --audio portaudio: the device's first N inputs (default all)")
    live.add_argument("--rate", type=int, help="with --audio portaudio: sample rate in Hz (default the device's)")
    live.add_argument("--block-size", type=int, default=256,
                      help="with --audio portaudio: frames a block (default %(default)s)")
    live.add_argument("--jack-name", default="sendlearn", help="our JACK client name")
    live.add_argument("--jack-server", help="JACK server name (default: the default server)")
    live.add_argument("--audio-ports", type=int, default=2, help="audio inputs, passed through to outputs")
    live.add_argument("--virtual-port", metavar="NAME", help="also open a python-rtmidi virtual MIDI input")
    live.add_argument("--midi-in", action="append", default=[], metavar="PORT",
                      help="with --audio portaudio: capture this MIDI input port (any rtmidi sees: a name or a unique "
                      "part of one), stamped on the audio clock with its error bound (repeatable)")
    live.add_argument("--clock", metavar="jack|free|midi:PORT|link",
                      help="the playhead: JACK's transport (--audio jack, the default there), free (--bpm/--meter, "
                      "not playing: the default with portaudio), midi:PORT (MIDI clock, Start/Stop/Continue and "
                      "Song Position Pointer from that port, with --audio portaudio) or link (the Ableton Link "
                      "session's tempo, beat and start/stop)")
    live.add_argument("--quantum", type=float,
                      help="with --clock link: beats of Link's phase (default: a bar of --meter, in quarter notes)")
    live.add_argument("--bpm", type=float, default=120.0,
                      help="tempo in quarter notes per minute when no JACK timebase master")
    live.add_argument("--meter", default="4/4", help="time signature when no timebase master")
    live.add_argument("--timebase-master", action="store_true", help="publish --bpm/--meter as JACK BBT")
    live.add_argument("--connect", action="append", default=[], metavar="SRC=OURS",
                      help="connect a JACK port to ours, e.g. system:capture_1=in_1 (repeatable)")
    live.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    live.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    live.set_defaults(run=run_live)


def _audio_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """("jack", None) or ("portaudio", DEVICE or None) from ``--audio``; usage errors for options
    the chosen source does not have."""
    from sendlearn.errors import UsageError

    kind, _, device = args.audio.partition(":")
    if kind not in ("jack", "portaudio") or (kind == "jack" and device):
        raise UsageError(f"--audio {args.audio!r}: write jack, portaudio or portaudio:DEVICE")
    clock = args.clock or ("jack" if kind == "jack" else "free")
    if not (clock in ("jack", "free", "link") or clock.startswith("midi:") and clock[5:]):
        raise UsageError(f"--clock {clock!r}: write jack, free, midi:PORT or link")
    if kind == "jack" and clock != "link" and clock != "jack" or kind == "portaudio" and clock == "jack":
        raise UsageError(f"--clock {clock} goes with --audio {'portaudio' if kind == 'jack' else 'jack'}")
    if args.quantum is not None:
        if clock != "link":
            raise UsageError("--quantum goes with --clock link")
        from sendlearn.plugin.live.link_clock import check_quantum

        check_quantum(args.quantum)
    if kind == "jack":
        for flag, value in (("--channels", args.channels), ("--rate", args.rate)):
            if value is not None:
                raise UsageError(f"{flag} goes with --audio portaudio (JACK's server sets its own)")
        if args.midi_in:  # JACK MIDI reaches our own JACK MIDI input, frame-exact
            raise UsageError("--midi-in goes with --audio portaudio (with jack: --connect SOURCE=midi_in)")
        return kind, None
    unsupported = [flag for flag, value in (("--connect", args.connect),
                                            ("--timebase-master", args.timebase_master)) if value]
    if unsupported:
        raise UsageError(f"{unsupported[0]} goes with --audio jack (not yet with portaudio)")
    return kind, device or None


def list_audio_devices() -> int:
    from importlib.util import find_spec

    from sendlearn.errors import MissingExtra

    if find_spec("sounddevice") is None:
        raise MissingExtra("sounddevice", "--list-devices")
    try:
        from sendlearn.plugin.live.portaudio_host import list_devices
    except OSError as exc:  # sounddevice without a PortAudio library
        raise MissingExtra("sounddevice", "--list-devices") from exc
    for line in list_devices():
        print(line)
    return 0


def run_live(args: argparse.Namespace) -> int:
    from sendlearn.errors import MissingExtra, UsageError

    if args.list_devices:
        return list_audio_devices()
    audio, device = _audio_source(args)
    args.stream = args.stream or audio

    try:
        num, den = (int(part) for part in args.meter.split("/"))
    except ValueError:
        raise UsageError(f"--meter {args.meter!r}: write it as NUM/DEN, e.g. 7/8") from None
    connect = []
    for pair in args.connect:
        source, _, ours = pair.partition("=")
        if not source or not ours:
            raise UsageError(f"--connect {pair!r}: write it as SOURCE_PORT=OUR_PORT")
        connect.append((source, ours))
    if args.spool is not None and args.server is None:
        raise UsageError("--spool keeps blocks a receiver has not acknowledged: it goes with --server "
                         "(with --data-dir the store writes every block itself, fsynced each second)")
    from importlib.util import find_spec

    midi = ["rtmidi"] if args.virtual_port or args.midi_in or (args.clock or "").startswith("midi:") else []
    midi += ["aalink"] if args.clock == "link" else []
    needed = ["sounddevice", *midi] if audio == "portaudio" else ["jack", *midi]
    missing = [name for name in needed if find_spec(name) is None]
    if missing:  # a receiver-only install: say which extra, not a traceback from the JACK process
        raise MissingExtra(missing[0], "live capture")
    from sendlearn.capture import HandOff, check_name
    from sendlearn.cli.signals import stopped_by_signals
    from sendlearn.cli.sinks import choose_sink
    from sendlearn.plugin import CaptureProcessor
    from sendlearn.plugin.live.bridge import BridgeError
    from sendlearn.plugin.live.portaudio_bridge import PortAudioBridge
    from sendlearn.plugin.live.runner import run_bridge
    from sendlearn.store.sink import SENDER_LIVE

    for name, value in (("--session", args.session), ("--stream", args.stream)):
        try:
            check_name(value, name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    # the store straight into --data-dir, or the link to --server: no receiver in this process
    sink = choose_sink(args.server, None if args.server else args.data_dir, writer=SENDER_LIVE, token=args.token,
                       ssl_context=client_context(args.ca_file), spool=args.spool)
    streams: list[tuple[StreamInfo, LiveStream]] = []
    closing: dict[str, Any] = {}  # the bridge's final figures, for stream.json's sender (either sink)

    def open_stream(info: StreamInfo) -> CaptureProcessor:  # the bridge's OpenStream
        handoff = HandOff(HANDOFF_BLOCKS)
        stream = sink.open_live(info, handoff, lambda: dict(closing))
        streams.append((info, stream))
        # a link's spool left by an earlier run: go on from its next seq and sample
        return CaptureProcessor.for_stream(info, realtime=True, handoff=handoff, first_seq=stream.first_seq,
                                           start_sample=stream.start_sample)

    stop = threading.Event()
    broken: list[str] = []  # a store that cannot write: capturing on would only drop every block
    panel = _Panel(streams) if sys.stdout.isatty() and not args.json else None

    def on_tick(stats: BridgeStats) -> None:
        for _, stream in streams:
            error = stream.figures().get("error")
            if error and error not in broken:
                broken.append(error)
                stop.set()
        if panel is not None:
            panel.update(stats)

    try:
        if audio == "portaudio":
            options: dict[str, Any] = dict(bridge_class=PortAudioBridge, device=device, channels=args.channels,
                                           rate=args.rate, block_size=args.block_size, midi_in=args.midi_in,
                                           virtual_port=args.virtual_port,
                                           clock=args.clock[5:] if (args.clock or "").startswith("midi:") else None,
                                           link=args.clock == "link", quantum=args.quantum)
        else:
            options = dict(connect=connect, name=args.jack_name, servername=args.jack_server,
                           audio_ports=args.audio_ports, virtual_port=args.virtual_port,
                           timebase_master=args.timebase_master, link=args.clock == "link", quantum=args.quantum)
        with stopped_by_signals(stop):
            final: BridgeStats = run_bridge(
                open_stream, seconds=args.seconds, stop=stop, on_tick=on_tick, session=args.session,
                stream=args.stream, bpm=args.bpm, meter=(num, den), **options)
    except BaseException as exc:  # the capture failed partway: its stream is never marked complete
        for _, stream in streams:
            stream.abort(f"the capture failed: {type(exc).__name__}: {exc}")
        if isinstance(exc, BridgeError):
            hint = "" if audio == "portaudio" else " (is jackd running? e.g. `jackd -d dummy`)"
            print(f"sendlearn live: {exc}{hint}", file=sys.stderr)
            return 1
        raise
    finally:
        if panel is not None:
            panel.stop()
    closing.update(final.closing_figures())
    failed = []
    device_lost = final.device.get("device_lost")
    if device_lost:  # the device went: its streams end whole up to its last block, and the run says why
        failed.append(f"{device_lost}; the stream is complete up to then")
    for _, stream in streams:  # stopped (a signal, --seconds, a broken store): end each stream
        problem = stream.finish()
        if problem is not None:
            failed.append(problem)
    summary = {"seconds": final.seconds, "blocks": final.blocks, "dropped": final.dropped,
               "midi_events": final.midi_events, "midi_dropped": final.midi_dropped,
               "midi_rejected": final.midi_rejected, "virtual_events": final.virtual_events,
               "virtual_dropped": final.virtual_dropped, "xruns": final.xruns, "frame_jumps": final.frame_jumps,
               "callback_p99_us": final.callback_p99_us, "period_us": final.period_us,
               "sink": "link" if args.server else "store", "audio": audio, **final.device,
               "streams": [{"stream": info.stream, **stream.figures()} for info, stream in streams],
               "destination": args.server or str(args.data_dir), "failures": failed}
    senders = [sender for _, stream in streams if (sender := getattr(stream, "sender", None)) is not None]
    if senders:  # the link's own figures, as before
        summary["sent"] = [{"stream": s.info.stream, "blocks_acked": s.blocks_acked, "bytes": s.bytes_sent,
                            "connections": s.connections, "backfilled": s.blocks_backfilled} for s in senders]
    if args.json:
        print(json.dumps(summary))
    else:
        lost = final.midi_dropped + final.midi_rejected + final.virtual_dropped
        if audio == "portaudio":
            facts = final.device
            events = f"{facts['midi_in_placed']} MIDI events, " if "midi_in_placed" in facts else ""
            print(f"captured {final.seconds:.1f} s from {facts['audio_device']}: {final.blocks} blocks, {events}"
                  f"{facts['input_overflows']} input overflows, {facts['clock_jumps']} clock leaps, "
                  f"{final.dropped} blocks dropped -> {summary['destination']}")
            for port in facts.get("midi_in_ports_lost", []):
                print(f"MIDI input {port} went away during the capture", file=sys.stderr)
        else:
            print(f"captured {final.seconds:.1f} s: {final.blocks} blocks, {final.midi_events} JACK MIDI events, "
                  f"{final.virtual_events} virtual-port events, {final.xruns} xruns, {final.dropped} blocks dropped"
                  + (f", {lost} MIDI messages dropped or malformed" if lost else "") + f" -> {summary['destination']}")
        for problem in failed:
            print(f"failed: {problem}", file=sys.stderr)
    return 1 if failed else 0


class _Panel:
    """A live terminal panel: blocks, events, xruns, callback times, and per stream either the
    link's figures (connection, rate, ACK latency, quality) or the store's (written, durable, dropped)."""

    def __init__(self, streams: list[tuple[StreamInfo, LiveStream]]) -> None:
        from rich.live import Live

        self.streams = streams
        self.live = Live(refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, stats: BridgeStats) -> None:
        from rich.table import Table

        table = Table(title="sendlearn live", show_header=False)
        table.add_column(justify="right")
        table.add_column()
        rows = [("running", f"{stats.seconds:.1f} s"), ("blocks", f"{stats.blocks} ({stats.dropped} dropped)"),
                ("MIDI events", f"{stats.midi_events} JACK, {stats.virtual_events} virtual"),
                ("MIDI lost", f"{stats.midi_dropped} dropped, {stats.midi_rejected} malformed, "
                              f"{stats.virtual_dropped} virtual dropped, {stats.virtual_late} virtual late"),
                ("xruns", f"{stats.xruns} ({stats.frame_jumps} clock jumps)"),
                ("callback", f"p50 {stats.callback_p50_us:.0f} µs, p99 {stats.callback_p99_us:.0f} µs "
                             f"of {stats.period_us:.0f} µs")]
        for info, stream in self.streams:
            rows += self._stream_rows(info, stream)
        for key, value in rows:
            table.add_row(key, value)
        self.live.update(table)

    @staticmethod
    def _stream_rows(info: StreamInfo, stream: LiveStream) -> list[tuple[str, str]]:
        sender = getattr(stream, "sender", None)
        if sender is None:  # the store: no link, no ACKs
            figures = stream.figures()
            durable = figures.get("durable_through", -1)
            state = f"error: {figures['error']}" if figures.get("error") else "writing"
            return [("store", f"{state}: {info.session}/{info.stream}"),
                    ("written", f"{figures.get('blocks_written', 0)} blocks, durable through seq "
                                f"{durable if durable >= 0 else '-'}"),
                    ("dropped", f"{figures.get('blocks_dropped', 0)} blocks (recorded as gaps)")]
        state = "error" if sender.error else ("connected" if sender.connections else "connecting")
        rtt = f"{sender.rtt_seconds * 1000:.0f} ms" if sender.rtt_seconds is not None else "-"
        return [("link", f"{state} ({sender.connections} connections) to {sender.url}"),
                ("rate", f"{sender.send_rate * 8 / 1e6:.2f} Mbps"), ("ack latency", rtt),
                ("quality", f"{sender.level.name}, backlog {sender.backlog_seconds:.2f} s")]

    def stop(self) -> None:
        self.live.stop()
