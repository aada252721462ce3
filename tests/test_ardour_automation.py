"""``sendlearn render`` on an Ardour 7.3 session with automation (issue 23, part 3): the session's
played lanes become params rows of their track's stream, each point on its sample.

The session is built with ardour7-lua (tests/ardour.py): ACE Reasonable Synth on a MIDI track
with notes recorded into it, ACE Amplifier (a Lua DSP plugin) after it, a fader lane and a lane
on the amplifier's Gain (which Ardour keeps in beats), both in Play, each with a point past the
session range, and a lane on the master bus's fader. Checked on data:
- each stream's params rows are exactly its lanes' points inside the range, as Ardour holds them
  (read back from Ardour before saving): names ``synth/gain``, ``synth/ACE Amplifier/Gain`` and
  ``Master/gain``, stream samples, values in the control's units (the fader's gain a linear
  factor); the interpolation of each lane is a stream fact;
- against the audio itself: the fader lane goes to 0, and from there on the synth stream fades to
  silence while the region's notes go on; the same session with that lane Off renders no
  ``synth/gain`` rows and sounds there, and its amplifier lane set to Touch still gives its rows.
(ACE Amplifier takes no MIDI, so the track plays no MIDI out of it: its stream has no events.)
A missing Ardour fails (tests/ardour.py names the package), never a skip."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from ardour import Ardour, build_song

from sendlearn.cli.main import main
from sendlearn.dataset import Dataset

RATE = 48000
NOTES = 12  # a sixth of a second apart from about 0.2 s: the session range is about 2.5 s
FADER = 'Session:route_by_name("synth"):gain_control()'
AMP = ('Session:route_by_name("synth"):nth_plugin(1):to_insert():to_automatable():automation_control('
       "Evoral.Parameter(ARDOUR.AutomationType.PluginAutomation, 0, 0), false)")
# (session sample, value): the fader goes to 0 at SILENT and stays there
SILENT = 64000
GAIN_POINTS = [(12000, 1.0), (40000, 0.5), (56000, 0.5), (SILENT, 0.0)]
AMP_POINTS = [(8000, 0.0), (30000, -6.0), (50000, 6.0)]  # dB, the amplifier's own unit
MASTER = "Session:master_out():gain_control()"
MASTER_POINTS = [(20000, 1.0), (90000, 1.0)]  # the master bus's fader, left at 0 dB
PAST_END = 10 * RATE  # a point this far after the start is past the session range
# Ardour's fader follows its lane through a smoothing low-pass, so the track fades out after the
# lane reaches 0 (measured: below -100 dBFS within 1024 samples, exactly 0 from about 3600 on,
# at a period's boundary, at period 1024), rather than stopping on the sample
QUIET = 1024, 1e-5  # samples after SILENT, and the largest sample from there on
ZERO = 8192  # samples after SILENT from which the stream is exactly 0


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", *args])
    return code, out.getvalue(), err.getvalue()


def automate(daw: Ardour, folder: Path) -> None:
    """ACE Amplifier after the synth, both lanes in Play; what Ardour then holds goes to
    ``folder / "lanes.json"`` (session samples), outside the session folder."""
    daw.add_lua_plugin("synth", "ACE Amplifier")
    assert daw.value('Session:route_by_name("synth"):nth_plugin(1):display_name()') == "ACE Amplifier"
    assert daw.value(f"{AMP}:name()") == "Gain"
    daw.automate(FADER, GAIN_POINTS + [(PAST_END, 0.0)])
    daw.automate(AMP, AMP_POINTS + [(PAST_END, 6.0)])
    daw.automate(MASTER, MASTER_POINTS)
    assert int(daw.value("Session:current_end_sample()")) < PAST_END
    assert daw.value("Session:master_out():name()") == "Master"
    lanes = {"synth/gain": daw.lane(FADER), "synth/ACE Amplifier/Gain": daw.lane(AMP), "Master/gain": daw.lane(MASTER)}
    assert lanes == {"synth/gain": GAIN_POINTS + [(PAST_END, 0.0)],
                     "synth/ACE Amplifier/Gain": AMP_POINTS + [(PAST_END, 6.0)], "Master/gain": MASTER_POINTS}, lanes
    (folder / "lanes.json").write_text(json.dumps(lanes))


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ardour-automation")
    return build_song(folder, rate=RATE, notes=NOTES, prepare=lambda daw: automate(daw, folder))


def render(song: Path, data: Path) -> dict:
    code, out, err = run(str(song), "--data-dir", str(data), "--json")
    assert code == 0, (out, err)
    summary = json.loads(out)
    assert summary["ok"] and {s["stream"] for s in summary["streams"]} == {"synth", "master"}, summary
    return summary


def rows(data: Path, stream: str) -> list[tuple[int, str, float]]:
    table = Dataset(data).stream("song", stream).params().to_pydict()
    return list(zip(table["sample"], table["param"], table["value"], strict=True))


def test_played_lanes_become_the_tracks_params_rows_and_the_fader_lane_shapes_its_audio(
        song: Path, tmp_path: Path) -> None:
    lanes = json.loads((song.parent / "lanes.json").read_text())
    data = tmp_path / "data"
    summary = render(song, data)
    first, last = summary["streams"][0]["range"]
    want = {stream: sorted(((sample - first, param, value) for param, points in lanes.items()
                            if param.startswith(prefix) for sample, value in points if first <= sample < last),
                           key=lambda row: row[0])
            for stream, prefix in (("synth", "synth/"), ("master", "Master/"))}
    assert len(want["synth"]) == len(GAIN_POINTS) + len(AMP_POINTS)  # the points past the end are not in the range
    assert len(want["master"]) == len(MASTER_POINTS)
    streams = {s["stream"]: s for s in summary["streams"]}
    for name in ("synth", "master"):
        got = rows(data, name)
        assert sorted(got) == sorted(want[name]), (name, got, want[name])
        assert [sample for sample, _, _ in got] == [sample for sample, _, _ in want[name]]  # each on its sample, in order
        assert streams[name]["params"] == len(want[name])
    stream = Dataset(data).stream("song", "synth")
    info = json.loads((stream.path / "stream.json").read_text())
    assert info["meta"]["automation_interpolation"] == [["synth/gain", "exponential"],
                                                        ["synth/ACE Amplifier/Gain", "linear"]], info
    # the fader lane against the audio: silent from where it reaches 0, while the notes go on
    audio, rate = sf.read(stream.path / "audio.wav", dtype="float32", always_2d=True)
    quiet = SILENT - first + QUIET[0]
    assert rate == RATE and len(audio) == last - first > SILENT - first + ZERO
    assert np.abs(audio[:SILENT - first]).max() > 0.01
    assert np.abs(audio[quiet:]).max() < QUIET[1], np.abs(audio[quiet:]).max()
    assert not audio[SILENT - first + ZERO:].any()
    # notes Ardour holds start there (ticks of 1920 a quarter note at the default 120 in 4/4: 12.5
    # samples a tick), so the silence is the fader's; the test below hears them without the lane
    notes = json.loads((song.parent / "song-notes.json").read_text())
    ons = [on * RATE * 60 // (120 * 1920) - first for on, *_ in notes]
    assert len([on for on in ons if quiet <= on < last - first - RATE // 10]) >= 2, ons


def test_a_lane_that_is_off_gives_no_rows_and_does_not_shape_the_audio(song: Path, tmp_path: Path) -> None:
    """The synth's fader lane Off, the amplifier's lane in Touch (played back, as nothing touches it)."""
    copy = tmp_path / "song"
    shutil.copytree(song, copy)
    file = copy / "song.ardour"
    text = file.read_text()
    # each lane's state is on its AutomationList, inside its route
    route = re.search(r'<Route [^>]*name="synth".*?</Route>', text, flags=re.S)
    assert route is not None
    synth, count = re.subn(r'(<AutomationList automation-id="gain"[^>]*?state=")Play(")', r"\1Off\2", route[0])
    synth, touched = re.subn(r'(<AutomationList automation-id="parameter-0"[^>]*?state=")Play(")', r"\1Touch\2", synth)
    assert count == touched == 1, re.findall(r"<AutomationList [^>]*>", route[0])
    assert re.search(r'<AutomationList automation-id="parameter-0"[^>]*time-domain="BeatTime"', synth)  # docs say so
    file.write_text(text.replace(route[0], synth))
    data = tmp_path / "data"
    summary = render(copy, data)
    first, last = summary["streams"][0]["range"]
    got = rows(data, "synth")
    assert [(sample + first, value) for sample, _, value in got] == AMP_POINTS, got
    assert {param for _, param, _ in got} == {"synth/ACE Amplifier/Gain"}, got
    assert [param for _, param, _ in rows(data, "master")] == ["Master/gain"] * len(MASTER_POINTS)
    audio, _ = sf.read(Dataset(data).stream("song", "synth").path / "audio.wav", dtype="float32", always_2d=True)
    assert np.abs(audio[SILENT - first + QUIET[0]:]).max() > 0.01  # without the lane, the notes sound there


def test_a_range_starting_inside_the_lanes_starts_each_with_its_value_there(song: Path, tmp_path: Path) -> None:
    """``--start`` between the lanes' points: the synth's two lanes each start with a row at stream
    sample 0 holding their value there (the amplifier's linear lane: exactly the line between its
    neighbours, worked out here; the fader's exponential one: between its neighbours), then their
    points in the range; the master's lane, whose first point is inside the range, gets none."""
    lanes = json.loads((song.parent / "lanes.json").read_text())
    data = tmp_path / "data"
    code, out, err = run(str(song), "--data-dir", str(data), "--start", "0.4", "--json")
    assert code == 0, (out, err)
    first, last = json.loads(out)["streams"][0]["range"]
    assert first == 19200
    got = rows(data, "synth")
    starts = [(param, value) for sample, param, value in got if sample == 0]
    assert [param for param, _ in starts] == ["synth/gain", "synth/ACE Amplifier/Gain"], got
    (a0, v0), (a1, v1) = AMP_POINTS[0], AMP_POINTS[1]
    assert abs(dict(starts)["synth/ACE Amplifier/Gain"] - (v0 + (v1 - v0) * (first - a0) / (a1 - a0))) < 1e-9, starts
    assert GAIN_POINTS[1][1] < dict(starts)["synth/gain"] < GAIN_POINTS[0][1], starts
    later = [(sample + first, param, value) for sample, param, value in got if sample > 0]
    assert sorted(later) == sorted((sample, param, value) for param, points in lanes.items() if param.startswith("synth/")
                                   for sample, value in points if first < sample < last), later
    assert [(sample + first, value) for sample, _, value in rows(data, "master")] == \
        [(s, v) for s, v in MASTER_POINTS if s < last]


# The mix lanes (a session of their own): the synth track's panner and mute, the master's trim
# (a MIDI track has no trim in Ardour: its trim_control() is never saved), all in Play
TRIM = "Session:master_out():trim_control()"
PAN = 'Session:route_by_name("synth"):pan_azimuth_control()'
MUTE = 'Session:route_by_name("synth"):mute_control()'
TRIMMED = 30000
TRIM_POINTS = [(6000, 1.0), (TRIMMED, 0.5)]  # a linear factor, as the fader's
PAN_AT = 40000
PAN_POINTS = [(10000, 0.5), (PAN_AT, 0.0)]  # 0.5 the centre, 0 all left
MUTED = 80000
MUTE_POINTS = [(4000, 0.0), (MUTED, 1.0)]
SETTLED = 4096  # samples after a lane's point by which Ardour's smoothing has followed it
PERIOD = 1024


def mix(daw: Ardour, folder: Path) -> None:
    daw.automate(TRIM, TRIM_POINTS)
    daw.automate(PAN, PAN_POINTS)
    daw.automate(MUTE, MUTE_POINTS)
    lanes = {"Master/trim": daw.lane(TRIM), "synth/pan_azimuth": daw.lane(PAN), "synth/mute": daw.lane(MUTE)}
    assert lanes == {"Master/trim": TRIM_POINTS, "synth/pan_azimuth": PAN_POINTS, "synth/mute": MUTE_POINTS}, lanes
    (folder / "lanes.json").write_text(json.dumps(lanes))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ardour-mix")
    return build_song(folder, rate=RATE, notes=NOTES + 6, prepare=lambda daw: mix(daw, folder))


def test_trim_pan_and_mute_lanes_become_rows_and_shape_the_audio(mixed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    summary = render(mixed, data)
    first, last = summary["streams"][0]["range"]
    assert first == 0 and last > MUTED + ZERO
    lanes = json.loads((mixed.parent / "lanes.json").read_text())
    for stream, prefix in (("synth", "synth/"), ("master", "Master/")):
        got = rows(data, stream)
        want = sorted(((sample, param, value) for param, points in lanes.items() if param.startswith(prefix)
                       for sample, value in points), key=lambda row: row[0])
        assert sorted(got) == sorted(want) and [s for s, _, _ in got] == [s for s, _, _ in want], (got, want)
    audio = {s: sf.read(Dataset(data).stream("song", s).path / "audio.wav", dtype="float32", always_2d=True)[0]
             for s in ("synth", "master")}
    synth = audio["synth"]
    # the panner: both sides at the centre, nothing right once the lane is at 0
    left, right = (synth[:, k].astype(np.float64) ** 2 for k in (0, 1))
    centre, panned = slice(PAN_POINTS[0][0], PAN_AT), slice(PAN_AT + SETTLED, MUTED)
    assert right[centre].sum() > 0.1 * left[centre].sum() and left[panned].sum() > 0 and not right[panned].any()
    # mute: sounding before its point, silent from a few periods after it (Ardour mutes at a
    # period's boundary and fades: measured exactly 0 about 5000 samples on), while notes go on
    assert np.abs(synth[:MUTED]).max() > 0.01 and not synth[MUTED + ZERO:].any()
    notes = json.loads((mixed.parent / "song-notes.json").read_text())
    assert len([on for on, *_ in notes if on * RATE * 60 // (120 * 1920) > MUTED + ZERO]) >= 2, notes
    # the master's trim at 0.5 (a linear factor): the master is its track at half the amplitude,
    # a period later (tests/test_ardour_render.py: MASTER_LAG)
    master, track = audio["master"][PERIOD:].astype(np.float64), synth[:-PERIOD].astype(np.float64)
    halved = slice(TRIMMED + SETTLED, PAN_AT)
    assert abs((master[halved] ** 2).sum() / (track[halved] ** 2).sum() - 0.25) < 1e-3
