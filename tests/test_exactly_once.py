"""Exactly once on disk, and one client never hurting another: regressions from review
(lost final ACK, trailing drops, a second take, unbounded ranges, decode bombs, downgrades)."""

from __future__ import annotations

import io
import json
import resource
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed

from helpers import make_block, read_stream
from receiving import RawClient, blocks, closed, hello, refusal
from sendlearn.capture import Playhead
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import ErrorCode, Hello, Protocol, Quality, Role, State, Welcome
from sendlearn.transport.codec import decode_audio
from sendlearn.transport.decode import decode_frame
from sendlearn.transport.encode import encode_frame

SR = 48000


def finish(client: RawClient, last_seq: int, dropped: tuple = ()) -> None:
    client.bye(last_seq, dropped)
    client.read_until_ack(last_seq)


def test_a_reconnect_after_a_lost_final_ack_leaves_the_dataset_whole(tmp_path: Path, receiver: ReceiverThread) -> None:
    sent = blocks(100)
    client = RawClient(receiver.url, hello())
    client.send(sent[:50])
    client.read_until_ack(49)
    client.send(sent[50:])
    client.bye(99)
    client.ws.close()  # the final ACK is never read
    folder = tmp_path / "sessions/sess/keys"
    deadline = time.monotonic() + 10
    while (folder / ".work").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    again = RawClient(receiver.url, hello())  # the sender resends what it never saw acknowledged
    assert again.welcome.durable_through == 99
    again.send(sent[50:])
    finish(again, 99)
    assert closed(again)[0] == 1000  # the receiver closes once the stream is finalised
    assert receiver.receiver.streams_finalised == 1  # the second BYE is not a second stream
    other = refusal(receiver.url, [encode_frame(hello(take="take2"))])
    assert other[0] == ErrorCode.STREAM_MISMATCH and "another take" in other[1]
    receiver.stop()  # finalises the open streams before the dataset is read
    got = read_stream(tmp_path, "sess", "keys")
    assert got["blocks"].column("seq").to_pylist() == list(range(100)) and got["info"]["gaps"] == []
    assert got["audio"].tobytes() == np.concatenate([b.audio for b in sent], axis=1).tobytes()


def test_drops_after_the_last_block_are_named_and_acknowledged(tmp_path: Path, receiver: ReceiverThread) -> None:
    client = RawClient(receiver.url, hello())
    client.send(blocks(10))
    finish(client, 14, ((10, 14),))  # the ACK names 14: nothing is left to resend
    receiver.stop()  # finalises the open streams before the dataset is read
    gaps = read_stream(tmp_path, "sess", "keys")["info"]["gaps"]
    assert [(g["first_seq"], g["last_seq"], g["reason"]) for g in gaps] == [
        (10, 14, "dropped by the sender's audio thread")]


def test_another_take_of_an_unfinished_stream_is_refused(tmp_path: Path, receiver: ReceiverThread) -> None:
    first = RawClient(receiver.url, hello(take="take1"))
    first.send(blocks(5))
    first.read_until_ack(4)
    first.ws.close()
    time.sleep(0.3)
    code, reason = refusal(receiver.url, [encode_frame(hello(take="take2"))])
    assert code == ErrorCode.STREAM_MISMATCH and "take1" in reason


@pytest.mark.parametrize("frame_of", ["dropped", "bye"])
def test_unbounded_ranges_are_refused_and_the_receiver_stays_responsive(tmp_path: Path, receiver: ReceiverThread, frame_of: str) -> None:
    client = RawClient(receiver.url, hello())
    if frame_of == "dropped":
        client.protocol.state = State.STREAMING
        wire = msgpack.unpackb(encode_frame(_frame(client, [make_block(2**40, frames=64, start=0)]), 0)[1:])
        client.ws.send(b"\x00" + msgpack.packb({**wire, "dropped": [[1, 2**39]]}))  # a huge range
    else:
        client.send(blocks(3))
        client.bye(2**62)
    other = RawClient(receiver.url, Hello("sess", "other", "", SR, 2, 64, "raw", take="x"))
    assert isinstance(other.welcome, Welcome)  # the loop was not stuck on the huge range
    other.ws.close()
    deadline = time.monotonic() + 5
    while client.ws.close_code is None and time.monotonic() < deadline:
        try:
            client.ws.recv(0.5)
        except Exception:
            break
    expected = ErrorCode.INVALID_BYE if frame_of == "bye" else ErrorCode.INVALID_BLOCK
    assert client.ws.close_code in (expected, ErrorCode.MALFORMED), client.ws.close_code


