"""A real DAW for the tests: Debian's Ardour 7.3, run headless by ``ardour7-lua`` (a Lua
interpreter with Ardour's session API) on a JACK server of the test's (``jack_server`` in
conftest.py): Ardour joins it through its JACK backend, which opens its client the libjack
way, so ``JACK_DEFAULT_SERVER`` names the server.

    with Ardour(server, tmp_path) as daw:
        daw.create_session("song")
        daw.run('Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)')

The driver (Lua over stdin, each chunk checked) is the product's, plugin/ardour/headless.py, which
``sendlearn render`` runs Ardour sessions with; this adds what tests build sessions with. Ardour missing fails loudly (``ArdourError`` naming the
package), it is never a skip.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jack

from sendlearn.plugin.ardour.headless import CLIENT, ArdourError, ArdourProcess
from sendlearn.plugin.live.runner import DummyServer

SYNTH = "ACE Reasonable Synth"


class ArdourDropped(ArdourError):
    """jackd dropped Ardour's client while Ardour set up a session: its ports are gone.

    Seen in about one start in three here (Ardour 7.3, jackd2 1.9.21, ``jackd -S -d dummy``):
    jackd logs ``CheckSize error size = 13 Size() = 269`` (269 bytes is a
    JackPropertyChangeNotifyRequest, what libjack sends for ``jack_set_property``: Ardour sets
    its new ports' pretty names as it adds a track) and then ``Unknown request ...``: requests on
    Ardour's one client socket reached the server interleaved, and it closed the client. Turning
    Ardour's auto-connect off did not stop it. Nothing of ours is involved; a test starts Ardour
    again (``start``), and says so if it never comes up whole."""


class Ardour(ArdourProcess):
    """One headless Ardour process on ``server`` (the product's driver, plugin/ardour/headless.py),
    with its user config under ``home`` and a JACK client of ours to look up its ports."""

    def __init__(self, server: DummyServer, home: Path) -> None:
        super().__init__(server.name, home)
        self.jack = jack.Client("ardour-ports", no_start_server=True, servername=server.name)  # to look up its ports

    # -- a session ------------------------------------------------------------------------

    def create_session(self, folder: Path, rate: int) -> None:
        """A new session in ``folder`` (which must not exist) on the JACK backend, at ``rate``."""
        self.use_jack()
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

    def add_lua_plugin(self, track: str, name: str) -> None:
        """Ardour's Lua DSP plugin ``name`` (e.g. "ACE Amplifier") at the end of ``track``'s plugins."""
        self.run(f'local p = ARDOUR.LuaAPI.new_luaproc(Session, "{name}") assert(not p:isnil(), "no Lua DSP {name}") '
                 f'assert(Session:route_by_name("{track}"):add_processor_by_index(p, -1, nil, true) == 0, '
                 '"not added")')

    def automate(self, control: str, points: list[tuple[int, float]], state: str = "Play") -> None:
        """Points (session sample, value) on the lane of ``control`` (a Lua expression for an
        AutomationControl), and its automation state."""
        adds = " ".join(f"al:add(Temporal.timepos_t({sample}), {value!r}, false, false)" for sample, value in points)
        self.run(f"local ac = {control} local al = ac:alist() {adds} "
                 f"ac:set_automation_state(ARDOUR.AutoState.{state})")

    def lane(self, control: str) -> list[tuple[int, float]]:
        """The points Ardour holds on ``control``'s lane, (session sample, value)."""
        lines = self.run(f"for e in ({control}):alist():events():iter() do "
                         "print('point ' .. tostring(e.when:samples()) .. ' ' .. string.format('%.17g', e.value)) end")
        return [(int(line.split()[1]), float(line.split()[2])) for line in lines if line.startswith("point ")]

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

    def region_notes(self, track: str) -> list[tuple[int, int, int, int, int, int]]:
        """The notes of ``track``'s MIDI regions as Ardour holds them, in ticks (1920 a quarter note)
        from the session's zero: (on tick, off tick, channel, note, velocity, off velocity). Only
        for regions at position and start zero (what build_song records), which it checks."""
        lines = self.run(
            f'for r in Session:route_by_name("{track}"):to_track():playlist():region_list():iter() do '
            "assert(r:position():ticks() == 0 and r:start():ticks() == 0, 'a region not at zero') "
            "for n in ARDOUR.LuaAPI.note_list(r:to_midiregion():model()):iter() do "
            "print('note ' .. tostring(n:time()) .. ' ' .. tostring(n:length()) .. ' ' .. n:channel() .. ' ' .. "
            "n:note() .. ' ' .. n:velocity() .. ' ' .. n:off_velocity()) end end")
        notes = []
        for line in lines:
            if line.startswith("note "):
                time, length, channel, note, velocity, off = line.split()[1:]
                on = _ticks(time)
                notes.append((on, on + _ticks(length), int(channel), int(note), int(velocity), int(off)))
        return sorted(notes)

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

    def close(self, save: bool = False) -> None:
        super().close(save)
        self.jack.close()


class Keys:
    """A keyboard: plays scheduled MIDI into Ardour's tracks (to be recorded)."""

    def __init__(self, server: DummyServer) -> None:
        self.client = jack.Client("keys", no_start_server=True, servername=server.name)
        self.out = self.client.midi_outports.register("out")
        self.schedule: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)

    def play(self, events: list[tuple[int, bytes]]) -> None:
        with self._lock:
            self.schedule = sorted(events)

    def _process(self, frames: int) -> None:
        self.out.clear_buffer()
        start = self.client.last_frame_time
        with self._lock:
            while self.schedule and self.schedule[0][0] < start + frames:
                frame, data = self.schedule.pop(0)
                if frame >= start:
                    self.out.write_midi_event(frame - start, data)


START_ATTEMPTS = 6  # jackd drops Ardour's client as it adds a track in about one start in three (ArdourDropped)


def _ticks(beats: str) -> int:
    """Ardour's printed Temporal::Beats, "beats:ticks", as ticks."""
    whole, ticks = beats.split(":")
    return int(whole) * 1920 + int(ticks)


def build_song(folder: Path, *, rate: int = 48000, notes: int = 12, track: str = "synth",
               tempo: tuple[float, int, int] | None = None, prepare: Callable[[Ardour], None] | None = None) -> Path:
    """A saved Ardour session ``folder / "song"``: one MIDI track ``track`` with ACE Reasonable
    Synth and ``notes`` notes recorded into it (a sixth of a second apart, each a twelfth long;
    Ardour 7.3's Lua has no headless MIDI import), on a private jackd. Its session range is the
    recording's; ``tempo`` (quarter notes per minute, beats per bar, beat type) its tempo map, else
    Ardour's default 120 in 4/4. Returns the session folder; ``folder / "song-notes.json"`` holds
    the notes Ardour holds in the region (``Ardour.region_notes``), outside the session folder.
    ``prepare`` edits the session (plugins, automation) after the recording, before it is saved."""
    song = folder / "song"
    for attempt in range(START_ATTEMPTS):
        shutil.rmtree(song, ignore_errors=True)
        with DummyServer(rate=rate, period=256) as server:
            daw = Ardour(server, folder / f"home-{attempt}")
            try:
                daw.create_session(song, rate)
                daw.add_midi_track(track)
                inlet = daw.port(f"{track}/midi_in 1")
                daw.port(f"{track}/audio_out 1")
            except ArdourDropped:
                daw.close()
                if attempt == START_ATTEMPTS - 1:
                    raise
                continue
            with daw:
                if tempo is not None:
                    daw.set_tempo_map([(*tempo, 0)])
                try:
                    keys = Keys(server)
                    keys.client.activate()
                except jack.JackError:  # jackd lost a client as Ardour set up (ArdourDropped): again
                    if attempt == START_ATTEMPTS - 1:
                        raise
                    continue
                with keys.client:
                    keys.client.connect(keys.out, inlet)
                    daw.record([track])
                    time.sleep(0.5)  # arming is queued to Ardour's process thread
                    daw.roll()
                    # the keys start once Ardour really rolls: beside two CPU hogs its roll came
                    # late and it recorded 3 of 12 notes (CI at fee3b43)
                    rolling = time.monotonic() + 10
                    while daw.transport_sample() == 0 and time.monotonic() < rolling:
                        time.sleep(0.02)
                    start = keys.client.frame_time + rate // 5
                    keys.play([(start + k * rate // 6 + dt, bytes((0x90 if dt == 0 else 0x80, 48 + k % 24,
                                                                   90 if dt == 0 else 0)))
                               for k in range(notes) for dt in (0, rate // 12)])
                    time.sleep(0.5 + notes / 6)
                    daw.stop()
                    deadline = time.monotonic() + 10  # Ardour's butler writes the take after the stop
                    while daw.notes(track) < notes and time.monotonic() < deadline:
                        time.sleep(0.2)
                    daw.stop_recording([track])
                got = daw.notes(track)
                if got != notes:  # set-up, not what is tested: a new session records again
                    if attempt == START_ATTEMPTS - 1:
                        raise ArdourError(f"Ardour recorded {got} of {notes} notes: {daw.tail()}")
                    continue
                (folder / "song-notes.json").write_text(json.dumps(daw.region_notes(track)))
                if prepare is not None:
                    prepare(daw)
                daw.close(save=True)
            return song
    raise AssertionError("unreachable")
