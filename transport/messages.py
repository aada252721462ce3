"""Wire messages and their frame encoding (docs/protocol.md). Pure: bytes in, values out.

A frame is one websocket binary message: one flags byte, then a msgpack map, zstandard-
compressed when flag bit 0 is set. Every message is a frozen dataclass that validates on
construction, so a decoded message is a valid one. Building a bad message here raises
InvalidMessage (this end's mistake); ``decode_frame`` raises ProtocolError (the peer's) and
nothing else, whatever bytes it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
import zstandard

from sendlearn.capture import (
    MAX_FRAMES,
    Block,
    CaptureError,
    InvalidName,
    MidiEvent,
    ParamChange,
    Playhead,
    check_name,
)

from .codec import CODINGS, Quality
from .errors import ErrorCode, InvalidMessage, ProtocolError

if TYPE_CHECKING:
    from .limits import Limits

PROTOCOL_VERSION = 1
FLAG_ZSTD = 0x01
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_TEXT = 256
MAX_TOKEN = 4096
MAX_BATCH = 4096
NOTHING = -1  # "no seq yet" in durable_through, last_seq
MAX_FACTS = 64  # named facts in one HELLO meta or BYE stats
MAX_FACT_VALUES = 1 << 17  # values in all of them, lists and maps counted with what they hold
MAX_FACT_DEPTH = 3  # a fact may be a list of lists of numbers (or maps), no deeper
Fact = int | float | str | bool | None | list["Fact"] | dict[str, "Fact"]
T = TypeVar("T")


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
        _int("hello.version", self.version, 0, 0xFFFF)
        _facts("hello.meta", self.meta)
        if self.take is not None:
            _name("hello.take", self.take)
        _name("hello.session", self.session)
        _name("hello.stream", self.stream)
        _text("hello.track", self.track, MAX_TEXT)
        _int("hello.sample_rate", self.sample_rate, 1000, 768000)
        _int("hello.channels", self.channels, 1, 64)
        _int("hello.block_size", self.block_size, 1, MAX_FRAMES)
        _text("hello.host", self.host, MAX_TEXT)
        if self.token is not None:
            _text("hello.token", self.token, MAX_TOKEN)
        _int("hello.resume_from", self.resume_from, 0, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Welcome:
    """Receiver → sender: accepted; every seq up to ``durable_through`` is already on disk."""

    durable_through: int = NOTHING
    max_frame_size: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        _int("welcome.durable_through", self.durable_through, NOTHING, 2**63 - 1)
        _int("welcome.max_frame_size", self.max_frame_size, 1024, 2**31)


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
        _int("block.seq", self.seq, 0, 2**63 - 1)
        _int("block.start_sample", self.start_sample, 0, 2**62)
        _int("block.frames", self.frames, 1, MAX_FRAMES)
        _int("block.digest", self.digest, 0, 2**64 - 1)

    @classmethod
    def of(cls, block: Block, digest: int | None = None) -> BlockEntry:
        """``block``'s header; ``digest`` when its audio travels degraded (a digest covers the
        audio as the receiver decodes it)."""
        return cls(block.seq, block.start_sample, block.frames, block.playhead, block.midi, block.params,
                   block.digest if digest is None else digest)


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
        for first, last in self.dropped:
            if not 0 <= first <= last:
                raise InvalidMessage(ErrorCode.MALFORMED, f"block.dropped range {first}..{last} is not ordered")
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
        _int("ack.through", self.through, NOTHING, 2**63 - 1)
        for first, last in self.backfilled:
            if not 0 <= first <= last:
                raise InvalidMessage(ErrorCode.MALFORMED, f"ack.backfilled range {first}..{last} is not ordered")


@dataclass(frozen=True, slots=True)
class Bye:
    """Sender → receiver: the stream ends; ``last_seq`` is the last seq it produced."""

    last_seq: int = NOTHING
    stats: tuple[tuple[str, Fact], ...] = ()  # the sender's closing figures, e.g. xruns, drops
    dropped: tuple[tuple[int, int], ...] = ()  # seqs the audio thread dropped after the last block sent

    def __post_init__(self) -> None:
        _int("bye.last_seq", self.last_seq, NOTHING, 2**63 - 1)
        _facts("bye.stats", self.stats)
        for first, last in self.dropped:
            if not 0 <= first <= last <= self.last_seq:
                raise InvalidMessage(ErrorCode.MALFORMED, f"bye.dropped range {first}..{last} is not within last_seq")


@dataclass(frozen=True, slots=True)
class Error:
    """Either end: the connection ends because of ``code``."""

    code: ErrorCode
    reason: str

    def __post_init__(self) -> None:
        _text("error.reason", self.reason, 1024)


Message = Hello | Welcome | BlockFrame | Ack | Bye | Error


def seq_ranges(seqs: list[int] | set[int]) -> tuple[tuple[int, int], ...]:
    """Sorted ``(first, last)`` runs of consecutive seqs: how the wire names sets of blocks."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)


