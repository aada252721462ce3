"""`sendlearn live` end to end: a real jackd, a player client, our bridge (its JACK client in
a process of its own), the store writing straight into ``--data-dir`` (no receiver, no socket:
issue 21's one sink), and the dataset read back from disk.

The machine is not judged here: xruns happen (forced, below, by a client that sleeps in its
callback), and what is demanded is that the data stays exact around them and the stream
ends whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jack
import numpy as np
import pytest
import rtmidi

from helpers import read_stream
from jackplay import PERIOD, RATE, TICKS, Hog, Player, frame_of, noise
from receiving import free_port, start_receiver
from sendlearn.cli.main import main
from sendlearn.plugin.live.runner import DummyServer
from sendlearn.store.sink import SENDER_LIVE, StoreStream


def run_live(argv: list[str]) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result["code"] = main(argv)
        result["out"] = out.getvalue()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def check_stream(data_dir: Path, session: str, stream: str, player: Player, blocks: int,
                 refused: bool = False, link: bool = False) -> dict:
    """The dataset against what the player played: complete, ended by BYE, written by the store,
    every block from the first connected one bit-for-bit what the player wrote in that cycle
    (cycles the Python player itself missed are silence: skipped), every event outside a gap on
    its exact frame, and the playhead the master's, its tempo in quarter notes. ``refused``:
    the hand-off was made to refuse blocks, so gaps hold whole periods beyond the missed frames.
    ``link``: sent with ``--server`` to a receiver, which wrote it."""
    got = read_stream(data_dir, session, stream)
    info = got["info"]
    assert info["host"] == "jack" and info["complete"] and info["ended"] == "bye"
    sender = info["sender"]
    if link:  # the link's own figures, and no store's
        assert sender["connections"] >= 1 and "written_by" not in sender
    else:  # written by the store, in this process: no link, so none of a link's figures (connections, …)
        assert sender["written_by"] == SENDER_LIVE and not {"connections", "blocks_backfilled"} & set(sender)
    assert sender["blocks_dropped_by_audio_thread"] == sender["blocks_dropped"]
    origins = [tuple(pair) for pair in sender["jack_frame_origins"]]
    assert origins[0] == (0, sender["jack_frame_origin"]) and len(origins) <= sender["frame_jumps"] + 1
    assert sender["midi_dropped"] == sender["midi_rejected"] == 0
    # cycles no callback of ours ran in (xruns) are gaps on JACK's clock, never spliced out; so are
    # periods dropped whole (the hand-off refused them, or a starved reader fell a ring behind)
    gaps, audio, length = info["gaps"], got["audio"], blocks * PERIOD + sender["missed_frames"]
    assert all(g["reason"] == "dropped by the sender's audio thread" for g in gaps)
    assert sum(g["last_seq"] - g["first_seq"] + 1 for g in gaps) == sender["blocks_dropped"]
    # dropped at the very end, a gap has no block after it to say where it ends (docs/dataset.md):
    # the stream's audio ends where it starts
    tail = gaps[-1] if gaps and gaps[-1]["end_sample"] is None else None
    assert all(g["end_sample"] is not None for g in gaps if g is not tail)
    assert audio.shape == (2, tail["start_sample"] if tail else length)
    if tail:
        assert tail["last_seq"] == blocks - 1 and length - audio.shape[1] >= (blocks - tail["first_seq"]) * PERIOD
    holes = [(g["start_sample"], g["end_sample"] if g is not tail else length) for g in gaps]
    hole_frames = sum(end - start for start, end in holes)
    assert hole_frames >= sender["missed_frames"] and (hole_frames - sender["missed_frames"]) % PERIOD == 0
    if refused:
        assert hole_frames > sender["missed_frames"]
    # the first block with every input connected (the connections are made one by one)
    first = next(i for i in range(0, audio.shape[1], PERIOD) if audio[:, i:i + PERIOD].any(axis=1).all())
    assert first < RATE
    # a block must be what the player wrote in its cycle wherever that cycle is clear on the
    # test's clock (the Python player ran on time, JACK did not report its frame twice)
    starts = [s for s in range(first, audio.shape[1], PERIOD) if player.clear(frame_of(origins, s))
              and not any(start < s + PERIOD and s < end for start, end in holes)]
    # enough to judge: the rest are cycles the Python player itself ran late in (a starved machine)
    assert len(starts) >= 0.3 * len(range(first, audio.shape[1], PERIOD))
    for s in starts:
        expected = np.stack([noise(frame_of(origins, s), PERIOD, c) for c in range(2)])
        assert audio[:, s:s + PERIOD].tobytes() == expected.tobytes(), (s, sender["xruns"])
    table = got["events"].to_pydict()
    got_events = [(frame_of(origins, s), d) for s, d in zip(table["sample"], table["data"], strict=True)]
    end = frame_of(origins, audio.shape[1] - 1)  # the player plays on after the capture ends
    lost = [(frame_of(origins, start), frame_of(origins, start) + end_ - start) for start, end_ in holes]
    sent = [e for e in player.sent if player.clear(e[0]) and e[0] <= end
            and not any(a <= e[0] < b for a, b in lost)]  # an event in a gap is a recorded loss
    recorded = {frame_of(origins, s) for s in range(0, audio.shape[1], PERIOD)}
    missing = [(f, f - f % 1, any(c <= f < c + PERIOD for c in recorded)) for f, _ in set(sent) - set(got_events)]
    assert [e for e in got_events if player.clear(e[0])] == sent, missing
    assert len(sent) >= 0.3 * len([e for e in player.sent if e[0] <= end])
    assert set(got_events) <= set(player.sent)  # nothing invented, nothing moved
    assert set(table["timing_error_samples"]) <= {None}
    blocks_table = got["blocks"].to_pydict()
    rolling = [k for k, playing in enumerate(blocks_table["playing"]) if playing]
    assert len(rolling) > 100
    master = player.master
    # the master's position where its timebase callback ran for that very frame (on a loaded
    # machine a late Python master leaves JACK publishing its previous one: stored as it was)
    published = [k for k in rolling if round(blocks_table["seconds"][k] * RATE) in player.published]
    assert len(published) >= 0.5 * len(rolling)
    # blocks before the master's tempo unit was decided were captured as it published them (noted
    # in the sender's figures); finalise settled them (capture/tempo.py): all are quarter notes on disk
    assert sender["tempo_unit"] == "denominator" and sender["tempo_invalid"] == 0
    bpms = blocks_table["bpm"]
    for k in published:
        bar, beat, tick = master.bbt(round(blocks_table["seconds"][k] * RATE))
        assert (blocks_table["bar"][k], bpms[k], blocks_table["ts_num"][k],
                blocks_table["ts_den"][k]) == (bar, master.quarter_bpm, *master.meter)
        assert abs(blocks_table["beat"][k] - (beat + tick / TICKS)) < 1e-12
    return info


def connections(name: str) -> list[str]:
    return ["--connect", "player:out_1=in_1", "--connect", "player:out_2=in_2",
            "--connect", "player:midi_out=midi_in", "--jack-name", name]


def wait_connected(player: Player, running: threading.Thread) -> None:
    """Until our bridge (a process of its own, started by the command) has its MIDI input
    connected to the player: events scheduled after that are all captured."""
    deadline = time.monotonic() + 60  # a hang guard only
    while not player.client.get_all_connections("player:midi_out"):
        assert running.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)


def roll_and_capture(player: Player, argv: list[str]) -> tuple[threading.Thread, dict, int]:
    """Inside ``with player.client``: the player rolls from frame 0, ``sendlearn live argv`` starts
    and connects; returns its thread, its result and the first frame events may be played at."""
    player.client.activate()
    player.client.transport_frame = 0
    player.client.transport_start()
    thread, result = run_live(argv)
    wait_connected(player, thread)
    return thread, result, player.client.last_frame_time + 4 * PERIOD


def test_live_capture_lands_in_the_dataset_exactly(jack_server: DummyServer, tmp_path: Path) -> None:
    player = Player(jack_server, 2)
    with player.client:
        thread, result, start = roll_and_capture(player, [
            "live", "--data-dir", str(tmp_path), "--jack-server", jack_server.name, *connections("slive"),
            "--session", "gig", "--stream", "stage", "--seconds", "3", "--json"])
        events = [(start + k * 997 + (k % 3), bytes((0x90 | k % 4, 40 + k, 100))) for k in range(30)]
        events.append((start + 31 * 997, b"\xf0\x7d\x10\x20\xf7"))
        player.play(events)
        thread.join(60)
        player.client.transport_stop()
    assert result["code"] == 0, result
    summary = json.loads(result["out"])
    # periods a starved machine's reader fell a whole ring behind on are dropped: recorded gaps
    # (check_stream), as in the stalled-store test below, never a hole or a failure
    assert summary["failures"] == []
    assert summary["sink"] == "store" and "sent" not in summary  # no link: nothing was sent anywhere
    (written,) = summary["streams"]
    assert written["blocks_written"] == summary["blocks"] and written["durable_through"] == summary["blocks"] - 1
    assert player.sent == events
    info = check_stream(tmp_path, "gig", "stage", player, summary["blocks"])
    assert info["sender"]["xruns"] == summary["xruns"] and info["sender"]["blocks_dropped"] == summary["dropped"]


def test_live_with_a_server_goes_through_the_link(jack_server: DummyServer, tmp_path: Path) -> None:
    """``--server``: the same capture sent to a real ``sendlearn serve`` (its own process), which
    writes the same exact stream, with the bridge's closing figures and the link's in ``sender``."""
    port = free_port()
    receiver = start_receiver(port, tmp_path)
    try:
        player = Player(jack_server, 2)
        with player.client:
            thread, result, start = roll_and_capture(player, [
                "live", "--server", f"ws://127.0.0.1:{port}", "--jack-server", jack_server.name,
                *connections("llive"), "--session", "gig", "--stream", "linked", "--seconds", "2", "--json"])
            events = [(start + k * 997 + (k % 3), bytes((0x90 | k % 4, 40 + k, 100))) for k in range(20)]
            player.play(events)
            thread.join(60)
            player.client.transport_stop()
    finally:
        receiver.terminate()
        receiver.wait(60)
    assert result["code"] == 0, result
    summary = json.loads(result["out"])
    assert summary["sink"] == "link" and summary["failures"] == []
    (sent,) = summary["sent"]  # every seq acknowledged: stored, or a recorded gap (cycles JACK missed)
    assert sent["blocks_acked"] == summary["blocks"] and sent["connections"] >= 1
    assert player.sent == events
    info = check_stream(tmp_path, "gig", "linked", player, summary["blocks"], link=True)
    assert info["sender"]["xruns"] == summary["xruns"]


def test_blocks_a_stalled_store_could_not_take_are_recorded_gaps(jack_server: DummyServer, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's writes stall now and then (a slow disk) behind a hand-off of 4 blocks: the
    blocks it refuses are counted, and the dataset records each as a gap with the sender's
    reason, the data exact around them and the stream complete; nothing is a silent hole."""
    import sendlearn.cli.live as live

    monkeypatch.setattr(live, "HANDOFF_BLOCKS", 4)
    write, last = StoreStream._write, [time.monotonic()]

    def stalling(self: StoreStream, batch, holes=None) -> int:
        if batch and time.monotonic() - last[0] > 0.4:
            time.sleep(0.1)  # ~37 periods of 128 frames: most are refused
            last[0] = time.monotonic()
        return write(self, batch, holes)

    monkeypatch.setattr(StoreStream, "_write", stalling)
    player = Player(jack_server, 2)
    with player.client:
        thread, result, start = roll_and_capture(player, [
            "live", "--data-dir", str(tmp_path), "--jack-server", jack_server.name, *connections("dlive"),
            "--session", "gig", "--stream", "stalled", "--seconds", "3", "--json"])
        player.play([(start + k * 211 + k % 5, bytes((0x90 | k % 16, k % 128, 1 + k % 127))) for k in range(500)])
        thread.join(60)
        player.client.transport_stop()
    assert result["code"] == 0, result
    summary = json.loads(result["out"])
    assert summary["failures"] == [] and summary["dropped"] > 0
    info = check_stream(tmp_path, "gig", "stalled", player, summary["blocks"], refused=True)
    assert info["sender"]["blocks_dropped_by_audio_thread"] == summary["dropped"]
    assert info["blocks"] + sum(g["last_seq"] - g["first_seq"] + 1 for g in info["gaps"]) == summary["blocks"]


