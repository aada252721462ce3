"""Holes inside a live stream (periods the JACK process missed or could not store) travel
to a real receiver and end as recorded gaps, the stream complete around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import make_audio, read_stream
from sendlearn.capture import StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport.sender import Sender

FRAMES = 128


def test_holes_between_blocks_of_one_batch_become_gaps(tmp_path: Path) -> None:
    """Before: the sender put blocks on both sides of a hole into one frame, whose ``dropped``
    range then lay after its first seq, and the receiver refused the stream (INVALID_BLOCK)."""
    info = StreamInfo("gig", "holes", 48000, 2, FRAMES, host="jack")
    processor = CaptureProcessor.for_stream(info, realtime=True)
    audio = make_audio(2, FRAMES * 40, seed=3)
    plan = [("block", 10), ("skip", 2), ("block", 5), ("skip", 1), ("block", 20)]
    with ReceiverThread(tmp_path) as receiver:
        sender = Sender(receiver.url, info, processor.handoff, max_batch_frames=FRAMES * 64)
        at = 0
        for what, count in plan:  # all queued before the sender starts: one batch would span them
            if what == "skip":
                processor.skip(count, count * FRAMES)
            else:
                for _ in range(count):
                    processor.process(audio[:, at:at + FRAMES])
                    at += FRAMES
            if what == "skip":
                at += count * FRAMES
        processor.close()
        sender.start()
        sender.close(timeout=120)
    got = read_stream(tmp_path, "gig", "holes")
    info_json = got["info"]
    assert info_json["complete"] and info_json["blocks"] == 35
    assert [(g["first_seq"], g["last_seq"], g["start_sample"], g["end_sample"]) for g in info_json["gaps"]] == [
        (10, 11, 10 * FRAMES, 12 * FRAMES), (17, 17, 17 * FRAMES, 18 * FRAMES)]
    stored = got["audio"]
    assert stored.shape == (2, 38 * FRAMES)
    kept = np.ones(38 * FRAMES, bool)
    kept[10 * FRAMES:12 * FRAMES] = kept[17 * FRAMES:18 * FRAMES] = False
    assert stored[:, kept].tobytes() == audio[:, :38 * FRAMES][:, kept].tobytes()  # sample n is sample n
    assert not stored[:, ~kept].any()