# --- encoding ---------------------------------------------------------------------------

def encode_frame(message: Message, compression_level: int = 3) -> bytes:
    """One message to one frame; zstd is used only when it makes the frame smaller."""
    return encode_frame_sized(message, compression_level)[0]


def encode_frame_sized(message: Message, compression_level: int = 3) -> tuple[bytes, int]:
    """The frame, and the size of its uncompressed body (what a receiver's limit applies to)."""
    body = msgpack.packb(_to_wire(message), use_bin_type=True)
    if compression_level > 0 and len(body) > 64:
        packed = zstandard.ZstdCompressor(level=compression_level, write_content_size=True).compress(body)
        if len(packed) < len(body):
            return bytes((FLAG_ZSTD,)) + packed, len(body)
    return b"\x00" + body, len(body)


def _to_wire(message: Message) -> dict[str, Any]:
    if isinstance(message, Hello):
        wire = {"type": "hello", "version": message.version, "session": message.session,
                "stream": message.stream, "track": message.track, "sample_rate": message.sample_rate,
                "channels": message.channels, "block_size": message.block_size,
                "host": message.host, "token": message.token, "resume_from": message.resume_from}
        if message.meta:
            wire["meta"] = dict(message.meta)
        if message.take is not None:
            wire["take"] = message.take
        return wire
    if isinstance(message, Welcome):
        return {"type": "welcome", "durable_through": message.durable_through,
                "max_frame_size": message.max_frame_size}
    if isinstance(message, BlockFrame):
        return {"type": "block", "quality": int(message.quality), "coding": message.coding,
                "audio": message.audio, "backfill": message.backfill,
                "dropped": [list(r) for r in message.dropped],
                "blocks": [entry_to_wire(e) for e in message.entries]}
    if isinstance(message, Ack):
        wire: dict[str, Any] = {"type": "ack", "through": message.through}
        if message.backfilled:
            wire["backfilled"] = [list(r) for r in message.backfilled]
        return wire
    if isinstance(message, Bye):
        wire = {"type": "bye", "last_seq": message.last_seq}
        if message.stats:
            wire["stats"] = dict(message.stats)
        if message.dropped:
            wire["dropped"] = [list(r) for r in message.dropped]
        return wire
    if isinstance(message, Error):
        return {"type": "error", "code": int(message.code), "reason": message.reason}
    raise TypeError(f"not a protocol message: {type(message).__name__}")


def _compact(value: object) -> object:
    """Integral floats travel as msgpack ints (1-3 bytes, not 9); decoders take either."""
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def wire_form(message: Message) -> dict[str, Any]:
    """The message as the map it travels as, with bytes shown as ``{"hex": ...}``: JSON-ready."""
    return _jsonable(_to_wire(message))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def entry_to_wire(entry: BlockEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "start": entry.start_sample, "frames": entry.frames,
            "playhead": [_compact(v) for v in entry.playhead.as_tuple()],
            "midi": [[e.offset, e.data] if e.timing_error is None else [e.offset, e.data, e.timing_error]
                     for e in entry.midi],
            "params": [[p.offset, p.param, float(p.value)] for p in entry.params],
            "digest": entry.digest}


# --- decoding ---------------------------------------------------------------------------

def decode_frame(data: bytes, max_size: int = DEFAULT_MAX_FRAME, limits: Limits | None = None) -> Message:
    """One frame to one message. Raises ProtocolError, and only ProtocolError.

    ``limits`` (transport/limits.py) bound the work: list items are counted while msgpack
    decodes, and events, parameter changes and dropped ranges before any is built."""
    if limits is None:
        from .limits import Limits

        limits = Limits(max_frame_size=max_size)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(ErrorCode.MALFORMED, "frames are binary")
    data = bytes(data)
    if len(data) > max_size:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame of {len(data)} bytes is over {max_size}")
    if not data:
        raise ProtocolError(ErrorCode.MALFORMED, "empty frame")
    flags, body = data[0], data[1:]
    if flags & ~FLAG_ZSTD:
        raise ProtocolError(ErrorCode.MALFORMED, f"unknown frame flags 0x{flags:02X}")
    if flags & FLAG_ZSTD:
        body = _decompress(body, max_size)
    budget = [limits.max_list_items]

    def count(items: list) -> list:
        budget[0] -= len(items)
        if budget[0] < 0:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"the frame holds more than {limits.max_list_items} "
                                                           "list items (events, parameter changes, ranges)")
        return items

    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_no_ext, list_hook=count,
                              max_array_len=limits.max_list_items)
    except ProtocolError:
        raise
    except ValueError as exc:
        if "exceeds max" in str(exc):  # one list longer than a frame may hold, refused before it is read
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"a list in the frame is longer than "
                                                           f"{limits.max_list_items} items") from None
        raise ProtocolError(ErrorCode.MALFORMED, f"body is not msgpack ({type(exc).__name__})") from None
    except Exception as exc:  # msgpack signals bad input with many exception types
        raise ProtocolError(ErrorCode.MALFORMED, f"body is not msgpack ({type(exc).__name__})") from None
    return _from_peer(_from_wire, obj, limits)


