"""The sans-I/O protocol: both ends joined in memory, every message and quality level,
and bad input of every kind turning into one ProtocolError with its code."""

from __future__ import annotations

import os

import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_audio, make_block
from protocol_pair import HELLO, Pair
from sendlearn.capture import Block
from sendlearn.transport import (
    Ack,
    BlocksReceived,
    Bye,
    Error,
    ErrorCode,
    Hello,
    InvalidState,
    Protocol,
    ProtocolError,
    Quality,
    Role,
    State,
    Welcome,
    decode_frame,
    encode_frame,
)
from sendlearn.transport.codec import decode_audio, degrade, encode_audio, quantize


def blocks_equal(a: Block, b: Block, audio: np.ndarray | None) -> None:
    assert (a.seq, a.start_sample, a.frames, a.playhead, a.midi, a.params) == (
        b.seq, b.start_sample, b.frames, b.playhead, b.midi, b.params)
    if audio is None:
        assert b.audio is None
    else:
        assert b.audio.tobytes() == audio.tobytes()


def test_a_whole_conversation(pair: Pair) -> None:
    pair.open()
    assert pair.sender.state is pair.receiver.state is State.STREAMING
    blocks = [make_block(seq) for seq in range(3)]
    pair.sender.send_blocks(blocks[:1])
    pair.sender.send_blocks(blocks[1:], dropped=[(3, 4)])
    events = pair.to_receiver()
    assert [type(e) for e in events] == [BlocksReceived, BlocksReceived]
    assert events[1].dropped == ((3, 4),)
    for sent, got in zip(blocks, [b for e in events for b in e.blocks], strict=True):
        blocks_equal(sent, got, sent.audio)
        assert got.digest == sent.digest
    pair.receiver.send(Ack(2))
    assert pair.to_sender() == [Ack(2)]
    pair.sender.send(Bye(2))
    assert pair.to_receiver() == [Bye(2)]
    assert pair.sender.state is State.CLOSING
    pair.receiver.send(Ack(2))  # the receiver still acks what it makes durable after BYE
    assert pair.to_sender() == [Ack(2)]


@pytest.mark.parametrize("quality", list(Quality))
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_every_quality_round_trips(quality: Quality, channels: int, pair: Pair) -> None:
    pair.sender.hello = Hello("sess", "keys", "k", 48000, channels, 1000, "h")
    pair.sender.send(pair.sender.hello)
    pair.to_receiver()
    pair.receiver.send(Welcome())
    pair.to_sender()
    audio = make_audio(channels, 1000)
    audio[0, :4] = [1.0, -1.0, 0.99999994, -0.0]  # the ends of the range
    block = make_block(7, frames=1000, channels=channels, audio=audio)
    pair.sender.send_blocks([block], quality)
    (event,) = pair.to_receiver()
    (got,) = event.blocks
    assert event.quality is quality
    if quality is Quality.FLOAT32:
        expected = audio
    elif quality is Quality.NONE:
        expected = None
    elif quality is Quality.REDUCED:
        expected = degrade(audio, quality)
        mono = audio.mean(axis=0)
        assert all(np.array_equal(got.audio[c], got.audio[0]) for c in range(channels))
        # a smooth signal survives halving the rate: compare on a slow sine
        assert expected.shape == audio.shape and np.abs(expected[0, ::2][1:-1] - mono[::2][1:-1]).max() < 2.0
    else:
        bits = 24 if quality is Quality.PCM24 else 16
        expected = (quantize(audio, bits) / float(1 << (bits - 1))).astype(np.float32)
        assert np.abs(got.audio - audio).max() <= 1.0 / (1 << (bits - 1))
    blocks_equal(block, got, expected)


@pytest.mark.parametrize("bits,quality", [(16, Quality.PCM16), (24, Quality.PCM24)])
def test_integer_levels_pick_flac_when_it_is_smaller(bits: int, quality: Quality) -> None:
    t = np.arange(8192) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None, :].repeat(2, 0)
    coding, payload = encode_audio(tone, quality, 48000)
    assert coding == "flac"
    assert len(payload) < tone.size * bits // 8
    decoded = decode_audio(coding, payload, 2, 8192, quality)
    assert np.array_equal(quantize(decoded, bits), quantize(tone, bits))
    noise = make_audio(2, 16)  # tiny block of noise: FLAC's header costs more than it saves
    coding, payload = encode_audio(noise, quality, 48000)
    assert coding == f"s{bits}"
    assert np.array_equal(quantize(decode_audio(coding, payload, 2, 16, quality), bits), quantize(noise, bits))


