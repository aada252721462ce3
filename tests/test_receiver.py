"""Processor -> sender -> real loopback websocket -> receiver -> dataset, read back from disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import mido
import msgpack
import numpy as np
import pytest

from helpers import make_audio, make_block, read_stream
from receiving import RawClient, capture, check_dataset, refusal
from sendlearn.capture import HandOff, Playhead, StreamInfo
from sendlearn.plugin import CaptureProcessor
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import (
    ErrorCode,
    Hello,
    Protocol,
    Quality,
    Role,
    State,
    Welcome,
    decode_frame,
    encode_frame,
)
from sendlearn.transport.sender import Sender, SenderError

SR = 48000


def test_a_stream_lands_whole_and_reads_back_exactly(tmp_path: Path) -> None:
    info = StreamInfo("sess", "keys", SR, 2, 512, "Keys", "test")
    with ReceiverThread(tmp_path) as receiver:
        truth = capture(info, receiver.url, 200, tempo_change_at=120)
    got = read_stream(tmp_path, "sess", "keys")
    check_dataset(got, truth, info)
    assert truth["sender"].blocks_acked == 200
    assert not (got["folder"] / ".work").exists()
    # notes.mid: every channel message at the tick the playhead puts it, with the tempo map
    midi = got["midi"]
    tempos = [(t, m.tempo) for t, m in _absolute(midi.tracks[0]) if m.type == "set_tempo"]
    assert tempos == [(0, mido.bpm2tempo(90)), (round(120 * 512 / SR * 90 / 60 * 960), mido.bpm2tempo(150))]
    assert tempos[1][0] == 1843
    meters = [(m.numerator, m.denominator) for _, m in _absolute(midi.tracks[0]) if m.type == "time_signature"]
    assert meters == [(3, 4)]
    notes = [(t, m.bytes()) for t, m in _absolute(midi.tracks[1]) if not m.is_meta]
    # each tick is the exact (rational) beat position of the event's sample, rounded
    exact = [(_exact_ticks(sample, 120 * 512), list(data)) for sample, data in truth["events"]]
    assert [d for _, d in notes] == [d for _, d in sorted(exact, key=lambda e: e[0])]
    assert all(abs(t - x) <= Fraction(1, 2) for (t, _), (x, _) in zip(notes, sorted(exact, key=lambda e: e[0]),
                                                                      strict=True))


def _exact_ticks(sample: int, change: int) -> Fraction:
    if sample <= change:
        return Fraction(sample * 90 * 960, SR * 60)
    return Fraction(change * 90 * 960, SR * 60) + Fraction((sample - change) * 150 * 960, SR * 60)


def _absolute(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    now, out = 0, []
    for message in track:
        now += message.time
        out.append((now, message))
    return out


def test_the_tracks_of_a_session_stream_side_by_side_on_one_clock(tmp_path: Path) -> None:
    infos = [StreamInfo("band", name, SR, ch, 256, name.title(), "test") for name, ch in
             (("keys", 2), ("bass", 1), ("drums", 2))]
    truths: dict = {}
    with ReceiverThread(tmp_path) as receiver:
        threads = [threading.Thread(target=lambda i=i, s=s: truths.__setitem__(i.stream, capture(i, receiver.url,
                                                                                                  120, seed=s)))
                   for s, i in enumerate(infos)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for info in infos:
        got = read_stream(tmp_path, "band", info.stream)
        check_dataset(got, truths[info.stream], info)
        assert got["audio"].shape == (info.channels, 120 * 256)


@pytest.mark.parametrize("quality,subtype", [(Quality.PCM16, "PCM_16"), (Quality.PCM24, "PCM_24")])
def test_integer_levels_are_stored_as_flac_at_that_depth(tmp_path: Path, quality: Quality, subtype: str) -> None:
    info = StreamInfo("sess", "pcm", SR, 2, 512)
    with ReceiverThread(tmp_path) as receiver:
        truth = capture(info, receiver.url, 40, quality=quality)
    got = read_stream(tmp_path, "sess", "pcm")
    assert got["info"]["audio"]["file"] == "audio.flac" and got["info"]["audio"]["subtype"] == subtype
    bits = 16 if quality is Quality.PCM16 else 24
    assert np.abs(got["audio"] - truth["audio"]).max() <= 1.0 / (1 << (bits - 1))
    assert got["blocks"].column("quality").to_pylist() == [quality.name] * 40
    assert got["info"]["quality"]["history"] == [{"first_seq": 0, "last_seq": 39, "quality": quality.name}]


# --- raw protocol clients: duplicates, order, gaps, refusals ------------------------------------

def test_duplicates_ignored_out_of_order_placed_and_missing_recorded(tmp_path: Path, receiver: ReceiverThread) -> None:
    blocks = [make_block(seq, frames=64) for seq in range(10)]
    client = RawClient(receiver.url, Hello("sess", "keys", "", SR, 2, 64, "raw"))
    assert client.welcome == Welcome(-1, client.welcome.max_frame_size)
    client.send([blocks[0], blocks[2]])
    client.send([blocks[1]])
    client.send([blocks[0], blocks[1]])  # duplicates
    client.send([blocks[4]], dropped=[(3, 3)])  # 3 dropped by the audio thread
    client.send([blocks[6]])  # 5 never sent; 7, 8, 9 never sent
    client.read_until_ack(4)
    client.bye(9)
    client.read_until_ack(4)
    receiver.stop()  # finalises the open streams before the dataset is read
    got = read_stream(tmp_path, "sess", "keys")
    info = got["info"]
    assert got["blocks"].column("seq").to_pylist() == [0, 1, 2, 4, 6]
    assert info["duplicates_ignored"] == 2
    assert [(g["first_seq"], g["last_seq"], g["reason"]) for g in info["gaps"]] == [
        (3, 3, "dropped by the sender's audio thread"), (5, 5, "never arrived"), (7, 9, "never arrived")]
    assert info["gaps"][0]["start_sample"] == 192 and info["gaps"][0]["end_sample"] == 256
    audio = got["audio"]
    for b in (blocks[0], blocks[1], blocks[2], blocks[4], blocks[6]):
        assert audio[:, b.start_sample:b.end_sample].tobytes() == b.audio.tobytes()
    assert not audio[:, 192:256].any() and not audio[:, 320:384].any()  # gaps are silence
    assert audio.shape[1] == 7 * 64


def test_a_stream_cut_without_bye_is_finalised_then_resumed(tmp_path: Path) -> None:
    blocks = [make_block(seq, frames=128) for seq in range(8)]
    hello = Hello("sess", "keys", "", SR, 2, 128, "raw")
    with ReceiverThread(tmp_path, commit_interval=0.05, linger=0.2) as receiver:  # finalised after 0.2 s
        client = RawClient(receiver.url, hello)
        client.send(blocks[:5])
        client.read_until_ack(4)
        client.ws.close()  # no BYE
        folder = tmp_path / "sessions/sess/keys"
        deadline = time.monotonic() + 10
        while not (folder / "stream.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        partial = json.loads((folder / "stream.json").read_text())
        assert (partial["complete"], partial["ended"], partial["blocks"]) == (False, "connection lost", 5)
        assert (folder / ".work").exists()
        client = RawClient(receiver.url, hello)
        assert client.welcome.durable_through == 4  # resume point from disk
        client.send(blocks[3:])  # overlap: 3 and 4 again
        client.bye(7)
        client.read_until_ack(7)
    got = read_stream(tmp_path, "sess", "keys")
    assert got["blocks"].column("seq").to_pylist() == list(range(8))
    assert got["info"]["complete"] and got["info"]["duplicates_ignored"] == 2
    assert got["audio"].tobytes() == np.concatenate([b.audio for b in blocks], axis=1).tobytes()


def test_bad_clients_get_close_codes_and_a_good_one_is_unharmed(tmp_path: Path) -> None:
    info = StreamInfo("sess", "good", SR, 2, 256)
    good_hello = Hello("sess", "keys", "", SR, 2, 64, "raw")
    block = make_block(0, frames=64)
    bad_digest = Protocol(Role.SENDER)
    bad_digest.send(good_hello)
    bad_digest.state = State.STREAMING
    bad_digest.send_blocks([block])
    hello_frame, block_frame = bad_digest.data_to_send()
    wire = msgpack.unpackb(encode_frame(decode_frame(block_frame), 0)[1:])
    audio = bytearray(wire["audio"])
    audio[40] ^= 0x01  # one bit of one sample
    tampered = b"\x00" + msgpack.packb({**wire, "audio": bytes(audio)})
    cases = {
        "garbage": ([b"\x00\xff\xfe garbage"], ErrorCode.MALFORMED),
        "version": ([b"\x00" + msgpack.packb({**_hello_map(good_hello), "version": 9})],
                    ErrorCode.UNSUPPORTED_VERSION),
        "oversized": ([b"\x00" + b"\x01" * (1 << 16)], None),
        "digest": ([hello_frame, bytes(tampered)], ErrorCode.BAD_DIGEST),
        "path": ([b"\x00" + msgpack.packb({**_hello_map(good_hello), "stream": "../x"})],
                 ErrorCode.BAD_ID),
        "blocks first": ([block_frame], ErrorCode.UNEXPECTED_MESSAGE),
    }
    outside_before = set(os.listdir(tmp_path.parent))
    with ReceiverThread(tmp_path / "data", max_frame_size=1 << 15) as receiver:
        result: dict = {}
        good = threading.Thread(target=lambda: result.setdefault("truth", capture(info, receiver.url, 300)))
        good.start()
        for name, (frames, code) in cases.items():
            close_code, reason = refusal(receiver.url, frames)
            if code is None:  # over max_size: the websocket layer refuses it (1009) before we see it
                assert close_code == 1009, name
            else:
                assert close_code == int(code), (name, close_code, reason)
                assert reason, name
        good.join(60)
    check_dataset(read_stream(tmp_path / "data", "sess", "good"), result["truth"], info)
    assert set(os.listdir(tmp_path.parent)) == outside_before
    assert not list((tmp_path / "data").rglob("x"))
    written = {p.relative_to(tmp_path / "data").parts[:3] for p in (tmp_path / "data").rglob("*") if p.is_file()}
    assert written <= {("sessions", "sess", "good"), ("sessions", "sess", "keys")}


def _hello_map(hello: Hello) -> dict:
    from sendlearn.transport.encode import wire_form

    return wire_form(hello)


def test_a_second_connection_for_a_live_stream_is_refused(tmp_path: Path) -> None:
    hello = Hello("sess", "keys", "", SR, 2, 64, "raw")
    with ReceiverThread(tmp_path) as receiver:
        first = RawClient(receiver.url, hello)
        assert isinstance(first.welcome, Welcome)
        code, reason = refusal(receiver.url, [encode_frame(hello)])
        assert code == ErrorCode.STREAM_BUSY and "already connected" in reason
        first.ws.close()


def test_a_token_is_required_when_tokens_are_configured(tmp_path: Path) -> None:
    with ReceiverThread(tmp_path, tokens={"right"}) as receiver:
        code, _ = refusal(receiver.url, [encode_frame(Hello("s", "t", "", SR, 1, 64, "raw", "wrong"))])
        assert code == ErrorCode.UNAUTHORIZED
        info = StreamInfo("s", "t", SR, 1, 64)
        handoff = HandOff()
        sender = Sender(receiver.url, info, handoff, token="nope").start()
        with pytest.raises(SenderError, match="UNAUTHORIZED"):
            sender.close(timeout=20)
        ok = Sender(receiver.url, info, HandOff(), token="right").start()
        ok.handoff.offer(make_block(0, frames=64, channels=1, audio=make_audio(1, 64)).__class__(
            "s", "t", 0, 0, 64, SR, 1, Playhead(), (), (), make_audio(1, 64)))
        ok.close(timeout=20)
        assert ok.blocks_acked == 1


def test_serve_and_status_commands(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "sendlearn", "serve", "--port", "0", "--data-dir",
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert "listening on ws://" in line, line
        url = line.split("listening on ")[1].split(",")[0]
        info = StreamInfo("cli", "keys", SR, 1, 128)
        capture(info, url, 30)
    finally:
        server.terminate()
        server.wait(20)
    assert server.returncode == 0
    out = subprocess.run([sys.executable, "-m", "sendlearn", "status", "--data-dir", str(tmp_path), "--json"],
                         capture_output=True, text=True, check=True).stdout
    (stream,) = json.loads(out)["streams"]
    assert (stream["session"], stream["stream"], stream["blocks"], stream["state"]) == ("cli", "keys", 30, "complete")
    assert stream["seconds"] == pytest.approx(30 * 128 / SR)
    table = subprocess.run([sys.executable, "-m", "sendlearn", "status", "--data-dir", str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout
    assert "keys" in table and "complete" in table
    bad = subprocess.run([sys.executable, "-m", "sendlearn", "status", "--data-dir", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no such directory" in bad.stderr


def test_hello_meta_and_bye_stats_land_in_stream_json(tmp_path: Path) -> None:
    info = StreamInfo("sess", "gm", SR, 1, 64, "GM", "fluidsynth")
    with ReceiverThread(tmp_path) as receiver:
        processor = CaptureProcessor.for_stream(info, realtime=False)
        sender = Sender(receiver.url, info, processor.handoff, meta={"onset_lag_frames": 88},
                        stats=lambda: {"xruns": 3}).start()
        for _ in range(5):
            processor.process(make_audio(1, 64))
        sender.close(timeout=30)
    stream = json.loads((tmp_path / "sessions/sess/gm/stream.json").read_text())
    assert stream["meta"] == {"onset_lag_frames": 88}
    assert stream["sender"]["xruns"] == 3 and stream["sender"]["blocks_dropped_by_audio_thread"] == 0
    assert stream["host"] == "fluidsynth"
