"""A real DAW for the tests: Debian's Ardour 7.3, run headless by ``ardour7-lua`` (a Lua
interpreter with Ardour's session API) on a JACK server of the test's (``jack_server`` in
conftest.py): Ardour joins it through its JACK backend, which opens its client the libjack
way, so ``JACK_DEFAULT_SERVER`` names the server.

    with Ardour(server, tmp_path) as daw:
        daw.create_session("song")
        daw.run('Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)')

``ardour7-lua -i`` reads Lua from its stdin, a line at a time (GNU readline, so a chunk is one
line). ``run`` sends one chunk wrapped in ``pcall`` with a marker printed after it, and reads
its output up to the marker: what the chunk printed, or ``ArdourError`` with Lua's message.
The Lua API used is Ardour 7.3's (libs/ardour/luabindings.cc, luasession/luasession.cc and the
bundled share/scripts of the 7.3 tag). Ardour missing fails loudly (``ArdourError`` naming the
package), it is never a skip.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import jack

from sendlearn.plugin.live.runner import DummyServer

LUA = "ardour7-lua"
PACKAGE = "ardour"  # Debian's Ardour 7.3: ardour7-lua, and ACE Reasonable Synth in ardour-lv2-plugins
SYNTH = "ACE Reasonable Synth"
# Ardour's JACK client name: ardour7-lua's backend opens it with the instance name given to
# set_backend, empty here, so its ports are ":<track>/audio_out 1", ":<track>/midi_out 1". (Named
# "ardour", its tracks recorded no take in 7.3: the empty name is what works.)
CLIENT = ""
TIMEOUT = 60.0  # a hang guard only: a chunk takes milliseconds, creating a session about a second


RC_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<Ardour>
  <Config/>
  <TransportMasters current="JACK Transport">
    <TransportMaster type="Engine" removeable="0" name="JACK Transport"/>
  </TransportMasters>
</Ardour>
"""


class ArdourError(AssertionError):
    """Ardour could not run, or a Lua chunk failed: the message says which and why."""


class ArdourDropped(ArdourError):
    """jackd dropped Ardour's client while Ardour set up a session: its ports are gone.

    Seen in about one start in three here (Ardour 7.3, jackd2 1.9.21, ``jackd -S -d dummy``):
    jackd logs ``CheckSize error size = 13 Size() = 269`` (269 bytes is a
    JackPropertyChangeNotifyRequest, what libjack sends for ``jack_set_property``: Ardour sets
    its new ports' pretty names as it adds a track) and then ``Unknown request ...``: requests on
    Ardour's one client socket reached the server interleaved, and it closed the client. Turning
    Ardour's auto-connect off did not stop it. Nothing of ours is involved; a test starts Ardour
    again (``start``), and says so if it never comes up whole."""