def test_every_message_round_trips_through_a_frame(block: Block) -> None:
    from sendlearn.transport import BlockEntry, BlockFrame

    entry = BlockEntry.of(block)
    messages = [HELLO, Hello("a", "b", "", 8000, 1, 1, "", None, 5), Welcome(41, 1 << 20), Ack(-1), Ack(9),
                Bye(), Bye(12), Error(ErrorCode.BAD_DIGEST, "block 3"),
                BlockFrame(Quality.FLOAT32, "f32", block.audio.tobytes(), (entry,), True, ((1, 2),))]
    for message in messages:
        for level in (0, 3, 19):
            assert decode_frame(encode_frame(message, level)) == message


def refused(frame: bytes, max_size: int = 1 << 24) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame, max_size)
    return info.value.code


def body(obj: object) -> bytes:
    return b"\x00" + msgpack.packb(obj, use_bin_type=True)


def hello_dict(**changes: object) -> dict:
    d = {"type": "hello", "version": 1, "session": "s", "stream": "t", "track": "", "sample_rate": 48000,
         "channels": 2, "block_size": 512, "host": "h", "token": None, "resume_from": 0}
    d.update(changes)
    return d


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "", "x" * 65, "a\x00b"])
def test_bad_ids_are_refused_with_bad_id(bad: str) -> None:
    assert refused(body(hello_dict(stream=bad))) is ErrorCode.BAD_ID
    assert refused(body(hello_dict(session=bad))) is ErrorCode.BAD_ID


def test_refusals_and_their_codes(block: Block) -> None:
    assert refused(b"") is ErrorCode.MALFORMED
    assert refused(b"\x02" + msgpack.packb({})) is ErrorCode.MALFORMED  # unknown flag
    assert refused(b"\x01not zstd") is ErrorCode.MALFORMED
    assert refused(body([1, 2])) is ErrorCode.MALFORMED
    assert refused(body({"type": "nope"})) is ErrorCode.MALFORMED
    assert refused(body(hello_dict(channels="2"))) is ErrorCode.MALFORMED
    assert refused(body(hello_dict(sample_rate=True))) is ErrorCode.MALFORMED
    assert refused(b"\x00" + b"\x00" * 2000, max_size=1000) is ErrorCode.FRAME_TOO_LARGE
    bomb = b"\x01" + zstandard.ZstdCompressor().compress(msgpack.packb({"type": "x", "pad": b"\0" * 100_000}))
    assert len(bomb) < 1000
    assert refused(bomb, max_size=1000) is ErrorCode.FRAME_TOO_LARGE
    assert refused(body({"type": "error", "code": 1, "reason": "x"})) is ErrorCode.MALFORMED


def test_receiver_refuses_wrong_version_then_ignores_the_rest() -> None:
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(body(hello_dict(version=2)))
    assert receiver.close_code is ErrorCode.UNSUPPORTED_VERSION
    assert receiver.state is State.CLOSED
    (frame,) = receiver.data_to_send()
    error = decode_frame(frame)
    assert isinstance(error, Error) and error.code is ErrorCode.UNSUPPORTED_VERSION and "version 2" in error.reason
    receiver.receive_data(encode_frame(HELLO))
    assert receiver.events_received() == [] and receiver.data_to_send() == []


def test_a_bad_digest_is_refused(block: Block, pair: Pair) -> None:
    pair.open()
    pair.sender.send_blocks([block])
    (frame,) = pair.sender.data_to_send()
    message = decode_frame(frame)
    wire = msgpack.unpackb(encode_frame(message, 0)[1:])
    wire["blocks"][0]["digest"] ^= 1 << 7
    pair.receiver.receive_data(body(wire))
    assert pair.receiver.close_code is ErrorCode.BAD_DIGEST
    # and flipping one audio bit is caught the same way
    wire["blocks"][0]["digest"] ^= 1 << 7
    audio = bytearray(wire["audio"])
    audio[100] ^= 1
    wire["audio"] = bytes(audio)
    receiver = Pair()
    receiver.open()
    receiver.receiver.receive_data(body(wire))
    assert receiver.receiver.close_code is ErrorCode.BAD_DIGEST


