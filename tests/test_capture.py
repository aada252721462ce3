"""The block model: MIDI grammar, ids, playhead, block shape and digest."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_audio, make_block
from sendlearn.capture import (
    Block,
    DigestMismatch,
    InvalidBlock,
    InvalidMidi,
    InvalidName,
    MidiEvent,
    ParamChange,
    Playhead,
    check_name,
)


@pytest.mark.parametrize(
    ("data", "kind", "channel"),
    [
        (b"\x90\x3c\x64", "note_on", 0),
        (b"\x93\x3c\x00", "note_off", 3),  # velocity 0 is a note-off
        (b"\x8f\x3c\x40", "note_off", 15),
        (b"\xa1\x3c\x10", "polytouch", 1),
        (b"\xb0\x40\x7f", "control_change", 0),
        (b"\xc2\x05", "program_change", 2),
        (b"\xd0\x30", "aftertouch", 0),
        (b"\xe0\x00\x40", "pitchwheel", 0),
        (b"\xf0\x7e\x7f\x09\x01\xf7", "sysex", None),
        (b"\xf8", "clock", None),
        (b"\xf2\x10\x20", "songpos", None),
    ],
)
def test_well_formed_messages_are_classified(data: bytes, kind: str, channel: int | None) -> None:
    event = MidiEvent(7, data)
    assert event.kind == kind
    assert event.channel == channel


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x3c\x64", "running status"),
        (b"\x90\x3c", "takes 3 bytes"),
        (b"\x90\x3c\x64\x01", "takes 3 bytes"),
        (b"\x90\x80\x64", "over 0x7F"),
        (b"\xc0\x01\x02", "takes 2 bytes"),
        (b"\xf0\x01\x02", "end with F7"),
        (b"\xf0\x01\x90\xf7", "status byte"),
        (b"\xf7", "undefined"),
        (b"\xf4", "undefined"),
    ],
)
def test_malformed_midi_is_refused_with_a_reason(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidMidi, match=problem):
        MidiEvent(0, data)


def test_midi_offset_must_be_a_non_negative_int() -> None:
    with pytest.raises(InvalidMidi, match="offset"):
        MidiEvent(-1, b"\xf8")
    with pytest.raises(InvalidMidi, match="offset"):
        MidiEvent(1.5, b"\xf8")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["keys", "A.b_c-9", "x" * 64, "..a"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\\b", "x" * 65, "a b", "é", None, 3])
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidName):
        check_name(name, "stream")


def test_playhead_ranges() -> None:
    with pytest.raises(InvalidBlock, match="bpm"):
        Playhead(bpm=0)
    with pytest.raises(InvalidBlock, match="ts_den"):
        Playhead(ts_den=3)
    with pytest.raises(InvalidBlock, match="seconds"):
        Playhead(seconds=float("nan"))
    with pytest.raises(InvalidBlock, match="playing"):
        Playhead(playing=1)  # type: ignore[arg-type]


def test_block_checks_shape_dtype_and_offsets() -> None:
    with pytest.raises(InvalidBlock, match="shape"):
        make_block(audio=make_audio(1, 512))
    with pytest.raises(InvalidBlock, match="float32"):
        make_block(audio=make_audio(2, 512).astype(np.float64))
    with pytest.raises(InvalidBlock, match="outside"):
        make_block(midi=(MidiEvent(512, b"\xf8"),))
    with pytest.raises(InvalidBlock, match="not sorted"):
        make_block(midi=(MidiEvent(5, b"\xf8"), MidiEvent(4, b"\xf8")))
    with pytest.raises(InvalidBlock, match="outside"):
        make_block(params=(ParamChange(600, "cutoff", 1.0),))
    with pytest.raises(InvalidBlock, match="C-contiguous"):
        make_block(audio=np.asfortranarray(make_audio(2, 512)))
    with pytest.raises(InvalidBlock, match="frames"):
        make_block(frames=0, midi=(), params=(), audio=np.zeros((2, 0), np.float32))


def test_digest_covers_audio_events_playhead_and_params(block: Block) -> None:
    def same(**changes: object) -> Block:
        fields = dict(playhead=block.playhead, midi=block.midi, params=block.params, audio=block.audio)
        fields.update(changes)
        return Block(block.session, block.stream, block.seq, block.start_sample, block.frames,
                     block.sample_rate, block.channels, **fields)

    assert same().digest == block.digest
    audio = block.audio.copy()
    audio[1, 100] = np.nextafter(audio[1, 100], np.float32(2))  # one ulp in one sample
    variants = [
        same(audio=audio),
        same(midi=block.midi[:1]),
        same(midi=(MidiEvent(1, b"\x90\x3c\x64"),) + block.midi[1:]),
        same(playhead=Playhead(seconds=block.playhead.seconds, bpm=121.0, playing=True)),
        same(params=(ParamChange(3, "cutoff", 0.26),)),
        same(audio=None),
    ]
    assert len({v.digest for v in variants} | {block.digest}) == len(variants) + 1


def test_a_block_carrying_a_wrong_digest_is_refused(block: Block) -> None:
    with pytest.raises(DigestMismatch):
        Block(block.session, block.stream, block.seq, block.start_sample, block.frames, block.sample_rate,
              block.channels, block.playhead, block.midi, block.params, block.audio, block.digest ^ 1)


def test_absolute_events(block: Block) -> None:
    later = make_block(seq=3)
    assert [s for s, _ in later.absolute_events()] == [3 * 512, 3 * 512 + 511]