def _frame(client: RawClient, blocks_: list) -> object:
    client.protocol.send_blocks(blocks_)
    return decode_frame(client.protocol.data_to_send()[-1])


def test_a_flac_payload_declaring_a_huge_signal_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((1 << 21, 8), np.int16), SR, format="FLAC", subtype="PCM_16")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Exception, match="declares"):
        decode_audio("flac", buffer.getvalue(), 8, 1, Quality.PCM16)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 16 * 1024  # KiB: nothing decoded


def test_values_that_cannot_be_stored_are_refused_not_raised() -> None:
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(encode_frame(hello()))
    receiver.send(Welcome())
    sender = Protocol(Role.SENDER)
    sender.send(hello())
    sender.state = State.STREAMING
    sender.send_blocks([make_block(0, frames=64)])
    wire = msgpack.unpackb(encode_frame(decode_frame(sender.data_to_send()[-1]), 0)[1:])
    wire["blocks"][0]["playhead"][5] = 2**63  # bar: fits msgpack, not an int32 column
    receiver.receive_data(b"\x00" + msgpack.packb(wire, use_bin_type=True))  # must not raise
    assert receiver.close_code in (ErrorCode.INVALID_BLOCK, ErrorCode.MALFORMED)


def test_backfill_never_downgrades_and_duplicates_count_across_connections(tmp_path: Path, receiver: ReceiverThread) -> None:
    sent = blocks(6)
    client = RawClient(receiver.url, hello())
    client.send(sent)
    client.send(sent[:3], quality=Quality.REDUCED, backfill=True)  # worse: ignored
    client.send(sent[:2])  # 2 duplicates
    client.read_until_ack(5)
    client.ws.close()
    time.sleep(0.3)
    again = RawClient(receiver.url, hello())
    again.send(sent[3:])  # 3 more duplicates, on another connection
    finish(again, 5)
    receiver.stop()  # finalises the open streams before the dataset is read
    got = read_stream(tmp_path, "sess", "keys")
    assert set(got["blocks"].column("quality").to_pylist()) == {"FLOAT32"}
    assert got["audio"].tobytes() == np.concatenate([b.audio for b in sent], axis=1).tobytes()
    assert got["info"]["duplicates_ignored"] == 3 + 2 + 3
    assert json.loads((got["folder"] / "stream.json").read_text())["quality"]["backfills"] == []


def test_a_spool_keeps_blocks_added_after_a_torn_record(tmp_path: Path) -> None:
    from sendlearn.capture import StreamInfo
    from sendlearn.transport.spool import Spool

    info = StreamInfo("sess", "keys", SR, 2, 64)
    spool = Spool(tmp_path, info)
    for block in blocks(9):
        spool.add(block)
    spool.close()
    (segment,) = tmp_path.glob("segment-*.log")
    segment.write_bytes(segment.read_bytes()[:-50])  # power lost mid-record
    spool = Spool(tmp_path, info)
    assert spool.seqs() == list(range(8))
    for block in blocks(5, start=8):
        spool.add(block)
    spool.close()
    assert Spool(tmp_path, info).seqs() == list(range(13))


def test_a_producer_numbering_below_its_spool_is_stopped(tmp_path: Path) -> None:
    from sendlearn.capture import StreamInfo
    from sendlearn.plugin import CaptureProcessor
    from sendlearn.transport.sender import Sender, SenderError
    from sendlearn.transport.spool import Spool

    info = StreamInfo("sess", "keys", SR, 1, 64)
    spool = Spool(tmp_path / "spool", info)
    for seq in range(4):
        spool.add(make_block(seq, frames=64, channels=1, session="sess"))
    with ReceiverThread(tmp_path / "data") as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=True)  # wrong: starts at 0 again
        sender = Sender(receiver.url, info, processor.handoff, spool=spool, adaptive=True).start()
        processor.process(np.zeros((1, 64), np.float32), (), Playhead())
        with pytest.raises(SenderError, match="first_seq=spool.next_seq"):
            sender.close(timeout=20)


def test_a_block_claiming_a_far_sample_is_refused(tmp_path: Path) -> None:
    with ReceiverThread(tmp_path) as receiver:
        client = RawClient(receiver.url, hello())
        client.send([make_block(3, frames=64, start=2**40)])  # would make a 8 TiB audio file
        code, reason = None, ""
        try:
            while True:
                client.ws.recv(5)
        except ConnectionClosed as closed:
            code, reason = closed.rcvd.code, closed.rcvd.reason
        assert code == ErrorCode.INVALID_BLOCK and "beyond" in reason
    assert (tmp_path / "sessions/sess/keys/audio.wav").stat().st_size < 1 << 20
