"""Holes inside a live stream (periods the JACK process missed or could not store, blocks a
full hand-off refused) end as recorded gaps, the stream complete around them: sent to a real
receiver, or written by the store (``sendlearn live --data-dir``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import make_audio, read_stream, wait_for
from sendlearn.capture import HandOff, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.store.sink import SENDER_LIVE, StoreSink, StoreStream
from sendlearn.transport.link import LinkSink
from sendlearn.transport.sender import Sender

FRAMES = 128
DROPPED = "dropped by the sender's audio thread"


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


# --- the same holes written by the store (``sendlearn live --data-dir``: no receiver, no socket) ---

CLOSING = {"xruns": 0, "frame_jumps": 0, "midi_dropped": 0}  # stands in for the bridge's closing figures
LINK_ONLY = {"connections", "blocks_backfilled", "audio_lost_spool_full"}  # what only a link has to say
STORE_ONLY = {"written_by"}


def _capture_plan(sink, data: np.ndarray, plan: list[tuple[str, int]], between=None) -> tuple[object, object]:
    """Capture ``plan`` into a live stream of ``sink``: ("block", n) periods captured, ("skip", n)
    periods lost before capture (as the bridge skips missed JACK cycles). ``between(processor)``
    runs after each block (a test waits there for the drain)."""
    info = StreamInfo("gig", "holes", 48000, 2, FRAMES, host="jack")
    handoff = HandOff(1024)
    stream = sink.open_live(info, handoff, lambda: dict(CLOSING))
    processor = CaptureProcessor.for_stream(info, realtime=True, handoff=handoff, first_seq=stream.first_seq,
                                            start_sample=stream.start_sample)
    for what, count in plan:
        if what == "skip":
            processor.skip(count, count * FRAMES)
            continue
        for _ in range(count):
            at = processor.position
            processor.process(data[:, at:at + FRAMES])
            if between is not None:
                between(processor)
    processor.close()
    return stream, stream.finish()


def _files(data_dir: Path) -> dict[str, object]:
    """Every file of the dataset; stream.json parsed, without who wrote it, when, and the take's
    id (each live take names itself afresh)."""
    out: dict[str, object] = {}
    for path in sorted((data_dir / "sessions").rglob("*")):
        if path.is_file():
            name = str(path.relative_to(data_dir))
            out[name] = ({k: v for k, v in json.loads(path.read_text()).items() if k not in ("sender", "finalised_at", "take")}
                         if name.endswith("stream.json") else path.read_bytes())
    return out


def test_a_live_stream_written_by_the_store_matches_one_written_through_a_receiver(tmp_path: Path) -> None:
    """Holes inside and at the end of a live stream (seqs the bridge skipped) reach the dataset as
    declared gaps whichever sink wrote it; the two datasets are the same file by file, and
    stream.json's ``sender`` differs only in what a link adds (its connections, backfill and spool
    figures) and the store's ``written_by``."""
    audio = make_audio(2, FRAMES * 60, seed=5)
    plan = [("block", 10), ("skip", 2), ("block", 5), ("skip", 1), ("block", 20), ("skip", 3)]
    stream, problem = _capture_plan(StoreSink(tmp_path / "store", SENDER_LIVE), audio, plan)
    assert problem is None
    assert stream.figures()["blocks_dropped"] == 6 and stream.figures()["blocks_written"] == 35
    with ReceiverThread(tmp_path / "served") as receiver:
        _, problem = _capture_plan(LinkSink(receiver.url), audio, plan)
    assert problem is None
    stored = read_stream(tmp_path / "store", "gig", "holes")["info"]
    served = read_stream(tmp_path / "served", "gig", "holes")["info"]
    assert stored["complete"] and stored["ended"] == "bye" and stored["blocks"] == 35 and stored["last_seq"] == 40
    assert [(g["first_seq"], g["last_seq"], g["reason"]) for g in stored["gaps"]] == [
        (10, 11, DROPPED), (17, 17, DROPPED), (38, 40, DROPPED)]
    assert _files(tmp_path / "store") == _files(tmp_path / "served")
    mine, theirs = stored["sender"], served["sender"]
    assert mine == {**CLOSING, "blocks_dropped_by_audio_thread": 6, "written_by": SENDER_LIVE}
    assert set(theirs) - set(mine) == LINK_ONLY and set(mine) - set(theirs) == STORE_ONLY
    assert {k: v for k, v in theirs.items() if k not in LINK_ONLY} == {k: mine[k] for k in mine if k not in STORE_ONLY}