def test_forced_xruns_and_sigterm_end_a_whole_stream(jack_server: DummyServer, tmp_path: Path) -> None:
    """A client sleeping in its callback now and then forces hundreds of xruns (each a jump of
    the JACK clock against our samples); SIGTERM then ends `sendlearn live` like Ctrl-C: BYE
    with every clock jump in it, a complete stream, the data exact around every xrun."""
    player, hog = Player(jack_server, 2), Hog(jack_server, every=6, stall=0.004)
    with player.client, hog.client:
        player.client.activate()
        hog.client.activate()
        player.client.transport_frame = 0
        player.client.transport_start()
        command = [sys.executable, "-m", "sendlearn", "live", "--data-dir", str(tmp_path),
                   "--jack-server", jack_server.name, *connections("xlive"), "--session", "gig",
                   "--stream", "xruns", "--json"]
        live = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "JACK_DEFAULT_SERVER": jack_server.name})
        try:
            deadline = time.monotonic() + 60
            while not player.client.get_all_connections("player:midi_out"):
                assert live.poll() is None and time.monotonic() < deadline, live.communicate()
                time.sleep(0.02)
            start = player.client.last_frame_time + 4 * PERIOD
            player.play([(start + k * 331 + k % 7, bytes((0x90 | k % 16, k % 128, 1 + k % 127)))
                         for k in range(400)])
            hog.on.set()
            deadline = time.monotonic() + 120  # a hang guard only: 200 xruns take seconds
            while hog.xruns < 220 and time.monotonic() < deadline:  # a few more: notices arrive late
                time.sleep(0.05)
            hog.on.clear()
            assert hog.xruns >= 220
            time.sleep(0.1)
            live.send_signal(signal.SIGTERM)
            out, err = live.communicate(timeout=120)
        finally:
            if live.poll() is None:
                live.kill()
        player.client.transport_stop()
    assert live.returncode == 0, (out, err)
    summary = json.loads(out)
    # the hog counted 220 xruns during the capture; JACK may fold notifications together, so
    # the bridge's own count is only required to be recorded faithfully
    assert summary["failures"] == [] and summary["xruns"] > 0
    info = check_stream(tmp_path, "gig", "xruns", player, summary["blocks"])
    assert info["sender"]["xruns"] == summary["xruns"] and info["sender"]["frame_jumps"] == summary["frame_jumps"]
    assert len(player.sent) > 100


