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

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jack
import numpy as np
import soundfile as sf

from sendlearn.plugin.ardour.headless import CLIENT, ArdourError, ArdourProcess
from sendlearn.plugin.ardour.session import SUPERCLOCK  # session file positions are "a<ticks>"
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

    def add_audio_track(self, name: str, channels: int) -> None:
        """An audio track of ``channels`` inputs and outputs (Ardour's usual panner between them)."""
        self.run(f'local t = Session:new_audio_track({channels}, {channels}, nil, 1, "{name}", '
                 "ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true) "
                 'assert(t:size() == 1, "no track made")')

    def add_plugin(self, route: str, name: str) -> None:
        """The LV2 plugin ``name`` (e.g. "ACE Reverb") at the end of ``route``'s plugins ("Master"
        is the master bus)."""
        self.run(f'local r = Session:route_by_name("{route}") assert(not r:isnil(), "no route {route}") '
                 f'local p = ARDOUR.LuaAPI.new_plugin(Session, "{name}", ARDOUR.PluginType.LV2, "") '
                 f'assert(not p:isnil(), "plugin not found: {name}") '
                 'assert(r:add_processor_by_index(p, -1, nil, true) == 0, "not added")')

    def wait_connected(self, port: str, other: str, timeout: float = 10.0) -> None:
        """Until Ardour's port ``port`` is connected to its port ``other``: Ardour connects a new
        track's outputs to the master bus a moment after adding it, and a session saved before
        that has the track unconnected (a silent master)."""
        deadline = time.monotonic() + timeout
        # port() again each time: it raises ArdourDropped once jackd has dropped Ardour's client
        while not any(p.name == f"{CLIENT}:{other}" for p in self.jack.get_all_connections(self.port(port, timeout))):
            if time.monotonic() > deadline:
                raise ArdourError(f"Ardour did not connect {port} to {other}")
            time.sleep(0.05)

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


@dataclass(frozen=True)
class AudioClip:
    """An audio region for ``build_session``: the WAV file ``wav`` (at the session's rate, mono or
    stereo; float samples play exactly as stored) whole, on an audio track ``track`` of as many
    channels, its first sample at session sample ``position``."""

    track: str
    wav: Path
    position: int


def build_song(folder: Path, *, rate: int = 48000, notes: int = 12, track: str = "synth",
               tempo: tuple[float, int, int] | None = None, prepare: Callable[[Ardour], None] | None = None) -> Path:
    """A saved Ardour session ``folder / "song"``: one MIDI track ``track`` with ACE Reasonable
    Synth and ``notes`` notes recorded into it (``build_session`` says how)."""
    return build_session(folder, rate=rate, notes=notes, midi=(track,), tempo=tempo, prepare=prepare)


def build_session(folder: Path, *, rate: int = 48000, notes: int = 12, midi: Sequence[str] = ("synth",),
                  audio: Sequence[AudioClip] = (), master: Sequence[str] = (), end: int | None = None,
                  tempo: tuple[float, int, int] | None = None,
                  prepare: Callable[[Ardour], None] | None = None) -> Path:
    """A saved Ardour session ``folder / "song"``, built on a private jackd:

    - a MIDI track with ACE Reasonable Synth for each name in ``midi``, the same ``notes`` notes
      recorded into each (a sixth of a second apart, each a twelfth long; Ardour 7.3's Lua has no
      headless MIDI import); ``folder / "song-notes.json"`` holds the notes Ardour holds in the
      region (``Ardour.region_notes``, the same in every track), outside the session folder;
    - an audio track for each of ``audio`` with its WAV as a region (``place_audio``);
    - the LV2 plugins ``master`` (e.g. "ACE Reverb") on the master bus, in that order.

    Its session range starts at 0 and ends at ``end`` (a sample) if given, else where the
    recording ends or half a second after the last audio region, whichever is later; ``tempo``
    (quarter notes per minute, beats per bar, beat type) its tempo map, else Ardour's default 120
    in 4/4. ``prepare`` edits the session (plugins, automation) after the recording, before it
    is saved. Returns the session folder."""
    if len({clip.track for clip in audio} | set(midi)) != len(audio) + len(midi):
        raise ValueError("one track a name, one audio region a track")
    channels = [sf.info(str(clip.wav)).channels for clip in audio]
    song = folder / "song"
    for attempt in range(START_ATTEMPTS):
        shutil.rmtree(song, ignore_errors=True)
        with DummyServer(rate=rate, period=256) as server:
            daw = Ardour(server, folder / f"home-{attempt}")
            try:
                daw.create_session(song, rate)
                for name in midi:
                    daw.add_midi_track(name)
                for clip, count in zip(audio, channels, strict=True):
                    daw.add_audio_track(clip.track, count)
                inlets = [daw.port(f"{name}/midi_in 1") for name in midi]
                for name in [*midi, *(clip.track for clip in audio)]:
                    daw.wait_connected(f"{name}/audio_out 1", "Master/audio_in 1")
            except ArdourDropped:
                daw.close()
                if attempt == START_ATTEMPTS - 1:
                    raise
                continue
            with daw:
                if tempo is not None:
                    daw.set_tempo_map([(*tempo, 0)])
                if midi and not _record_notes(daw, server, midi, inlets, notes, rate):
                    if attempt == START_ATTEMPTS - 1:
                        raise ArdourError(f"Ardour recorded {[daw.notes(n) for n in midi]} of {notes} notes: {daw.tail()}")
                    continue  # set-up, not what is tested: a new session records again
                if midi:
                    held = [daw.region_notes(name) for name in midi]
                    if any(h != held[0] for h in held):
                        raise ArdourError(f"the tracks hold different notes: {held}")
                    (folder / "song-notes.json").write_text(json.dumps(held[0]))
                for plugin in master:
                    daw.add_plugin("Master", plugin)
                if prepare is not None:
                    prepare(daw)
                daw.close(save=True)
        place_audio(song, audio, rate, end)
        if audio:
            check_audio(song, audio, rate, folder / "home-check")
        return song
    raise AssertionError("unreachable")