def test_blocks_the_full_hand_off_refused_become_recorded_gaps_in_the_store(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's drain stalls (a slow disk) while the producer offers on: the blocks a full
    hand-off refuses are counted and declared, so the dataset records them as gaps with the
    sender's reason, never a silent hole; the stream is complete around them."""
    entered, release = threading.Event(), threading.Event()
    write = StoreStream._write

    def stalling(self: StoreStream, batch, holes=None) -> int:
        if batch and not release.is_set():
            entered.set()
            release.wait(30)
        return write(self, batch, holes)

    monkeypatch.setattr(StoreStream, "_write", stalling)
    info = StreamInfo("gig", "full", 48000, 2, FRAMES, host="jack")
    handoff = HandOff(2)
    stream = StoreSink(tmp_path, SENDER_LIVE).open_live(info, handoff, lambda: {})
    processor = CaptureProcessor.for_stream(info, realtime=True, handoff=handoff)
    audio = make_audio(2, FRAMES * 20, seed=7)

    def capture(count: int, wait: bool = True) -> None:
        for _ in range(count):
            at = processor.position
            processor.process(audio[:, at:at + FRAMES])
            if wait:
                wait_for(lambda: len(handoff) == 0, what="the drain to take the block")

    capture(1, wait=False)
    wait_for(entered.is_set, what="the drain to stall")  # block 0 taken, its write held
    capture(6, wait=False)  # 1 and 2 fill the hand-off; 3..6 are refused
    assert handoff.dropped == 4
    release.set()
    wait_for(lambda: len(handoff) == 0, what="the drain to catch up")
    capture(13)
    processor.close()
    assert stream.finish() is None
    got = read_stream(tmp_path, "gig", "full")
    summary = got["info"]
    assert summary["complete"] and summary["blocks"] == 16 and summary["last_seq"] == 19
    assert [(g["first_seq"], g["last_seq"], g["start_sample"], g["end_sample"], g["reason"])
            for g in summary["gaps"]] == [(3, 6, 3 * FRAMES, 7 * FRAMES, DROPPED)]
    assert summary["sender"] == {"blocks_dropped_by_audio_thread": 4, "written_by": SENDER_LIVE}
    kept = np.ones(20 * FRAMES, bool)
    kept[3 * FRAMES:7 * FRAMES] = False
    assert got["audio"][:, kept].tobytes() == audio[:, kept].tobytes()  # sample n is sample n
    assert not got["audio"][:, ~kept].any()


def live_store_stream(data_dir: Path, name: str, *, blocks: int, seed: int) -> tuple[StoreStream, CaptureProcessor]:
    """A live stream of the store sink, its real-time processor, and ``blocks`` blocks written."""
    info = StreamInfo("gig", name, 48000, 2, FRAMES, host="jack")
    handoff = HandOff(1024)
    stream = StoreSink(data_dir, SENDER_LIVE).open_live(info, handoff, lambda: {})
    processor = CaptureProcessor.for_stream(info, realtime=True, handoff=handoff)
    audio = make_audio(2, FRAMES * blocks, seed=seed)
    for k in range(blocks):
        processor.process(audio[:, k * FRAMES:(k + 1) * FRAMES])
    wait_for(lambda: stream.figures()["blocks_written"] == blocks, what="the blocks written")
    return stream, processor


def test_an_aborted_live_store_stream_is_never_complete(tmp_path: Path) -> None:
    """A capture that fails partway aborts its stream: what was written stays in the work
    folder, and no stream.json says complete."""
    stream, _ = live_store_stream(tmp_path, "failed", blocks=5, seed=9)
    stream.abort("the capture failed: BridgeError: the JACK process died")
    folder = tmp_path / "sessions" / "gig" / "failed"
    assert (folder / ".work" / "journal").exists() and not (folder / "stream.json").exists()


def test_the_live_panel_shows_the_store_when_there_is_no_link(tmp_path: Path) -> None:
    """Without a link there is no sender: the panel shows what the store wrote, how far it is
    durable and what was dropped, instead of link and ACK figures."""
    from sendlearn.cli.live import _Panel

    stream, processor = live_store_stream(tmp_path, "panel", blocks=3, seed=11)
    processor.skip(2, 2 * FRAMES)
    rows = dict(_Panel._stream_rows(stream.info, stream))
    assert set(rows) == {"store", "written", "dropped"}
    assert rows["written"].startswith("3 blocks") and rows["dropped"].startswith("2 blocks")
    processor.close()
    assert stream.finish() is None
    assert dict(_Panel._stream_rows(stream.info, stream))["written"] == "3 blocks, durable through seq 4"
