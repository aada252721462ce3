"""``sendlearn live --audio portaudio --clock link``: the playhead from an Ableton Link session.

A Link peer (tests/link_peer.py, aalink in a process of its own, as a DAW is) sets 123.4 bpm,
starts, changes tempo mid-stream and stops, writing what Link's own timeline said all along.
The witness is independent of the capture's clock arithmetic: the player's noise places each
stored sample on JACK's frames, JACK's own time keeping (``jack_frames_to_time``) gives the
moment of that frame on the clock Link's timeline runs on (CLOCK_MONOTONIC_RAW), and the peer's
log gives Link's beat, tempo and playing state then."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers import read_stream
from jackplay import PERIOD, Player, frame_of
from live_cli import live_until, origin_of, run_cli
from sendlearn.plugin.live.runner import DummyServer

PEER = Path(__file__).with_name("link_peer.py")
# stated in docs/live.md: a block's beat within 3 periods and 1 ms of Link's timeline over PortAudio's
# JACK host API, which after a stall may deliver 2 to 3 periods late for good (arrival_clock.py)
BOUND_SECONDS = 3 * PERIOD / 48000 + 0.001
SETTLE_SECONDS = 0.1  # a tempo or start/stop change reaches the stored blocks within this
WITNESS_SURE_US = 1000  # blocks whose cycle the witness saw run within 1 ms of the steady clock


class CycleClock:
    """An independent witness of when each JACK frame was: a JACK client in a process of its
    own (tests/cycle_witness.py) notes, every cycle, its cycle's first frame and the moment its
    callback began on CLOCK_MONOTONIC_RAW (the clock JACK and Link keep time on). JACK's own estimate (``jack_get_cycle_times``) was tried and
    left: beside two CPU hogs it put cycle starts up to 26 ms after callbacks that had already
    run in them."""

    def __init__(self, server: DummyServer, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cycle_witness.py")),
                                         server.name, str(out)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def stop(self) -> np.ndarray:
        """Its notes, ``(first frame, ns)`` a cycle."""
        self.process.terminate()
        assert self.process.wait(timeout=30) == 0
        return np.load(self.out)

    def microseconds(self, entries: np.ndarray, frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """When each of ``frames`` was, in microseconds on CLOCK_MONOTONIC_RAW, and how sure the
        witness is of it. The estimate: the earliest callback within a quarter second either
        side (a callback begins after its cycle did, never before; seen from the future too,
        which the capture cannot). Its uncertainty: how much later the witness's own callback
        of that frame's cycle began (``jackd -d dummy`` on a loaded machine runs its cycles
        late and catches up, so for a while its frames are not where a steady clock puts
        them, and nobody can say which moment such a frame "was")."""
        seen = entries[:, 0].astype(float)
        began = entries[:, 1] - seen * 1e9 / rate  # the cycle's start plus the callback's lateness
        half = rate // 4
        low = np.searchsorted(seen, frames - half)
        high = np.maximum(np.searchsorted(seen, frames + half), low + 1)
        earliest = np.array([began[a:b].min() for a, b in zip(low, high, strict=True)])
        cycle = np.clip(np.searchsorted(seen, frames, side="right") - 1, 0, len(seen) - 1)
        own = np.where(frames - seen[cycle] < PERIOD, began[cycle], np.inf)  # no callback seen: unsure
        return (earliest + frames * 1e9 / rate) / 1e3, (own - earliest) / 1e3


def link_multicast_works(tmp_path: Path) -> str | None:
    """None when two Link peers on this machine find each other; else why not. Link discovers
    peers by multicast on every IPv4 interface: a container with only loopback needs multicast
    enabled on it, which this sets up (as root) before saying it cannot."""
    def meet() -> bool:
        peers = [subprocess.Popen([sys.executable, str(PEER), str(tmp_path / f"probe{k}.jsonl"), "--wait", "10",
                                   "--script", "end@1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for k in range(2)]
        return all(peer.wait(timeout=30) == 0 for peer in peers)

    if meet():
        return None
    ip = shutil.which("ip")
    if ip is None:
        return "two Link peers on this machine did not find each other, and there is no `ip` to enable multicast"
    steps = [[ip, "link", "set", "lo", "multicast", "on"], [ip, "route", "replace", "224.0.0.0/4", "dev", "lo"]]
    failed = [" ".join(step) + ": " + done.stderr.strip() for step in steps
              if (done := subprocess.run(step, capture_output=True, text=True)).returncode]
    if meet():
        return None
    return ("two Link peers on this machine did not find each other, even with multicast on loopback"
            + (f" ({'; '.join(failed)})" if failed else ""))


CAPTURE_ATTEMPTS = 3


@dataclass
class Seen:
    """One capture beside the Link peer, placed on Link's timeline by the witness."""

    sender: dict
    blocks: dict
    events: dict[str, float]  # the peer's script: what, when (us)
    inside: np.ndarray  # blocks while the peer was logging
    when: np.ndarray  # those blocks' moments (us, CLOCK_MONOTONIC_RAW)
    row: np.ndarray  # the peer's log row before each: time us, beat, tempo, playing
    joined: np.ndarray  # the sessions had merged
    unsure_us: np.ndarray  # how unsure the witness is of each moment (inf: it missed that cycle)
    enough_why: str  # empty when there are enough blocks to judge

    @property
    def enough(self) -> bool:
        return not self.enough_why

    @property
    def sure(self) -> np.ndarray:
        """Joined, and the witness sure of the moment within ``WITNESS_SURE_US``."""
        return self.joined & (self.unsure_us <= WITNESS_SURE_US)