def _record_notes(daw: Ardour, server: DummyServer, tracks: Sequence[str], inlets: list[str], notes: int,
                  rate: int) -> bool:
    """Record ``notes`` notes into every track of ``tracks`` at once (one keyboard into every
    track's MIDI input); whether each recorded them all."""
    try:
        keys = Keys(server)
        keys.client.activate()
    except jack.JackError:  # jackd lost a client as Ardour set up (ArdourDropped): a new session
        return False
    with keys.client:
        for inlet in inlets:
            keys.client.connect(keys.out, inlet)
        daw.record(list(tracks))
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
        while any(daw.notes(t) < notes for t in tracks) and time.monotonic() < deadline:
            time.sleep(0.2)
        daw.stop_recording(list(tracks))
    return all(daw.notes(t) == notes for t in tracks)


def _at(sample: int, rate: int) -> str:
    """A session sample as Ardour 7 writes a position: superclock ticks, "a<ticks>"."""
    if SUPERCLOCK % rate:
        raise ValueError(f"{rate} Hz is no whole number of superclock ticks a sample")
    return f"a{sample * (SUPERCLOCK // rate)}"


def place_audio(song: Path, audio: Sequence[AudioClip], rate: int, end: int | None) -> None:
    """Each clip's WAV as a region on its (empty) audio track, and the session range, written
    into the saved session file (Ardour closed): Ardour 7.3's Lua cannot import a file headless
    (the editor's ``do_import`` is all it has) nor make a region from a source, so this writes
    what Ardour itself writes for an imported file. The WAV is copied whole into the session's
    ``interchange/<name>/audiofiles/``, one ``Source`` a channel (``channel`` k of the one
    file), a whole-file region in ``Regions`` and a region on the track's playlist at
    ``position``. Region fades are off: Ardour's default 64-sample fade in and out would scale
    the first and last samples, and the clip is meant to play exactly as stored.

    The session range: starts at 0 when there was none (no recording); ends at ``end`` if given,
    else at the later of its end and half a second after the last clip."""
    if not audio and end is None:
        return  # the session file stays as Ardour wrote it
    file = song / f"{song.name}.ardour"
    tree = ET.parse(file)
    session = tree.getroot()
    next_id = int(session.get("id-counter", "0")) + 1

    def new_id() -> str:
        nonlocal next_id
        next_id += 1
        return str(next_id - 1)

    files = song / "interchange" / song.name / "audiofiles"
    files.mkdir(parents=True, exist_ok=True)
    sources, regions, playlists = (_child(session, tag) for tag in ("Sources", "Regions", "Playlists"))
    last = 0
    for clip in audio:
        info = sf.info(str(clip.wav))
        if info.samplerate != rate:
            raise ValueError(f"{clip.wav} is at {info.samplerate} Hz, the session at {rate}: Ardour would not resample it")
        shutil.copyfile(clip.wav, files / clip.wav.name)
        ids = [new_id() for _ in range(info.channels)]
        for channel, source in enumerate(ids):
            ET.SubElement(sources, "Source", {"name": clip.wav.name, "type": "audio", "flags": "", "id": source,
                                              "natural-position": "a0", "channel": str(channel),
                                              "origin": str(clip.wav), "gain": "1"})
        route = next((r for r in session.iter("Route") if r.get("name") == clip.track), None)
        if route is None:
            raise ValueError(f"no track {clip.track} in {file}")
        playlist = next(p for p in playlists if p.get("id") == route.get("audio-playlist"))
        for whole, position, parent in ((True, 0, regions), (False, clip.position, playlist)):
            region = {"name": clip.wav.stem if whole else f"{clip.wav.stem}.1", "muted": "0", "opaque": "1",
                      "locked": "0", "video-locked": "0", "automatic": "0", "whole-file": str(int(whole)),
                      "import": "1", "external": "0", "sync-marked": "0", "left-of-split": "0",
                      "right-of-split": "0", "hidden": "0", "position-locked": "0", "valid-transients": "0",
                      "start": "a0", "length": f"{_at(info.frames, rate)}@{_at(position, rate)}",
                      "sync-position": "a0", "ancestral-start": "a0", "ancestral-length": "a0@a0", "stretch": "1",
                      "shift": "1", "layering-index": "0", "tags": "", "contents": "0", "envelope-active": "0",
                      "default-fade-in": "0", "default-fade-out": "0", "fade-in-active": "0",
                      "fade-out-active": "0", "scale-amplitude": "1", "id": new_id(), "type": "audio",
                      "first-edit": "nothing", "channels": str(info.channels)}
            for channel, source in enumerate(ids):
                region[f"source-{channel}"] = region[f"master-source-{channel}"] = source
            ET.SubElement(parent, "Region", region)
        last = max(last, clip.position + info.frames)
    locations = _child(session, "Locations")
    span = next((loc for loc in locations if "IsSessionRange" in loc.get("flags", "")), None)
    if span is None:
        span = ET.SubElement(locations, "Location", {"id": new_id(), "name": "session", "start": "a0", "end": "a0",
                                                     "flags": "IsSessionRange", "locked": "0", "timestamp": "0",
                                                     "cue": "0"})
    if end is None:
        end = max(int(span.get("end", "a0")[1:]) * rate // SUPERCLOCK, last + rate // 2) if audio else None
    if end is not None:
        span.set("end", _at(end, rate))
    session.set("id-counter", str(next_id))
    tree.write(file, xml_declaration=True, encoding="UTF-8")


def _child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    if found is None:
        raise ValueError(f"an Ardour session without <{tag}>")
    return found


def check_audio(song: Path, audio: Sequence[AudioClip], rate: int, home: Path) -> None:
    """Ardour loads the session and holds each clip where ``place_audio`` put it: one region a
    track, its position, length and channels, fades off, and its loudest sample the WAV's. (Its
    dummy backend would spare the jackd, but ardour7-lua 7.3 crashes loading a session on it.)"""
    import numpy as np

    with DummyServer(rate=rate, period=256) as server:
        daw = ArdourProcess(server.name, home)  # reads Ardour's model only: a dropped JACK client does no harm
        with daw:
            daw.load_session(song, song.name)
            for clip in audio:
                data, _ = sf.read(str(clip.wav), dtype="float32", always_2d=True)
                got = daw.run(f'for r in Session:route_by_name("{clip.track}"):to_track():playlist():region_list():iter() do '
                              "local a = r:to_audioregion() print('region ' .. r:position():samples() .. ' ' .. "
                              "r:length():samples() .. ' ' .. a:n_channels() .. ' ' .. tostring(a:fade_in_active()) .. ' ' .. "
                              "tostring(a:fade_out_active()) .. ' ' .. string.format('%.9g', a:maximum_amplitude(nil))) end")
                regions = [line.split()[1:] for line in got if line.startswith("region ")]
                want = [str(clip.position), str(len(data)), str(data.shape[1]), "false", "false"]
                if len(regions) != 1 or regions[0][:5] != want or \
                        abs(float(regions[0][5]) - float(np.abs(data).max())) > 1e-6:
                    raise ArdourError(f"{clip.track}: Ardour holds {regions}, not {want} ({song})")


def export(song: Path, folder: Path) -> tuple[np.ndarray, int]:
    """What ``ardour7-export -b float`` (no normalising, no dither) writes for the session ``song``,
    and its rate; run on a copy in ``folder``, as the exporter writes into the session."""
    copy = folder / "export"
    wav = folder / "export.wav"
    # ardour7-export 7.3 now and then aborts (free(): invalid next size) or hangs (CI at b5525b1:
    # no output in 120 s beside two hogs, where it takes seconds): tried again on a fresh copy
    for attempt in range(3):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(song, copy)
        try:
            done = subprocess.run(["ardour7-export", "-b", "float", "-o", str(wav), str(copy), song.name],
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as hung:
            if attempt == 2:
                raise ArdourError(f"ardour7-export hung 3 times: {hung}") from hung
            continue
        if done.returncode == 0:
            break
        if done.returncode > 0 or attempt == 2:
            raise ArdourError(f"ardour7-export exited {done.returncode}: {done.stderr[-500:]}")
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return audio, rate


def wait_rolling(render: subprocess.Popen, data: Path) -> None:
    """Until ``render`` (a ``sendlearn render`` of a session whose track is ``synth``, into ``data``)
    has written its first blocks: its freewheeling roll is on. A fixed wait once let 200 s of song
    render whole before a test's signal (CI at 953b86c: in 3.1 s on a quiet machine, where a loaded
    one takes several times that)."""
    deadline = time.monotonic() + 120  # a hang guard only
    while not _has_blocks(data):
        assert render.poll() is None and time.monotonic() < deadline, render.communicate()
        time.sleep(0.02)


def _has_blocks(data: Path) -> bool:
    for audio in data.glob("sessions/*/synth/.work/audio.f32"):
        with contextlib.suppress(FileNotFoundError):  # finalised meanwhile
            if audio.stat().st_size:
                return True
    return False