def _from_peer(build: Callable[..., T], *args: Any) -> T:
    """``build(*args)`` on what a peer sent: a value our own constructors refuse is the
    peer's protocol error, with the code the check named."""
    try:
        return build(*args)
    except InvalidMessage as exc:
        raise ProtocolError(exc.code, exc.reason) from None
    except InvalidName as exc:
        raise ProtocolError(ErrorCode.BAD_ID, str(exc)) from None
    except CaptureError as exc:
        raise ProtocolError(ErrorCode.INVALID_BLOCK, str(exc)) from None


def _decompress(body: bytes, max_size: int) -> bytes:
    try:
        size = zstandard.frame_content_size(body)
    except zstandard.ZstdError:
        raise ProtocolError(ErrorCode.MALFORMED, "body is not a zstd frame") from None
    if size < 0:
        raise ProtocolError(ErrorCode.MALFORMED, "zstd frame does not declare its content size")
    if size > max_size:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"body decompresses to {size} bytes, over {max_size}")
    try:
        out = zstandard.ZstdDecompressor().decompress(body, max_output_size=max_size)
    except zstandard.ZstdError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"zstd body does not decompress ({exc})") from None
    if len(out) != size:
        raise ProtocolError(ErrorCode.MALFORMED, "zstd body is not the size it declares")
    return out


def _no_ext(code: int, data: bytes) -> None:
    raise ProtocolError(ErrorCode.MALFORMED, f"msgpack extension type {code} is not used here")


def _from_wire(obj: object, limits: Limits) -> Message:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "body must be a msgpack map")
    kind = obj.get("type")
    if kind == "hello":
        token = obj.get("token")
        if token is not None:
            _text("hello.token", token, MAX_TOKEN)
        return Hello(
            session=_get(obj, "session", str), stream=_get(obj, "stream", str),
            track=_get(obj, "track", str), sample_rate=_get(obj, "sample_rate", int),
            channels=_get(obj, "channels", int), block_size=_get(obj, "block_size", int),
            host=_get(obj, "host", str), token=token,
            resume_from=_get(obj, "resume_from", int), version=_get(obj, "version", int),
            meta=_get_facts(obj, "meta"), take=_get(obj, "take", str) if "take" in obj else None,
        )
    if kind == "welcome":
        return Welcome(_get(obj, "durable_through", int), _get(obj, "max_frame_size", int))
    if kind == "block":
        quality = _enum(Quality, _get(obj, "quality", int), "block.quality")
        dropped = tuple(_pair("block.dropped", r) for r in _ranges(obj, "dropped", limits))
        wire_entries = _get(obj, "blocks", list)
        _check_events(wire_entries, limits)
        entries = tuple(_entry_from_wire(e, i) for i, e in enumerate(wire_entries))
        return BlockFrame(quality, _get(obj, "coding", str), _get(obj, "audio", bytes),
                          entries, _get(obj, "backfill", bool), dropped)
    if kind == "ack":
        backfilled = tuple(_pair("ack.backfilled", r) for r in _get(obj, "backfilled", list)) \
            if "backfilled" in obj else ()
        return Ack(_get(obj, "through", int), backfilled)
    if kind == "bye":
        dropped = tuple(_pair("bye.dropped", r) for r in _ranges(obj, "dropped", limits)) if "dropped" in obj else ()
        return Bye(_get(obj, "last_seq", int), _get_facts(obj, "stats"), dropped)
    if kind == "error":
        return Error(_enum(ErrorCode, _get(obj, "code", int), "error.code"), _get(obj, "reason", str))
    raise ProtocolError(ErrorCode.MALFORMED, f"unknown message type {kind!r}")


def _ranges(obj: dict, key: str, limits: Limits) -> list:
    ranges = _get(obj, key, list)
    if len(ranges) > limits.max_dropped_ranges:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"{obj.get('type')}.{key} lists {len(ranges)} ranges, "
                                                       f"over {limits.max_dropped_ranges}")
    return ranges


