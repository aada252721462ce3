"""Wire messages (docs/protocol.md, "Messages"): frozen dataclasses that validate on
construction, so a decoded message is a valid one. Pure: no bytes here.

Building a bad message raises InvalidMessage (this end's mistake; the checks are in
transport/checks.py). Frames are made in transport/encode.py and read in transport/decode.py
(``decode_frame`` raises ProtocolError, the peer's mistake, and nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from sendlearn.capture import (
    MAX_CHANNELS,
    MAX_FRAMES,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    Block,
    MidiEvent,
    ParamChange,
    Playhead,
)

from .checks import (
    MAX_FACT_VALUES,
    MAX_TEXT,
    Fact,
    check_facts,
    check_int,
    check_name,
    check_ranges,
    check_text,
)
from .codec import CODINGS, Quality
from .errors import ErrorCode, InvalidMessage

if TYPE_CHECKING:
    import numpy as np

PROTOCOL_VERSION = 1
FLAG_ZSTD = 0x01  # frame flags bit 0: the body is zstandard-compressed
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_TOKEN = 4096
MAX_BATCH = 4096
NOTHING = -1  # "no seq yet" in durable_through, last_seq


class StreamIds(Protocol):
    """What names a stream and shapes its audio: a HELLO, or a capture StreamInfo."""

    @property
    def session(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Hello:
    """Sender → receiver, first: who is streaming what, and from where it can resume."""

    session: str
    stream: str
    track: str
    sample_rate: int
    channels: int
    block_size: int
    host: str
    token: str | None = None
    resume_from: int = 0
    version: int = PROTOCOL_VERSION
    meta: tuple[tuple[str, Fact], ...] = ()  # facts about the stream, e.g. an instrument's measured lag
    take: str | None = None  # one recording under these ids: a sender resuming it says the same take

    def __post_init__(self) -> None:
        check_int("hello.version", self.version, 0, 0xFFFF)
        check_facts("hello.meta", self.meta)
        if self.take is not None:
            check_name("hello.take", self.take)
        check_name("hello.session", self.session)
        check_name("hello.stream", self.stream)
        check_text("hello.track", self.track, MAX_TEXT)
        check_int("hello.sample_rate", self.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        check_int("hello.channels", self.channels, 1, MAX_CHANNELS)
        check_int("hello.block_size", self.block_size, 1, MAX_FRAMES)
        check_text("hello.host", self.host, MAX_TEXT)
        if self.token is not None:
            check_text("hello.token", self.token, MAX_TOKEN)
        check_int("hello.resume_from", self.resume_from, 0, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Welcome:
    """Receiver → sender: accepted; every seq up to ``durable_through`` is already on disk."""

    durable_through: int = NOTHING
    max_frame_size: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        check_int("welcome.durable_through", self.durable_through, NOTHING, 2**63 - 1)
        check_int("welcome.max_frame_size", self.max_frame_size, 1024, 2**31)


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One block's header inside a BLOCK message; its audio is a slice of the shared payload."""

    seq: int
    start_sample: int
    frames: int
    playhead: Playhead
    midi: tuple[MidiEvent, ...]
    params: tuple[ParamChange, ...]
    digest: int

    def __post_init__(self) -> None:
        check_int("block.seq", self.seq, 0, 2**63 - 1)
        check_int("block.start_sample", self.start_sample, 0, 2**62)
        check_int("block.frames", self.frames, 1, MAX_FRAMES)
        check_int("block.digest", self.digest, 0, 2**64 - 1)

    @classmethod
    def of(cls, block: Block, digest: int | None = None) -> BlockEntry:
        """``block``'s header; ``digest`` when its audio travels degraded (a digest covers the
        audio as the receiver decodes it)."""
        # a built Block always has its digest (``int | None`` is for its constructor's argument)
        return cls(block.seq, block.start_sample, block.frames, block.playhead, block.midi, block.params,
                   cast(int, block.digest if digest is None else digest))

    def to_block(self, stream: StreamIds, audio: np.ndarray | None) -> Block:
        """The block this header describes, of ``stream`` (its HELLO or StreamInfo), with
        ``audio``; raises DigestMismatch when the two do not hash to ``digest``."""
        return Block(stream.session, stream.stream, self.seq, self.start_sample, self.frames, stream.sample_rate,
                     stream.channels, self.playhead, self.midi, self.params, audio, self.digest)


@dataclass(frozen=True, slots=True)
class BlockFrame:
    """Sender → receiver: consecutive-in-the-payload blocks at one quality level.

    ``audio`` is all the entries' audio, coded together (``coding``) in entry order.
    ``dropped`` lists ``(first, last)`` seq ranges the sender's audio thread dropped.
    ``backfill`` marks full-quality audio replacing audio sent degraded earlier.
    """

    quality: Quality
    coding: str
    audio: bytes
    entries: tuple[BlockEntry, ...]
    backfill: bool = False
    dropped: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.coding not in CODINGS:
            raise InvalidMessage(ErrorCode.MALFORMED, f"block.coding {self.coding!r} is not one of {CODINGS}")
        if not 0 < len(self.entries) <= MAX_BATCH:
            raise InvalidMessage(ErrorCode.MALFORMED, f"block.blocks must hold 1-{MAX_BATCH} blocks")
        check_ranges("block.dropped", self.dropped)
        if self.frames > MAX_FRAMES:
            raise InvalidMessage(ErrorCode.FRAME_TOO_LARGE, f"block holds {self.frames} frames, over {MAX_FRAMES}")

    @property
    def frames(self) -> int:
        return sum(entry.frames for entry in self.entries)


@dataclass(frozen=True, slots=True)
class Ack:
    """Receiver → sender: every seq up to ``through`` is durable on disk (or a recorded gap);
    ``backfilled`` names seq ranges whose full-quality audio has durably replaced degraded audio."""

    through: int
    backfilled: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        check_int("ack.through", self.through, NOTHING, 2**63 - 1)
        check_ranges("ack.backfilled", self.backfilled)


@dataclass(frozen=True, slots=True)
class Bye:
    """Sender → receiver: the stream ends; ``last_seq`` is the last seq it produced."""

    last_seq: int = NOTHING
    stats: tuple[tuple[str, Fact], ...] = ()  # the sender's closing figures, e.g. xruns, drops
    dropped: tuple[tuple[int, int], ...] = ()  # seqs the audio thread dropped after the last block sent

    def __post_init__(self) -> None:
        check_int("bye.last_seq", self.last_seq, NOTHING, 2**63 - 1)
        check_facts("bye.stats", self.stats)
        check_ranges("bye.dropped", self.dropped, self.last_seq)


@dataclass(frozen=True, slots=True)
class Error:
    """Either end: the connection ends because of ``code``."""

    code: ErrorCode
    reason: str

    def __post_init__(self) -> None:
        check_text("error.reason", self.reason, 1024)


Message = Hello | Welcome | BlockFrame | Ack | Bye | Error


__all__ = [
    "DEFAULT_MAX_FRAME", "FLAG_ZSTD", "MAX_BATCH", "MAX_FACT_VALUES", "MAX_TEXT", "MAX_TOKEN", "NOTHING",
    "PROTOCOL_VERSION", "Ack", "BlockEntry", "BlockFrame", "Bye", "Error", "Fact", "Hello", "Message", "StreamIds",
    "Welcome",
]
