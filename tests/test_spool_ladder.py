"""The spool survives a restart and forgets only what is released; the ladder does not flap."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_block
from sendlearn.capture import StreamInfo
from sendlearn.transport import Quality
from sendlearn.transport import spool as spool_module
from sendlearn.transport.ladder import QualityLadder
from sendlearn.transport.spool import Spool, SpoolMismatch

INFO = StreamInfo("sess", "keys", 48000, 2, 512)


def test_a_reopened_spool_holds_exactly_the_unreleased_blocks(tmp_path: Path) -> None:
    spool = Spool(tmp_path, INFO)
    blocks = [make_block(seq) for seq in range(20)]
    for block in blocks:
        assert spool.add(block)
    spool.release([0, 1, 2, 5])
    spool.sync()
    spool.close()
    again = Spool(tmp_path, INFO)
    assert again.seqs() == [s for s in range(20) if s not in (0, 1, 2, 5)]
    assert (again.next_seq, again.next_sample) == (20, 20 * 512)
    for seq in again.seqs():
        got = again.block(seq)  # read back from disk, digest checked by Block
        assert got.audio.tobytes() == blocks[seq].audio.tobytes() and got.midi == blocks[seq].midi
    again.release(again.seqs())
    again.close()
    assert Spool(tmp_path, INFO).seqs() == []


def test_released_segments_are_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 20_000)  # a few blocks a segment
    spool = Spool(tmp_path, INFO)
    for seq in range(30):
        spool.add(make_block(seq))
    assert len(list(tmp_path.glob("segment-*.log"))) > 3
    spool.release(list(range(30)))
    assert len(list(tmp_path.glob("segment-*.log"))) == 1  # only the one still being written


def test_a_torn_tail_is_dropped_on_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, INFO)
    for seq in range(5):
        spool.add(make_block(seq))
    spool.close()
    (segment,) = tmp_path.glob("segment-*.log")
    data = segment.read_bytes()
    segment.write_bytes(data[:-100])  # a crash in the middle of the last record
    assert Spool(tmp_path, INFO).seqs() == [0, 1, 2, 3]


def test_a_spool_of_another_stream_is_refused(tmp_path: Path) -> None:
    Spool(tmp_path, INFO).close()
    with pytest.raises(SpoolMismatch):
        Spool(tmp_path, StreamInfo("sess", "bass", 48000, 2, 512))


def test_a_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(None, INFO, max_bytes=10_000)
    assert spool.add(make_block(0))
    assert spool.add(make_block(1))
    assert not spool.add(make_block(2))
    spool.release([0])
    assert spool.add(make_block(2))


def test_the_ladder_steps_with_hysteresis() -> None:
    ladder = QualityLadder(high=1.0, low=0.2, hold=2.0, settle=0.5)
    t = 0.0
    # a backlog that wobbles between the thresholds never moves it
    for k in range(200):
        t += 0.05
        assert ladder.update(0.3 + 0.6 * (k % 2), t) is Quality.FLOAT32
    # over the high mark: one rung per settle period, not all at once
    levels = []
    for _ in range(30):
        t += 0.05
        levels.append(ladder.update(3.0, t))
    assert levels[0] is Quality.PCM24
    assert levels.count(Quality.PCM24) >= 9  # 0.5 s at 0.05 s steps
    assert ladder.level is Quality.REDUCED
    # under the low mark: up one rung per hold period
    steps_before = len(ladder.steps)
    for _ in range(20):  # 1 s: not yet
        t += 0.05
        ladder.update(0.0, t)
    assert ladder.level is Quality.REDUCED
    for _ in range(200):  # 10 s: all the way back, one rung at a time
        t += 0.05
        ladder.update(0.0, t)
    assert ladder.level is Quality.FLOAT32
    ups = [level for _, level in ladder.steps[steps_before:]]
    assert ups == [Quality.PCM16, Quality.PCM24, Quality.FLOAT32]