def _check_events(entries: list, limits: Limits) -> None:
    """MIDI events and parameter changes per block and per frame, counted before any is built."""
    total = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ProtocolError(ErrorCode.MALFORMED, f"block.blocks[{index}] must be a map")
        for key in ("midi", "params"):
            items = entry.get(key)
            n = len(items) if isinstance(items, list) else 0
            if n > limits.max_events_per_block:
                raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"block.blocks[{index}].{key} holds {n} items, "
                                                               f"over {limits.max_events_per_block}")
            total += n
    if total > limits.max_events_per_frame:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"the frame holds {total} events and parameter changes, "
                                                       f"over {limits.max_events_per_frame}")


def entry_from_wire(obj: object, index: int = 0) -> BlockEntry:
    """A block map (as in BLOCK's ``blocks``) to a BlockEntry; raises ProtocolError."""
    return _from_peer(_entry_from_wire, obj, index)


def _entry_from_wire(obj: object, index: int) -> BlockEntry:
    where = f"block.blocks[{index}]"
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"{where} must be a map")
    ph = _get(obj, "playhead", list, where)
    if len(ph) != 10 or not all(_is_number(v) for v in ph[:3] + [ph[6]]):
        raise ProtocolError(ErrorCode.MALFORMED, f"{where}.playhead must be 10 values")
    playhead = Playhead(*ph)
    midi = []
    for item in _get(obj, "midi", list, where):
        if not (isinstance(item, list) and len(item) in (2, 3) and type(item[0]) is int
                and isinstance(item[1], bytes) and (len(item) == 2 or type(item[2]) is int)):
            raise ProtocolError(ErrorCode.MALFORMED, f"{where}.midi items are [offset, bytes(, error)]")
        midi.append(MidiEvent(item[0], item[1], item[2] if len(item) == 3 else None))
    params = []
    for item in _get(obj, "params", list, where):
        if not (isinstance(item, list) and len(item) == 3 and type(item[0]) is int
                and isinstance(item[1], str) and _is_number(item[2])):
            raise ProtocolError(ErrorCode.MALFORMED, f"{where}.params items are [offset, name, value]")
        params.append(ParamChange(item[0], item[1], float(item[2])))
    return BlockEntry(
        _get(obj, "seq", int, where), _get(obj, "start", int, where), _get(obj, "frames", int, where),
        playhead, tuple(midi), tuple(params), _get(obj, "digest", int, where),
    )


# --- checks -----------------------------------------------------------------------------

def _get(obj: dict, key: str, kind: type, where: str | None = None) -> Any:
    name = f"{where or obj.get('type')}.{key}"
    if key not in obj:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is missing")
    value = obj[key]
    if kind is int:
        ok = type(value) is int
    elif kind is bool:
        ok = type(value) is bool
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _enum(kind: type, value: int, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} {value} is not one of {[int(v) for v in kind]}") from None


def _get_facts(obj: dict, key: str) -> tuple[tuple[str, Fact], ...]:
    """An optional map of facts, as sorted pairs (checked by ``_facts``)."""
    if key not in obj:
        return ()
    return tuple(sorted(_get(obj, key, dict).items(), key=lambda kv: str(kv[0])))


def _facts(name: str, facts: object) -> None:
    if not isinstance(facts, tuple) or len(facts) > MAX_FACTS:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must hold at most {MAX_FACTS} facts")
    budget = [MAX_FACT_VALUES]
    for pair in facts:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) and 0 < len(pair[0]) <= 64):
            raise InvalidMessage(ErrorCode.MALFORMED, f"{name} keys are names of 1-64 characters")
        _fact(f"{name}.{pair[0]}", pair[1], MAX_FACT_DEPTH, budget)


def _fact(name: str, value: object, depth: int, budget: list[int]) -> None:
    """A number, a short string, nil, or a list or map of them (``depth`` levels at most),
    with at most ``MAX_FACT_VALUES`` values in a message."""
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name}: the facts hold more than {MAX_FACT_VALUES} values")
    if value is None or type(value) in (int, bool) or (type(value) is float and math.isfinite(value)) \
            or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return
    if isinstance(value, (list, tuple, dict)) and depth > 0:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict) and not (isinstance(key, str) and 0 < len(key) <= 64):
                raise InvalidMessage(ErrorCode.MALFORMED, f"{name} keys are names of 1-64 characters")
            _fact(f"{name}.{key}", item, depth - 1, budget)
        return
    raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be a number, a short string, nil, "
                                             f"or a list or map of them ({MAX_FACT_DEPTH} levels at most)")


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _pair(name: str, value: object) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} items are [first, last]")
    return value[0], value[1]


def _int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be an int in {low}..{high}, got {value!r}")


def _text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be a string of at most {limit} characters")


def _name(field: str, value: object) -> None:
    try:
        check_name(value, field)
    except InvalidName as exc:
        raise InvalidMessage(ErrorCode.BAD_ID, str(exc)) from None
