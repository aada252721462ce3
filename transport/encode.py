"""Messages to frames (docs/protocol.md, "Frame layout"). Pure: values in, bytes out.

A frame is one websocket binary message: one flags byte, then a msgpack map, zstandard-
compressed when flag bit 0 is set (and only when that makes it smaller).
"""

from __future__ import annotations

from typing import Any

import msgpack
import zstandard

from .messages import FLAG_ZSTD, Ack, BlockEntry, BlockFrame, Bye, Error, Hello, Message, Welcome


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


def wire_form(message: Message) -> dict[str, Any]:
    """The message as the map it travels as, with bytes shown as ``{"hex": ...}``: JSON-ready."""
    return _jsonable(_to_wire(message))


def entry_to_wire(entry: BlockEntry) -> dict[str, Any]:
    """A block's header as a map of BLOCK's ``blocks`` (also how the spool and the journal keep it)."""
    return {"seq": entry.seq, "start": entry.start_sample, "frames": entry.frames,
            "playhead": [_compact(v) for v in entry.playhead.as_tuple()],
            "midi": [[e.offset, e.data] if e.timing_error is None else [e.offset, e.data, e.timing_error]
                     for e in entry.midi],
            "params": [[p.offset, p.param, float(p.value)] for p in entry.params],
            "digest": entry.digest}


def _to_wire(message: Message) -> dict[str, Any]:
    wire: dict[str, Any]
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
        wire = {"type": "ack", "through": message.through}
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