def test_invalid_block_content_is_refused(block: Block, pair: Pair) -> None:
    pair.open()
    pair.sender.send_blocks([block])
    (frame,) = pair.sender.data_to_send()
    wire = msgpack.unpackb(encode_frame(decode_frame(frame), 0)[1:])
    wire["blocks"][0]["midi"][0][0] = 10_000  # outside the block
    pair.receiver.receive_data(body(wire))
    assert pair.receiver.close_code is ErrorCode.INVALID_BLOCK


def test_messages_out_of_turn_are_unexpected(block: Block) -> None:
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(encode_frame(Bye()))
    assert receiver.close_code is ErrorCode.UNEXPECTED_MESSAGE
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(encode_frame(Welcome()))  # a receiver's message sent to a receiver
    assert receiver.close_code is ErrorCode.UNEXPECTED_MESSAGE
    sender = Protocol(Role.SENDER)
    with pytest.raises(InvalidState, match="may not send"):
        sender.send(Bye())


def test_close_reasons_fit_a_websocket_close_frame() -> None:
    receiver = Protocol(Role.RECEIVER)
    receiver.fail(ErrorCode.RECEIVER_ERROR, "é" * 500)
    assert len(receiver.close_reason.encode()) <= 123


# --- fuzz -------------------------------------------------------------------------------

def valid_frames() -> list[bytes]:
    block = make_block(1, frames=64)
    pair = Pair()
    pair.open()
    frames = [encode_frame(HELLO, 0), encode_frame(HELLO, 3), encode_frame(Ack(3)), encode_frame(Bye(4))]
    for quality in Quality:
        pair.sender.send_blocks([block], quality)
    for compressed in pair.sender.data_to_send():
        frames += [compressed, encode_frame(decode_frame(compressed), 0)]
    return frames


VALID = valid_frames()
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),  # FUZZ_EXAMPLES=5000 for a long run
                deadline=None, suppress_health_check=[HealthCheck.too_slow])


def receiver_after_handshake() -> Protocol:
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(encode_frame(Hello("sess", "keys", "", 48000, 2, 64, "h")))
    receiver.send(Welcome())
    receiver.data_to_send()
    receiver.events_received()
    return receiver


def only_protocol_errors(frame: bytes) -> None:
    try:
        decode_frame(frame)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode) and exc.reason
    receiver = receiver_after_handshake()
    receiver.receive_data(frame)  # never raises
    if receiver.state is State.CLOSED:
        assert receiver.close_code is not None


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_ever_raise_protocol_error(frame: bytes) -> None:
    only_protocol_errors(frame)


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1,
                                        max_size=8), st.integers(0, 64))
def test_mutated_frames_only_ever_raise_protocol_error(frame: bytes, flips: list, cut: int) -> None:
    data = bytearray(frame)
    for position, value in flips:
        data[position % len(data)] = value
    only_protocol_errors(bytes(data[: len(data) - cut] if cut < len(data) else data))


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
                    | st.binary(max_size=8),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                        max_size=6),
                    max_leaves=30),
       st.sampled_from(["hello", "welcome", "block", "ack", "bye", "error"]))
def test_well_formed_msgpack_of_the_wrong_shape_is_refused_cleanly(junk: object, kind: str) -> None:
    obj = dict(junk) if isinstance(junk, dict) else {"x": junk}
    obj["type"] = kind
    only_protocol_errors(body(obj))


def test_reduced_level_keeps_a_slow_signal_close() -> None:
    t = np.arange(1001) / 48000
    tone = np.stack([np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 100 * t)]).astype(np.float32) * 0.5
    coding, payload = encode_audio(tone, Quality.REDUCED, 48000)
    decoded = decode_audio(coding, payload, 2, 1001, Quality.REDUCED)
    assert decoded.shape == (2, 1001)
    assert np.abs(decoded - tone).max() < 0.002
    assert np.array_equal(decoded, degrade(tone, Quality.REDUCED))
    assert len(payload) < tone.size  # under a quarter of the 16-bit stereo size


def test_estimated_event_times_keep_their_error_bound() -> None:
    from sendlearn.capture import MidiEvent

    pair = Pair()
    pair.open()
    block = make_block(2, midi=(MidiEvent(5, b"\x90\x40\x40", 128), MidiEvent(9, b"\x80\x40\x00")))
    pair.sender.send_blocks([block], Quality.PCM16)
    (event,) = pair.to_receiver()
    assert [e.timing_error for e in event.blocks[0].midi] == [128, None]