class Ardour:
    """One headless Ardour process on ``server``, with its user config under ``home``."""

    def __init__(self, server: DummyServer, home: Path) -> None:
        lua = shutil.which(LUA)
        if lua is None:
            raise ArdourError(f"{LUA} not found: install Debian's {PACKAGE!r} package (make system does)")
        home.mkdir(parents=True, exist_ok=True)
        # Ardour follows JACK's transport (so its rolling is JACK's, and the timebase callback it
        # registers publishes its BBT for JACK's frame) only with the "JACK Transport" master
        # current, which Lua cannot set in 7.3: it comes from the user config file
        # (TransportMasterManager reads it at start), plus the session's external-sync option.
        config = home / "config" / "ardour7"
        config.mkdir(parents=True, exist_ok=True)
        (config / "config").write_text(RC_CONFIG)
        env = {**os.environ, "JACK_DEFAULT_SERVER": server.name, "HOME": str(home),
               "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
        self.home = home
        self.jack = jack.Client("ardour-ports", no_start_server=True, servername=server.name)  # to look up its ports
        self.process = subprocess.Popen([lua, "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        self.log: list[str] = []  # everything it printed
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._count = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def run(self, chunk: str, timeout: float = TIMEOUT) -> list[str]:
        """Run one Lua chunk (newlines become spaces: no ``--`` comments); return what it printed."""
        self._count += 1
        mark = f"@@{self._count}"
        one_line = " ".join(line.strip() for line in chunk.strip().splitlines())
        # the marker is built at run time, so readline's echo of the line never matches it
        wrapped = (f"local ok, err = pcall(function() {one_line} end) "
                   f"print('@' .. '@{self._count} ' .. (ok and 'ok' or ('error ' .. tostring(err))))")
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(wrapped + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise ArdourError(f"{LUA} exited ({self.process.poll()}): {self.tail()}") from exc
        printed: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise ArdourError(f"{LUA} did not finish {one_line[:200]!r} in {timeout} s: {self.tail()}") from None
            if line is None:
                raise ArdourError(f"{LUA} exited ({self.process.wait(10)}) running {one_line[:200]!r}: {self.tail()}")
            at = line.find(mark + " ")
            if at >= 0:
                status = line[at + len(mark) + 1:]
                if status != "ok":
                    raise ArdourError(f"Lua failed: {status} in {one_line[:300]!r}")
                return printed
            if not line.startswith(">") and "pcall(function()" not in line:  # readline's prompt and echo
                printed.append(line)

    def value(self, expression: str) -> str:
        """The printed value of a Lua expression."""
        printed = self.run(f"print('=' .. tostring({expression}))")
        return next(line[1:] for line in printed if line.startswith("="))

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log[-lines:])

    # -- a session ------------------------------------------------------------------------

    def create_session(self, folder: Path, rate: int) -> None:
        """A new session in ``folder`` (which must not exist) on the JACK backend, at ``rate``."""
        self.run(f'assert(AudioEngine:set_backend("JACK", "{CLIENT}", ""), "no JACK backend")')
        self.run(f'assert(create_session("{folder}", "{folder.name}", {rate}), "create_session failed")')
        if self.value("Session:nominal_sample_rate()") != str(rate):
            raise ArdourError(f"the session runs at {self.value('Session:nominal_sample_rate()')}, not {rate}")

    def add_midi_track(self, name: str, instrument: str | None = SYNTH) -> None:
        """A MIDI track (one MIDI input, stereo output) with ``instrument`` (an LV2 plugin's
        name), or none: then the track's output is MIDI."""
        if instrument:
            info = f'ARDOUR.LuaAPI.new_plugin_info("{instrument}", ARDOUR.PluginType.LV2)'
            check, output = f'assert(not info:isnil(), "plugin not found: {instrument}")', 'ARDOUR.DataType("audio"), 2'
        else:
            info, check, output = "ARDOUR.PluginInfo()", "", 'ARDOUR.DataType("midi"), 1'
        self.run(f"""
            local info = {info}
            {check}
            local tracks = Session:new_midi_track(ARDOUR.ChanCount(ARDOUR.DataType("midi"), 1),
                ARDOUR.ChanCount({output}), false, info, nil, nil, 1, "{name}",
                ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
            assert(tracks:size() == 1, "no track made")
        """)
        if instrument and self.value(f'Session:route_by_name("{name}"):nth_plugin(0):display_name()') != instrument:
            raise ArdourError(f"track {name} has no {instrument}")

    def set_tempo_map(self, points: list[tuple[float, int, int, float]]) -> None:
        """``(quarter notes per minute, beats per bar, beat type, at quarter note)``, from 0:
        a tempo and a meter at each point (Temporal.Tempo(bpm, end bpm, note type 4):
        quarter notes, as s_tempo_map.lua does)."""
        lines = ["local tm = Temporal.TempoMap.fetch_writable()"]
        for bpm, num, den, quarters in points:
            at = f"Temporal.timepos_t.from_ticks(Temporal.ticks_per_beat * {quarters})" if quarters else \
                "Temporal.timepos_t(0)"
            lines.append(f"tm:set_tempo(Temporal.Tempo({bpm}, {bpm}, 4), {at})")
            lines.append(f"tm:set_meter(Temporal.Meter({num}, {den}), {at})")
        lines.append("Temporal.TempoMap.update(tm)")
        self.run(" ".join(lines))

    def be_timebase_master(self) -> None:
        """Ardour publishes its BBT as JACK's timebase master (session option jack-time-master)."""
        self.run("Session:cfg():set_jack_time_master(true) Session:cfg():set_external_sync(true)")

    def locate(self, sample: int) -> None:
        self.run(f"Session:request_locate({sample}, false, ARDOUR.LocateTransportDisposition.MustStop, "
                 "ARDOUR.TransportRequestSource.TRS_UI)")

    def roll(self) -> None:
        self.run("Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)")

    def record(self, tracks: list[str]) -> None:
        """Arm ``tracks`` and the session: the next roll records what reaches their inputs."""
        names = " ".join(tracks)
        self.run(f'for n in ("{names}"):gmatch("%S+") do local t = Session:route_by_name(n):to_track() '
                 "t:rec_enable_control():set_value(1, PBD.GroupControlDisposition.NoGroup) end "
                 "Session:maybe_enable_record(false)")

    def stop_recording(self, tracks: list[str]) -> None:
        names = " ".join(tracks)
        self.run(f'for n in ("{names}"):gmatch("%S+") do local t = Session:route_by_name(n):to_track() '
                 "t:rec_enable_control():set_value(0, PBD.GroupControlDisposition.NoGroup) end "
                 "Session:disable_record(false, false)")

    def notes(self, track: str) -> int:
        """Notes in the MIDI regions of ``track``'s playlist."""
        return int(self.value(
            f'(function() local n = 0 for r in Session:route_by_name("{track}"):to_track():playlist():region_list():iter() '
            "do for _ in ARDOUR.LuaAPI.note_list(r:to_midiregion():model()):iter() do n = n + 1 end end return n end)()"))

    def stop(self) -> None:
        self.run("Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)")

    def transport_sample(self) -> int:
        return int(self.value("Session:transport_sample()"))

    def bbt_at(self, samples: list[int]) -> list[tuple[int, int, int]]:
        """Ardour's own BBT (bars, beats, ticks of 1/1920 quarter note) at each sample, from its
        tempo map: the truth a stored playhead is checked against."""
        lua = ("local tm = Temporal.TempoMap.read() for _, s in ipairs({" + ",".join(map(str, samples)) +
               "}) do local b = tm:bbt_at(Temporal.timepos_t(s)) print('bbt ' .. s .. ' ' .. b.bars .. ' ' .. "
               "b.beats .. ' ' .. b.ticks) end")
        got = {}
        for line in self.run(lua):
            if line.startswith("bbt "):
                sample, bars, beats, ticks = map(int, line.split()[1:])
                got[sample] = (bars, beats, ticks)
        return [got[s] for s in samples]

    def port(self, name: str, timeout: float = 10.0) -> str:
        """The full JACK name of Ardour's port ``name`` (e.g. "synth/midi_in 1"), once registered:
        new tracks' ports appear a moment after ``new_midi_track`` returns."""
        deadline = time.monotonic() + timeout
        while True:
            ports = [p.name for p in self.jack.get_ports(re.escape(f"{CLIENT}:{name}") + "$")]
            if ports:
                return ports[0]
            if not self.jack.get_ports(re.escape(f"{CLIENT}:") + ".*/"):
                raise ArdourDropped(f"Ardour's JACK client is gone (its ports too): {self.tail(5)}")
            if time.monotonic() > deadline:
                raise ArdourError(f"Ardour has no port {name!r}: {[p.name for p in self.jack.get_ports()]}")
            time.sleep(0.05)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        process = self.process
        if process.poll() is None:
            try:
                self.run("Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)", timeout=10)
                self.run("close_session()", timeout=30)
                assert process.stdin is not None
                process.stdin.write("quit\n")
                process.stdin.close()
                process.wait(30)
            except (ArdourError, OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(10)
        self._reader.join(10)
        self.jack.close()

    def __enter__(self) -> Ardour:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
