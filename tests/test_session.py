"""Session files: good ones load (and the bundled demo renders), bad ones name file, key and problem."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from sendlearn.capture import StreamInfo
from sendlearn.plugin.offline.render import render_session
from sendlearn.plugin.processor import CaptureProcessor
from sendlearn.plugin.session.instrument import GM_SOUNDFONT, bundled_instruments
from sendlearn.plugin.session.reader import SessionError, load_session, session_from_midi

DEMO = Path(__file__).resolve().parent.parent / "plugin" / "demo" / "session.toml"
AMSYNTH = "/usr/lib/vst/amsynth_vst.so"

GOOD = f"""
name = "s1"
sample_rate = 44100
block_size = 256

[[track]]
name = "keys"
midi = "a.mid"
instrument = {{ faust = "poly_saw.dsp", voices = 4 }}
gain_db = -6
effects = [ {{ pedalboard = "Reverb", room_size = 0.4 }} ]
automation = [ {{ param = "cutoff", points = [[0.0, 0.2], [8.0, 0.9]] }},
               {{ param = "cutoff", unit = "beats", points = [[1, 0.5]] }} ]

[[track]]
name = "synth"
midi = "sub/b.mid"
instrument = {{ plugin = "{AMSYNTH}" }}

[[track]]
name = "band"
midi = "a.mid"
instrument = "gm"

