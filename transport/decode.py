"""Frames to messages (docs/protocol.md, "Frame layout"; limits: docs/serve.md, "Limits"). Pure.

``decode_frame`` raises ProtocolError, and nothing else, whatever bytes it is given: a value
a message's own checks refuse (InvalidMessage, a capture error) becomes the peer's
ProtocolError with the code the check named (``_from_peer``). Every bound in ``Limits`` is
checked before the work it bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
import zstandard

from sendlearn.capture import CaptureError, InvalidName, MidiEvent, ParamChange, Playhead

from .checks import Fact, check_text, is_number
from .codec import Quality
from .errors import ErrorCode, InvalidMessage, ProtocolError
from .messages import (
    DEFAULT_MAX_FRAME,
    FLAG_ZSTD,
    MAX_TOKEN,
    Ack,
    BlockEntry,
    BlockFrame,
    Bye,
    Error,
    Hello,
    Message,
    Welcome,
)

if TYPE_CHECKING:
    from .limits import Limits

T = TypeVar("T")
E = TypeVar("E", bound=IntEnum)


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

    def count(items: list[Any]) -> list[Any]:
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


def entry_from_wire(obj: object, index: int = 0) -> BlockEntry:
    """A block map (as in BLOCK's ``blocks``) to a BlockEntry; raises ProtocolError."""
    return _from_peer(_entry_from_wire, obj, index)


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
            check_text("hello.token", token, MAX_TOKEN)
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


def _ranges(obj: dict[str, Any], key: str, limits: Limits) -> list[Any]:
    ranges: list[Any] = _get(obj, key, list)
    if len(ranges) > limits.max_dropped_ranges:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"{obj.get('type')}.{key} lists {len(ranges)} ranges, "
                                                       f"over {limits.max_dropped_ranges}")
    return ranges


def _check_events(entries: list[Any], limits: Limits) -> None:
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


def _entry_from_wire(obj: object, index: int) -> BlockEntry:
    where = f"block.blocks[{index}]"
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"{where} must be a map")
    ph = _get(obj, "playhead", list, where)
    if len(ph) != 10 or not all(is_number(v) for v in ph[:3] + [ph[6]]):
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
                and isinstance(item[1], str) and is_number(item[2])):
            raise ProtocolError(ErrorCode.MALFORMED, f"{where}.params items are [offset, name, value]")
        params.append(ParamChange(item[0], item[1], float(item[2])))
    return BlockEntry(
        _get(obj, "seq", int, where), _get(obj, "start", int, where), _get(obj, "frames", int, where),
        playhead, tuple(midi), tuple(params), _get(obj, "digest", int, where),
    )


# --- reading fields ---------------------------------------------------------------------

def _get(obj: dict[str, Any], key: str, kind: type, where: str | None = None) -> Any:
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


def _enum(kind: type[E], value: int, name: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} {value} is not one of {[int(v) for v in kind]}") from None


def _get_facts(obj: dict[str, Any], key: str) -> tuple[tuple[str, Fact], ...]:
    """An optional map of facts, as sorted pairs (checked by ``check_facts``)."""
    if key not in obj:
        return ()
    return tuple(sorted(_get(obj, key, dict).items(), key=lambda kv: str(kv[0])))


def _pair(name: str, value: object) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} items are [first, last]")
    return value[0], value[1]