def test_virtual_port_events_land_with_their_bound(jack_server: DummyServer, tmp_path: Path) -> None:
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keyboard")
    out.open_virtual_port("out")
    connector = jack.Client("connector", no_start_server=True, servername=jack_server.name)
    try:
        thread, result = run_live([
            "live", "--data-dir", str(tmp_path), "--jack-server", jack_server.name, "--jack-name", "vlive",
            "--audio-ports", "1", "--virtual-port", "keys", "--stream", "virtual", "--seconds", "1.2", "--json"])
        deadline = time.monotonic() + 10
        while not connector.get_ports("vlive-keys|keys", is_midi=True, is_input=True):
            assert time.monotonic() < deadline, connector.get_ports()
            time.sleep(0.02)
        (target,) = connector.get_ports("keys", is_midi=True, is_input=True)
        connector.connect("keyboard:out", target)
        time.sleep(0.1)
        for k in range(40):
            out.send_message([0x90, 30 + k, 90])
            time.sleep(0.01)
        thread.join(60)
    finally:
        connector.close()
        out.close_port()
        out.delete()
    assert result["code"] == 0, result
    got = read_stream(tmp_path, "live", "virtual")
    table = got["events"].to_pydict()
    assert [d[1] for d in table["data"]] == [30 + k for k in range(40)]
    assert got["info"]["sender"]["virtual_events"] == 40 and got["info"]["sender"]["virtual_dropped"] == 0
    bounds = table["timing_error_samples"]
    assert all(b is not None and b >= PERIOD for b in bounds)  # estimated, never "exact"
    # in order; two messages may share a cycle (and so a sample) when a loaded machine delays one
    assert all(b >= a for a, b in zip(table["sample"], table["sample"][1:], strict=False))