[[track]]
name = "sf"
midi = "a.mid"
instrument = {{ soundfont = "{GM_SOUNDFONT}", program = 5 }}
"""


def write_midi(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                                       mido.Message("note_off", note=60, time=480)]))
    midi.save(str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_midi(tmp_path / "a.mid")
    write_midi(tmp_path / "sub" / "b.mid")
    return tmp_path


def test_good_session_loads_with_every_variant(folder: Path) -> None:
    (folder / "s.toml").write_text(GOOD)
    session = load_session(folder / "s.toml")
    assert (session.name, session.sample_rate, session.block_size) == ("s1", 44100, 256)
    keys, synth, band, sf = session.tracks
    assert keys.midi == (folder / "a.mid").resolve() and synth.midi == (folder / "sub" / "b.mid").resolve()
    assert keys.instrument.path == bundled_instruments()["poly_saw"] and keys.instrument.voices == 4
    assert keys.gain_db == -6.0 and keys.effects[0].name == "Reverb"
    assert [(a.unit, a.points) for a in keys.automation] == [("seconds", ((0.0, 0.2), (8.0, 0.9))),
                                                             ("beats", ((1.0, 0.5),))]
    assert (synth.instrument.kind, band.instrument.kind, sf.instrument.program) == ("plugin", "gm", 5)
    assert load_session(folder / "s.toml", sample_rate=48000).sample_rate == 48000


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda t: replace(t, 'name = "s1"\n', ""), "name", "is missing"),
        (lambda t: replace(t, 'midi = "a.mid"\n', ""), "track[0].midi", "is missing"),
        (lambda t: replace(t, "sample_rate = 44100", 'sample_rate = "44100"'), "sample_rate", "integer"),
        (lambda t: replace(t, "block_size = 256", "block_size = 2.5"), "block_size", "integer"),
        (lambda t: replace(t, "gain_db = -6", 'gain_db = "loud"'), "track[0].gain_db", "finite number"),
        (lambda t: replace(t, "voices = 4", "voices = true"), "track[0].instrument.voices", "integer"),
        (lambda t: replace(t, 'faust = "poly_saw.dsp"', 'faust = "theremin"'), "track[0].instrument.faust",
         "not bundled"),
        (lambda t: replace(t, 'instrument = "gm"', 'instrument = "moog:x"'), "track[2].instrument", "unknown kind"),
        (lambda t: replace(t, 'instrument = "gm"', "instrument = { gm = true, faust = \"bass\" }"),
         "track[2].instrument", "exactly one"),
        (lambda t: replace(t, f'plugin = "{AMSYNTH}"', 'plugin = "nothere.so"'), "track[1].instrument.plugin",
         "does not exist"),
        (lambda t: replace(t, 'name = "keys"', 'name = "../x"'), "track[0].name", "not 1-64 characters"),
        (lambda t: replace(t, 'name = "synth"', 'name = "keys"'), "track[1].name", "used by another track"),
        (lambda t: replace(t, 'midi = "sub/b.mid"', 'midi = "sub/none.mid"'), "track[1].midi", "not found"),
        (lambda t: replace(t, "room_size = 0.4", "size_of_room = 0.4"), "track[0].effects[0]", "options"),
        (lambda t: replace(t, '"Reverb"', '"VST3Plugin"'), "track[0].effects[0].pedalboard", "built-in"),
        (lambda t: replace(t, '[[0.0, 0.2], [8.0, 0.9]]', '[[8.0, 0.2], [1.0, 0.9]]'),
         "track[0].automation[0].points[1]", "comes before"),
        (lambda t: replace(t, 'unit = "beats"', 'unit = "bars"'), "track[0].automation[1].unit", "seconds"),
        (lambda t: replace(t, "program = 5", "program = 300"), "track[3].instrument.program", "0..127"),
        (lambda t: replace(t, "gain_db = -6", "gian_db = -6"), "track[0].gian_db", "not a known key"),
        (lambda t: t + '\n[[track]]\nname = "x"\nmidi = "a.mid"\ninstrument = "gm"\n'
         'automation = [ { param = "p", points = [[0, 1]] } ]\n', "track[4].automation", "no automation"),
        (lambda t: replace(t, 'name = "band"', 'name = "' + "b" * 62 + '"'), "track[2].name", "not 1-64"),
    ],
)
def test_bad_sessions_name_file_key_and_problem(folder: Path, edit, key: str, problem: str) -> None:
    path = folder / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(SessionError) as caught:
        load_session(path)
    error = caught.value
    assert (error.file, error.key) == (str(path), key), str(error)
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {key}: ")


def test_unreadable_session_files(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="file not found"):
        load_session(tmp_path / "none.toml")
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(SessionError, match="not valid TOML") as caught:
        load_session(tmp_path / "broken.toml")
    assert caught.value.file == str(tmp_path / "broken.toml")


def test_session_from_a_plain_midi_file(folder: Path) -> None:
    (folder / "my song!.mid").write_bytes((folder / "a.mid").read_bytes())
    session = session_from_midi(folder / "my song!.mid", "faust:bass", sample_rate=44100, block_size=128)
    assert session.name == session.tracks[0].name == "my_song_"
    assert (session.sample_rate, session.block_size, session.tracks[0].instrument.kind) == (44100, 128, "faust")
    with pytest.raises(SessionError, match="instrument"):
        session_from_midi(folder / "a.mid", "faust:nope")
    with pytest.raises(SessionError, match="MIDI file not found"):
        session_from_midi(folder / "none.mid")
    with pytest.raises(SessionError, match="sample_rate"):
        session_from_midi(folder / "a.mid", sample_rate=10)


def test_the_bundled_demo_renders_every_track() -> None:
    session = load_session(DEMO)
    assert [t.name for t in session.tracks] == ["keys", "bass", "drums", "gtr"]
    processors: dict[str, CaptureProcessor] = {}

    def open_stream(info: StreamInfo) -> CaptureProcessor:
        processors[info.stream] = CaptureProcessor.for_stream(info, realtime=False, capacity=1 << 20)
        return processors[info.stream]

    seen: dict[str, tuple[int, int]] = {}
    results = render_session(session, open_stream, progress=lambda s, done, total: seen.__setitem__(s, (done, total)))
    assert [(r.stream, r.ok) for r in results] == [("keys", True), ("bass", True), ("drums", True),
                                                   ("gtr-dry", True), ("gtr-wet", True)]
    seen.pop("gtr-dry", None)  # a recording's progress is its wet stream's
    assert seen == {r.stream: (r.frames, r.frames) for r in results if r.stream != "gtr-dry"}  # each reaches its end
    assert all(15 < r.seconds < 35 for r in results[:3]) and len({r.frames for r in results[:3]}) == 1  # one clock
    assert results[3].frames == results[4].frames == 8 * 48000
    blocks = {name: [] for name in processors}
    for name, processor in processors.items():
        while (block := processor.handoff.take()) is not None:
            blocks[name].append(block)
    kinds = {e.kind for bs in blocks.values() for b in bs for e in b.midi}
    assert {"note_on", "control_change", "pitchwheel", "aftertouch"} <= kinds
    assert any(e.data[:2] == b"\xb0\x40" for b in blocks["keys"] for e in b.midi)  # sustain pedal
    assert {p.param for b in blocks["keys"] for p in b.params} == {"cutoff"}
    meters = {(b.playhead.ts_num, b.playhead.ts_den) for b in blocks["bass"]}
    tempos = {round(b.playhead.bpm) for b in blocks["bass"]}
    assert meters == {(4, 4), (3, 4)} and tempos == {120, 140, 110}
    assert {e.channel for b in blocks["drums"] for e in b.midi} == {9}
