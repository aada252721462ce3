"""The receiver made plain (issue 21): its protocol objects are driven from the event loop only,
each stream's lifecycle is the registry's table, and store errors map to close codes in one place."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import make_audio, read_stream
from receiving import RawClient, closed
from sendlearn.capture import Block, MidiEvent, Playhead
from sendlearn.server.errors import close_code
from sendlearn.server.receiver import ReceiverThread
from sendlearn.server.registry import IllegalTransition, StreamRegistry, StreamState
from sendlearn.store.errors import (
    InvalidBlocks,
    InvalidBye,
    Overlap,
    Refused,
    StorageError,
    StreamBusy,
    StreamMismatch,
)
from sendlearn.store.locks import StreamLocks
from sendlearn.transport import ErrorCode, Hello, Quality

SR = 48000
FRAMES = 512


def stream_blocks(stream: str, first: int, n: int) -> list[Block]:
    return [Block("loop", stream, seq, seq * FRAMES, FRAMES, SR, 2, Playhead(seconds=seq * FRAMES / SR, playing=True),
                  (MidiEvent(seq % FRAMES, b"\x90\x3c\x64"),), (), make_audio(2, FRAMES, seq))
            for seq in range(first, first + n)]


def send_one_stream(url: str, stream: str, sent: dict[str, list[Block]], errors: list[BaseException]) -> None:
    """Frames of every cost: large (decoded off the loop), zstd, FLAC-coded and small plain ones."""
    try:
        client = RawClient(url, Hello("loop", stream, "", SR, 2, FRAMES, "raw", None, 0, take="t1"))
        client.protocol.compression_level = 0  # plain frames ...
        batches = [stream_blocks(stream, 0, 40)]  # 160 KiB of audio: decoded and stored on a decode thread
        client.send(batches[-1])
        for seq in range(40, 60):  # one small plain frame each: decoded on the loop
            batches.append(stream_blocks(stream, seq, 1))
            client.send(batches[-1])
        client.protocol.compression_level = 3  # ... and zstd ones, decompressed on a decode thread
        batches.append(stream_blocks(stream, 60, 8))
        client.send(batches[-1])
        batches.append(stream_blocks(stream, 68, 4))
        client.send(batches[-1], quality=Quality.PCM16)  # FLAC-coded: its audio is decoded off the protocol
        client.protocol.compression_level = 0
        client.send(batches[-1], backfill=True)  # full quality over the 16-bit audio
        batches.append(stream_blocks(stream, 72, 4))
        client.send(batches[-1])
        client.bye(75)
        code, reason = closed(client)
        assert code == 1000, (code, reason)
        sent[stream] = [b for batch in batches for b in batch]
    except BaseException as exc:
        errors.append(exc)


def test_the_protocol_is_driven_from_the_event_loop_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the guard makes any protocol call off the loop's thread fail its connection (RECEIVER_ERROR),
    # so a receiver that decoded or acknowledged on another thread would lose these streams
    monkeypatch.setenv("SENDLEARN_CHECK_PROTOCOL_THREAD", "1")
    sent: dict[str, list[Block]] = {}
    errors: list[BaseException] = []
    with ReceiverThread(tmp_path, commit_interval=0.01) as server:
        threads = [threading.Thread(target=send_one_stream, args=(server.url, f"s{i:02d}", sent, errors))
                   for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        refused = dict(server.receiver.refused)
    assert not errors, errors[0]
    assert ErrorCode.RECEIVER_ERROR not in refused
    for stream, blocks in sent.items():
        got = read_stream(tmp_path, "loop", stream)
        assert got["info"]["complete"] and got["info"]["gaps"] == []
        assert got["audio"].tobytes() == np.concatenate([b.audio for b in blocks], axis=1).tobytes()
        assert got["blocks"].to_pydict()["seq"] == list(range(76))
    assert len(sent) == 12


def test_the_registry_moves_only_along_its_table(tmp_path: Path) -> None:
    here, other = StreamRegistry(StreamLocks(tmp_path)), StreamRegistry(StreamLocks(tmp_path))
    key = ("sess", "keys")
    owner = object()
    assert here.state(key) is StreamState.FREE
    with pytest.raises(IllegalTransition):
        here.move(key, StreamState.LINGERING)  # nothing to linger: it was never connected
    here.move(key, StreamState.CONNECTED, owner=owner)
    assert here.owned_by(key, owner) and not here.owned_by(key, object())
    with pytest.raises(StreamBusy):
        other.move(key, StreamState.CONNECTED, owner=object())  # another process's registry: the lock is held
    here.move(key, StreamState.LINGERING, writer=None)
    assert here.count(StreamState.LINGERING) == 1
    before = here.move(key, StreamState.CONNECTED, owner=owner)
    assert before is not None and before.state is StreamState.LINGERING
    here.move(key, StreamState.FINALISING)
    with pytest.raises(IllegalTransition):
        here.move(key, StreamState.CONNECTED)  # a HELLO waits for the files, then hears STREAM_BUSY
    here.move(key, StreamState.COMPLETE)
    assert here.state(key) is StreamState.FREE and here.keys() == set()
    other.move(key, StreamState.CONNECTED, owner=owner)  # released: the other process may have it now
    other.move(key, StreamState.FREE)


@pytest.mark.parametrize(("error", "code"), [
    (InvalidBlocks("x"), ErrorCode.INVALID_BLOCK), (Overlap("x"), ErrorCode.OVERLAP),
    (InvalidBye("x"), ErrorCode.INVALID_BYE), (StreamMismatch("x"), ErrorCode.STREAM_MISMATCH),
    (Refused("x"), ErrorCode.INVALID_BLOCK), (StorageError("x"), ErrorCode.STORAGE),
    (StreamBusy("x"), ErrorCode.STREAM_BUSY), (ValueError("x"), ErrorCode.RECEIVER_ERROR),
])
def test_store_errors_close_with_their_codes(error: Exception, code: ErrorCode) -> None:
    assert close_code(error) is code