def test_a_second_live_take_under_the_same_ids_is_refused_and_the_first_kept(jack_server: DummyServer,
                                                                            tmp_path: Path) -> None:
    """Each live take is a take of its own: a rerun under the same session and stream is refused
    before it captures (as a receiver refuses it), and the stream on disk stays as it was."""
    argv = ["live", "--data-dir", str(tmp_path), "--jack-server", jack_server.name, "--jack-name", "twice",
            "--audio-ports", "1", "--session", "gig", "--stream", "once", "--seconds", "0.5", "--json"]
    thread, first = run_live(argv)
    thread.join(60)
    assert first["code"] == 0, first
    summary = tmp_path / "sessions" / "gig" / "once" / "stream.json"
    before = summary.read_bytes()
    thread, second = run_live(argv)
    thread.join(60)
    assert second["code"] != 0 and second["out"] == ""
    assert summary.read_bytes() == before


def test_spool_goes_with_a_server(tmp_path: Path) -> None:
    code = main(["live", "--data-dir", str(tmp_path / "data"), "--spool", str(tmp_path / "spool"), "--seconds", "1"])
    assert code == 2 and not (tmp_path / "spool").exists()


def _jack_process() -> int | None:
    """The pid of this process's child running the bridge's JACK client, if there is one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"sendlearn.plugin.live.jack_host" in cmdline:
            return int(entry.name)
    return None


def test_a_capture_whose_jack_process_dies_is_aborted_never_complete(jack_server: DummyServer,
                                                                     tmp_path: Path) -> None:
    """The JACK process killed mid-capture: a capture that failed partway. The command fails
    (exit 1) and the stream is aborted: what was written stays in the work folder, and no
    stream.json says it is complete."""
    thread, result = run_live(["live", "--data-dir", str(tmp_path), "--jack-server", jack_server.name,
                               "--jack-name", "dying", "--audio-ports", "1", "--stream", "dies", "--json"])
    folder = tmp_path / "sessions" / "live" / "dies"
    deadline = time.monotonic() + 60  # a hang guard only
    while (pid := _jack_process()) is None or not (folder / ".work" / "journal").exists():
        assert thread.is_alive() and time.monotonic() < deadline, result
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive() and result["code"] == 1, result
    assert (folder / ".work" / "journal").stat().st_size > 0 and not (folder / "stream.json").exists()