def capture_beside_peer(jack_server: DummyServer, folder: Path, audio: str) -> Seen:
    """``sendlearn live --clock link`` through ``audio`` while the peer plays its script."""
    folder.mkdir()
    player = Player(jack_server, 2)
    player.client.activate()
    witness = CycleClock(jack_server, folder / "cycles.npy")
    log = folder / "peer.jsonl"
    script = ["tempo=123.4@0.3", "start@0.8", "tempo=101.7@2.0", "stop@3.2", "end@3.8"]

    def play() -> None:
        peer = subprocess.run([sys.executable, str(PEER), str(log), "--quantum", "4", "--wait", "30",
                               "--script", *script], capture_output=True, text=True, timeout=90)
        assert peer.returncode == 0, peer.stderr

    try:
        source = (["--audio", "portaudio:player", "--block-size", str(PERIOD)] if audio == "portaudio" else
                  ["--connect", "player:out_1=in_1", "--connect", "player:out_2=in_2"])
        code, _, err = live_until(["live", *source, "--clock", "link", "--meter", "4/4", "--data-dir", str(folder),
                                   "--session", "gig", "--stream", audio, "--json"],
                                  lambda: (folder / "sessions" / "gig" / audio).exists(), play)
        assert code == 0, err
        got = read_stream(folder, "gig", audio)
        blocks = got["blocks"].to_pydict()
        sender = got["info"]["sender"]
        if audio == "portaudio":
            origin, _ = origin_of(got["audio"], player)
            frames = [origin + sample for sample in blocks["sample"]]
        else:
            frames = [frame_of(sender["jack_frame_origins"], sample) for sample in blocks["sample"]]
    finally:
        entries = witness.stop()
        player.client.deactivate()
        player.client.close()
    at_us, unsure_us = witness.microseconds(entries, np.array(frames, dtype=float), jack_server.rate)
    lines = log.read_text().splitlines()
    events = {what: at for at, what in json.loads(lines[-1])["events"]}
    rows = np.array([json.loads(line) for line in lines[:-1]], dtype=float)  # time us, beat, tempo, playing
    index = np.searchsorted(rows[:, 0], at_us, side="right") - 1
    inside = (index >= 0) & (at_us <= rows[-1, 0])
    when = at_us[inside]
    settle_us = SETTLE_SECONDS * 1e6
    joined = when >= rows[0, 0] + settle_us  # the sessions merged when the peer saw us
    why = []
    # every part of the script has blocks to judge, whatever the load: CI at ac00b44 asked for 1000
    # blocks in the peer's 3.8 s and had 758, JACK's dummy frames running at half the clock's rate
    # beside two CPU hogs (here, at the same load, 1422)
    spans = {"stopped, before start": (rows[0, 0] + settle_us, events["start"]),
             "playing at 123.4 bpm": (events["start"] + settle_us, events["tempo=101.7"]),
             "playing at 101.7 bpm": (events["tempo=101.7"] + settle_us, events["stop"]),
             "stopped, after stop": (events["stop"] + settle_us, rows[-1, 0])}
    for span, (begin, end) in spans.items():
        if ((when > begin) & (when < end)).sum() < 25:
            why.append(f"too few blocks {span}: {sorted(spans.items())}")
    witnessed = (joined & np.isfinite(unsure_us[inside])).sum()
    if witnessed < 50:
        why.append(f"the witness saw the cycles of {witnessed} blocks only")
    return Seen(sender, blocks, events, inside, when, rows[index[inside]], joined, unsure_us[inside],
                "; ".join(why))


