"""CaptureProcessor: audio out is the audio in; blocks numbered and stamped; drops counted."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from helpers import make_audio
from sendlearn.capture import HandOff, MidiEvent, Playhead
from sendlearn.plugin import CaptureProcessor


def test_process_returns_the_same_array_unchanged() -> None:
    processor = CaptureProcessor("s", "t", 48000, 2)
    audio = make_audio(2, 512)
    before = audio.tobytes()
    out = processor.process(audio, [(3, b"\x90\x3c\x64")], Playhead(playing=True), [(0, "gain", 0.5)])
    assert out is audio
    assert audio.tobytes() == before
    block = processor.handoff.take()
    assert block is not None
    # the block owns a copy: the host may overwrite its buffer for the next block
    audio[:] = 0.0
    assert block.audio.tobytes() == before


@pytest.mark.parametrize("sizes", [[64] * 20, [512] * 10, [1000] * 7, [64, 512, 1000, 1, 333, 1000, 64]])
def test_offsets_and_absolute_samples_over_a_run_of_blocks(sizes: list[int]) -> None:
    processor = CaptureProcessor("s", "t", 44100, 2, capacity=len(sizes))
    truth = []  # (absolute sample, bytes)
    start = 0
    for i, frames in enumerate(sizes):
        offsets = sorted({0, frames // 2, frames - 1})
        events = [(o, bytes((0x90, 60 + i % 12, 1 + o % 127))) for o in offsets]
        truth += [(start + o, data) for o, data in events]
        processor.process(make_audio(2, frames, i), reversed(events))  # hosts may hand them unsorted
        start += frames
    blocks = [processor.handoff.take() for _ in sizes]
    assert [b.seq for b in blocks] == list(range(len(sizes)))
    assert [b.start_sample for b in blocks] == list(np.cumsum([0] + sizes[:-1]))
    got = [(s, e.data) for b in blocks for s, e in b.absolute_events()]
    assert got == truth
    assert processor.position == sum(sizes)


def test_a_full_handoff_drops_and_counts_without_waiting() -> None:
    processor = CaptureProcessor("s", "t", 48000, 1, capacity=3)
    for _ in range(5):
        processor.process(make_audio(1, 64))
    assert processor.dropped == 2
    assert len(processor.handoff) == 3
    assert processor.next_seq == 5  # dropped seqs are not reused: the receiver sees the hole
    assert [processor.handoff.take().seq for _ in range(3)] == [0, 1, 2]


def test_offline_processing_waits_for_room_and_loses_nothing() -> None:
    handoff = HandOff(capacity=2)
    processor = CaptureProcessor("s", "t", 48000, 1, handoff=handoff, realtime=False)
    seen: list[int] = []

    def drain() -> None:
        while len(seen) < 50:
            block = handoff.take(timeout=1.0)
            if block is not None:
                seen.append(block.seq)

    consumer = threading.Thread(target=drain)
    consumer.start()
    for _ in range(50):
        processor.process(make_audio(1, 32))
    consumer.join(timeout=10)
    assert seen == list(range(50))
    assert processor.dropped == 0


def test_bad_events_are_counted_not_fatal() -> None:
    processor = CaptureProcessor("s", "t", 48000, 1)
    audio = make_audio(1, 64)
    out = processor.process(audio, [(0, b"\x3c\x40"), (70, b"\xf8"), (1, b"\xf8"), ("x", b"\xf8")],
                            params=[(0, "", 1.0), (2, "gain", 0.5)])
    assert out is audio
    block = processor.handoff.take()
    assert block.midi == (MidiEvent(1, b"\xf8"),)
    assert [p.param for p in block.params] == ["gain"]
    assert processor.rejected_events == 4
    assert processor.last_rejection


def test_wrong_channel_count_is_a_host_error() -> None:
    processor = CaptureProcessor("s", "t", 48000, 2)
    with pytest.raises(ValueError, match="channels=2"):
        processor.process(make_audio(1, 64))


def test_a_block_made_without_checks_is_the_block_the_checks_pass() -> None:
    """``process`` makes its blocks with ``Block.checked_by_maker`` (checked once, not per block):
    each is equal, digest and all, to the Block the full checks make of the same fields, and
    what those checks refuse still reaches the host as an error."""
    import dataclasses

    from sendlearn.capture import Block, InvalidBlock

    processor = CaptureProcessor("s", "t", 48000, 2)
    audio = np.linspace(-1, 1, 2 * 256, dtype=np.float64).reshape(2, 256)  # not float32: copied to it
    processor.process(audio, [(5, b"\x90\x3c\x64"), (1, b"\x80\x3c\x00")], Playhead(seconds=1.0, bpm=90.0),
                      [(3, "t/gain", 0.5)])
    made = processor.handoff.take()
    assert made is not None
    fields = {f.name: getattr(made, f.name) for f in dataclasses.fields(Block) if f.name != "digest"}
    checked = Block(**fields)
    assert checked == made and checked.digest == made.digest
    assert [e.offset for e in made.midi] == [1, 5] and made.audio.dtype == np.float32
    with pytest.raises(InvalidBlock):
        processor.process(np.zeros((2, 256), dtype=np.float32), (), "not a playhead")  # type: ignore[arg-type]
    with pytest.raises(InvalidBlock):
        CaptureProcessor("s", "t", 10, 2)
