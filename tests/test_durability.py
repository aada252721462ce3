"""The receiver never loses or damages what it acknowledged (issue 11): crashes in clean-up, a
damaged journal, full and failing disks, overlapping blocks, >8 channels, reconnect storms.
Real filesystems (tmpfs, ext4 on a loop device, mounted here as root), real sockets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import soundfile

from disks import fill, tmpfs
from helpers import make_audio, make_block, read_stream, wait_for
from receiving import RawClient, blocks, closed, hello, joined
from sendlearn.capture import Playhead, StreamInfo
from sendlearn.files.records import iter_records
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.store.writer import StorageError, StreamWriter
from sendlearn.transport import ErrorCode, Quality
from sendlearn.transport.codec import degrade
from sendlearn.transport.sender import Sender

SR = 48000


# --- a crash while finalise removes the work folder ------------------------------------------

def test_a_complete_stream_is_never_rewritten_from_a_leftover_work_folder(tmp_path: Path, receiver: ReceiverThread) -> None:
    sent = blocks(20)
    folder = tmp_path / "sessions/sess/keys"
    client = RawClient(receiver.url, hello())
    client.send(sent)
    client.bye(19)
    assert closed(client)[0] == 1000
    written = (folder / "stream.json").read_text()
    (folder / ".work").mkdir()  # what a SIGKILL inside the clean-up leaves
    again = RawClient(receiver.url, hello())  # the sender missed the last ACK: BYE again
    assert again.welcome.durable_through == 19
    again.bye(19)
    assert closed(again)[0] == 1000
    receiver.stop()  # finalises the open streams before the dataset is read
    assert (folder / "stream.json").read_text() == written
    assert not (folder / ".work").exists()
    got = read_stream(tmp_path, "sess", "keys")
    assert got["info"]["blocks"] == 20 and got["info"]["gaps"] == []
    assert got["audio"].tobytes() == joined(sent).tobytes()


# --- one byte flipped in the middle of the journal ------------------------------------------

def test_a_damaged_journal_record_costs_that_record_only(tmp_path: Path, receiver: ReceiverThread, caplog: pytest.LogCaptureFixture) -> None:
    sent = blocks(1000)
    client = RawClient(receiver.url, hello())
    for first in range(0, 1000, 100):
        client.send(sent[first:first + 100])
    client.read_until_ack(999)
    client.ws.close()
    receiver.stop()  # finalises the open streams before the dataset is read
    journal = tmp_path / "sessions/sess/keys/.work/journal"
    offsets = [(offset, record) for offset, record in iter_records(journal)]
    middle = journal.stat().st_size // 2
    offset, record = max((o, r) for o, r in offsets if o <= middle)
    assert record["k"] == "block"
    damaged = record["seq"]
    data = bytearray(journal.read_bytes())
    data[offset + 40] ^= 0x01  # a flipped bit inside that record
    journal.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="sendlearn.receiver"), \
            ReceiverThread(tmp_path, commit_interval=0.05) as receiver:
        client = RawClient(receiver.url, hello())
        assert client.welcome.durable_through == damaged - 1
        client.bye(999)  # the sender released everything up to 999 long ago
        assert closed(client)[0] == 1000
    got = read_stream(tmp_path, "sess", "keys")
    info = got["info"]
    assert got["blocks"].column("seq").to_pylist() == [s for s in range(1000) if s != damaged]
    assert any("journal damaged" in r.getMessage() for r in caplog.records)
    assert [(g["first_seq"], g["last_seq"], g["reason"]) for g in info["gaps"]] == [
        (damaged, damaged, "damaged on the receiver's disk (journal)")]
    assert [(d["first_seq"], d["last_seq"], d["blocks_lost"]) for d in info["damage"]] == [(damaged, damaged, 1)]
    audio = got["audio"]
    for b in sent:  # the audio file itself was not damaged: every block's audio is whole
        assert audio[:, b.start_sample:b.end_sample].tobytes() == b.audio.tobytes()


# --- a write the disk takes only in part -----------------------------------------------------

def test_a_write_the_disk_takes_only_in_part_is_never_acknowledged(tmp_path: Path) -> None:
    info = StreamInfo("sess", "keys", SR, 2, 300)
    sent = blocks(2, frames=300)  # 2,400 bytes each: the second crosses a page boundary
    with tmpfs(tmp_path / "disk", "256k") as disk:
        writer = StreamWriter(disk, info, take="t")
        writer.add(sent[:1])
        assert writer.commit() == 0
        filler = fill(disk)  # block 1's first 1,696 bytes still fit in block 0's page
        with pytest.raises(StorageError, match="No space left on device"):
            writer.add(sent[1:])
        assert writer.failed is not None
        with pytest.raises(StorageError):
            writer.commit()  # nothing more is made durable, so nothing more is acknowledged
        writer.abandon()
        filler.unlink()
        again = StreamWriter(disk, info, take="t")
        assert again.acknowledgeable == 0  # block 1 is not on disk: it will be sent again
        again.add(sent[1:])
        again.bye(1)
        again.commit()
        again.finalise("bye")
        got = read_stream(disk, "sess", "keys")
    assert got["audio"].tobytes() == joined(sent).tobytes()


# --- overlapping samples ---------------------------------------------------------------------

@pytest.mark.parametrize("backfill", [False, True])
def test_blocks_overlapping_stored_audio_are_refused(tmp_path: Path, receiver: ReceiverThread, backfill: bool) -> None:
    sent = blocks(10)
    client = RawClient(receiver.url, hello())
    client.send(sent[:4], quality=Quality.PCM16)
    client.send(sent[4:])
    client.read_until_ack(9)
    if backfill:  # seq 2's backfill, but at seq 5's samples
        intruder = make_block(2, frames=64, start=5 * 64, audio=make_audio(2, 64, 99))
        client.send([intruder], backfill=True)
    else:  # a new seq over seq 5's samples
        intruder = make_block(10, frames=64, start=5 * 64 + 10, audio=make_audio(2, 64, 99))
        client.send([intruder])
    code, reason = closed(client)
    assert code == ErrorCode.OVERLAP, (code, reason)
    again = RawClient(receiver.url, hello())
    again.send(sent[:4], backfill=True)  # the same seq's backfill at its own samples is fine
    again.bye(9)
    assert closed(again)[0] == 1000
    receiver.stop()  # finalises the open streams before the dataset is read
    got = read_stream(tmp_path, "sess", "keys")
    assert got["audio"].tobytes() == joined(sent).tobytes()
    assert got["blocks"].column("quality").to_pylist() == ["FLOAT32"] * 10


# --- more than 8 channels ---------------------------------------------------------------------

@pytest.mark.parametrize(("quality", "subtype"), [(Quality.PCM16, "PCM_16"), (Quality.PCM24, "PCM_24")])
def test_nine_channels_at_a_pcm_level_land_in_a_wav_of_that_depth(tmp_path: Path, quality: Quality,
                                                                   subtype: str) -> None:
    info = StreamInfo("sess", "wide", SR, 9, 256, "Wide", "test")
    source = make_audio(9, 256 * 40, 7)
    with ReceiverThread(tmp_path) as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=False)
        sender = Sender(receiver.url, info, processor.handoff, quality=quality).start()
        for i in range(40):
            processor.process(source[:, i * 256:(i + 1) * 256], [(3, b"\x90\x3c\x64")], Playhead(playing=True))
        sender.close(timeout=120)
    got = read_stream(tmp_path, "sess", "wide")
    assert got["info"]["audio"]["file"] == "audio.wav" and got["info"]["audio"]["subtype"] == subtype
    assert soundfile.info(got["folder"] / "audio.wav").subtype == subtype
    assert got["audio"].tobytes() == degrade(source, quality).tobytes()
    assert got["info"]["complete"] and got["info"]["gaps"] == []


# --- reconnects: the stream lingers, and is finalised once -----------------------------------

def test_a_stream_lingers_for_its_sender_and_is_finalised_once(tmp_path: Path, receiver: ReceiverThread) -> None:
    sent = blocks(30)
    folder = tmp_path / "sessions/sess/keys"
    for part in range(3):  # a flaky link: three connections
        client = RawClient(receiver.url, hello())
        assert client.welcome.durable_through == part * 10 - 1
        client.send(sent[part * 10:(part + 1) * 10])
        client.read_until_ack(part * 10 + 9)
        if part < 2:
            client.ws.close()
            assert not (folder / "stream.json").exists()  # not finalised: it lingers
    client.bye(29)
    assert closed(client)[0] == 1000
    assert receiver.receiver.streams_finalised == 1
    receiver.stop()  # finalises the open streams before the dataset is read
    got = read_stream(tmp_path, "sess", "keys")
    assert got["info"]["complete"] and got["audio"].tobytes() == joined(sent).tobytes()


def test_a_stream_whose_sender_does_not_return_is_finalised_after_the_linger(tmp_path: Path) -> None:
    folder = tmp_path / "sessions/sess/keys"
    with ReceiverThread(tmp_path, commit_interval=0.05, linger=0.3) as receiver:
        client = RawClient(receiver.url, hello())
        client.send(blocks(5))
        client.read_until_ack(4)
        client.ws.close()
        wait_for(lambda: receiver.receiver.streams_finalised == 1, 30, "the stream finalised after the linger")
    got = read_stream(tmp_path, "sess", "keys")
    assert (got["info"]["ended"], got["info"]["complete"], got["info"]["blocks"]) == ("connection lost", False, 5)
    assert (folder / ".work").exists()  # kept: the sender may still come back