@pytest.mark.parametrize("audio", ["portaudio", "jack"])
def test_link_tempo_beat_and_start_stop_follow_the_session(jack_server: DummyServer, tmp_path: Path,
                                                          audio: str) -> None:
    """The peer sets 123.4 bpm, starts, moves to 101.7 bpm and stops. Every stored block's
    beat (``ppq``) is in phase with Link's at the quantum (4) within ``BOUND_SECONDS`` of beats
    wherever the witness is sure of when its frames were; its tempo is the session's and it is
    playing exactly while the session plays, except within 0.1 s of a change. Through PortAudio
    (the stream placed on JACK's frames by the player's noise) and through our own JACK client
    (by the JACK frame origins it records)."""
    why = link_multicast_works(tmp_path)
    assert why is None, why
    # the witness is sure of a block's moment where JACK keeps time; a machine whose JACK cannot
    # leaves it sure of none (CI at 953b86c: JACK's dummy frames at 38 % of the clock's rate, sure
    # of 0 blocks of 529 in both runs), so the session is played again then, and at last each block
    # is judged within the bound plus how unsure the witness is of its moment
    for attempt in range(CAPTURE_ATTEMPTS):
        seen = capture_beside_peer(jack_server, tmp_path / f"try{attempt}", audio)
        if seen.enough and seen.sure.sum() >= 50:
            break
        print(f"attempt {attempt + 1}: {seen.enough_why or f'the witness was sure of {seen.sure.sum()} blocks'}")
    assert seen.enough, seen.enough_why
    sender, events, when, row, sure, joined = seen.sender, seen.events, seen.when, seen.row, seen.sure, seen.joined
    blocks, inside, settle_us = seen.blocks, seen.inside, SETTLE_SECONDS * 1e6
    assert sender["playhead_source"] == "ableton link (quantum 4)" and sender["link_peers_max"] >= 1
    assert (sender["link_starts"], sender["link_stops"]) == (1, 1)
    beat = row[:, 1] + (when - row[:, 0]) * row[:, 2] / 60e6
    ppq = np.array(blocks["ppq"])[inside]
    bpm = np.array(blocks["bpm"])[inside]
    playing = np.array(blocks["playing"])[inside]

    phase = (ppq - beat + 2.0) % 4.0 - 2.0
    limit = BOUND_SECONDS * row[:, 2] / 60
    assert np.all(np.abs(phase[sure]) <= limit[sure]), \
        f"phase error up to {np.abs(phase[sure]).max():.4f} beats (limit {limit[sure].max():.4f})"
    # every block whose cycle the witness saw: the moment is between the earliest the witness
    # allows and its own callback, so the bound widens by that much of Link's beats
    judged = joined & np.isfinite(seen.unsure_us)
    widened = limit + np.where(judged, seen.unsure_us, 0.0) * row[:, 2] / 60e6
    worst = np.argmax(np.where(judged, np.abs(phase) - widened, -np.inf))
    print(f"sure of {sure.sum()} blocks of {joined.sum()}; {judged.sum()} judged, the worst "
          f"{phase[worst]:.4f} beats off (bound {widened[worst]:.4f})")
    assert np.all(np.abs(phase[judged]) <= widened[judged]), (phase[worst], widened[worst], seen.unsure_us[worst])

    # a block's moment is no earlier than ``when`` and, the witness unsure, up to ``latest``
    latest = when + seen.unsure_us
    first, second = events["tempo=123.4"], events["tempo=101.7"]
    # Link carries tempo as microseconds a beat: 123.4 bpm arrives as 123.39991
    assert np.all(np.abs(bpm[(when > first + settle_us) & (latest < second)] - 123.4) < 0.001)
    assert np.all(np.abs(bpm[when > second + settle_us] - 101.7) < 0.001)
    start, stop = events["start"], events["stop"]
    assert playing[(when > start + settle_us) & (latest < stop)].all()
    assert not playing[joined & ((latest < start) | (when > stop + settle_us))].any()
    assert np.all(np.diff(ppq[joined]) > 0)  # Link's beat never goes back within a session


def test_link_bad_input_is_one_line_and_exit_2(jack_server: DummyServer, tmp_path: Path) -> None:
    player = Player(jack_server, 2)
    fake = tmp_path / "without_aalink"
    fake.mkdir()
    (fake / "aalink.py").write_text("raise ImportError(\"No module named 'aalink'\", name='aalink')\n")
    try:
        for argv, says in [
            (["--audio", "portaudio:player", "--clock", "link", "--quantum", "0"],
             "--quantum 0.0: give the bar length in beats, more than 0 and at most 256"),
            (["--audio", "portaudio:player", "--clock", "link", "--quantum", "nan"], "--quantum nan"),
            (["--audio", "portaudio:player", "--quantum", "4"], "--quantum goes with --clock link"),
            (["--clock", "free"], "--clock free goes with --audio portaudio"),
        ]:
            code, _, err = run_cli(["live", *argv, "--seconds", "1", "--data-dir", str(tmp_path)])
            assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
        code, _, err = run_cli(["live", "--audio", "portaudio:player", "--clock", "link", "--seconds", "1",
                                "--data-dir", str(tmp_path)], pythonpath=str(fake))
        assert code == 2 and err.strip() == "sendlearn live: " \
            "--clock link needs aalink, which this install lacks (pip install 'sendlearn[link]')", err
    finally:
        player.client.close()
