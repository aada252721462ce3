"""Audio coding for the wire, by quality level. Pure functions: arrays in, bytes out.

Levels change how audio is coded, never MIDI, playhead or automation:

    FLOAT32  raw float32, bit-for-bit
    PCM24    24-bit integers (lossless at 24 bits): FLAC or packed little-endian, the smaller
    PCM16    16-bit integers (lossless at 16 bits): FLAC or little-endian, the smaller
             (FLAC holds at most 8 channels: more are always sent packed)
    REDUCED  mono (channel mean) at half the rate (even samples), 16-bit; decoded by linear
             interpolation back to the full rate and copied to every channel
    NONE     no audio: MIDI, playhead and automation only

Quantisation to ``bits``: ``q = clip(rint(x * 2**(bits-1)), -2**(bits-1), 2**(bits-1) - 1)``,
decoded as ``q / 2**(bits-1)``. Raw payloads are planar: channel 0's frames, then channel 1's.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile

from sendlearn.capture import Quality
from sendlearn.capture.quality import FLAC_MAX_CHANNELS

from .errors import ErrorCode, ProtocolError

CODINGS = ("f32", "s24", "s16", "flac", "none")
_BITS = {Quality.PCM24: 24, Quality.PCM16: 16}
_FLAC_SUBTYPE = {16: "PCM_16", 24: "PCM_24"}


def quantize(audio: np.ndarray, bits: int) -> np.ndarray:
    """Float samples to signed integers of ``bits`` bits (held in int32)."""
    scale = float(1 << (bits - 1))
    q = np.rint(audio.astype(np.float64) * scale)
    np.clip(q, -scale, scale - 1, out=q)
    return q.astype(np.int32)


def dequantize(q: np.ndarray, bits: int) -> np.ndarray:
    return (q.astype(np.float64) / float(1 << (bits - 1))).astype(np.float32)


def degrade(audio: np.ndarray, quality: Quality) -> np.ndarray | None:
    """The float32 audio a receiver will decode for ``audio`` sent at ``quality``."""
    if quality == Quality.FLOAT32:
        return audio
    if quality == Quality.NONE:
        return None
    if quality == Quality.REDUCED:
        return _expand(_reduce(audio), audio.shape[0], audio.shape[1])
    bits = _BITS[quality]
    return dequantize(quantize(audio, bits), bits)


def _reduce(audio: np.ndarray) -> np.ndarray:
    """Mono, half rate, 16-bit: ``(1, ceil(frames / 2))`` integers."""
    mono = audio.astype(np.float64).mean(axis=0)
    return quantize(mono[0::2][None, :], 16)  # even samples: no half-sample delay to undo


def _expand(q: np.ndarray, channels: int, frames: int) -> np.ndarray:
    half = dequantize(q, 16)[0].astype(np.float64)
    full = np.empty(half.size * 2)
    full[0::2] = half
    full[1:-1:2] = (half[:-1] + half[1:]) / 2.0
    full[-1] = half[-1]  # the last odd sample has no right neighbour: hold
    return np.ascontiguousarray(np.broadcast_to(full[:frames].astype(np.float32), (channels, frames)))


def encode_audio(audio: np.ndarray, quality: Quality, sample_rate: int) -> tuple[str, bytes]:
    """Code float32 ``(channels, frames)`` audio at ``quality``: returns (coding, payload)."""
    if quality == Quality.FLOAT32:
        return "f32", np.ascontiguousarray(audio, dtype="<f4").tobytes()
    if quality == Quality.NONE:
        return "none", b""
    if quality == Quality.REDUCED:
        q, bits, sample_rate = _reduce(audio), 16, max(sample_rate // 2, 1)
    else:
        bits = _BITS[quality]
        q = quantize(audio, bits)
    raw = _pack(q, bits)
    if q.shape[0] > FLAC_MAX_CHANNELS:
        return f"s{bits}", raw
    flac = _flac_encode(q, bits, sample_rate)
    return ("flac", flac) if len(flac) < len(raw) else (f"s{bits}", raw)


def decode_audio(
    coding: str, payload: bytes, channels: int, frames: int, quality: Quality
) -> np.ndarray | None:
    """Payload back to float32 ``(channels, frames)``; raises ProtocolError on any mismatch."""
    expected = {Quality.FLOAT32: ("f32",), Quality.PCM24: ("s24", "flac"), Quality.PCM16: ("s16", "flac"),
                Quality.REDUCED: ("s16", "flac"), Quality.NONE: ("none",)}[quality]
    if coding not in expected:
        raise ProtocolError(ErrorCode.MALFORMED, f"coding {coding!r} does not go with quality {quality.name}")
    if coding == "none":
        if payload:
            raise ProtocolError(ErrorCode.MALFORMED, "quality NONE carries no audio")
        return None
    if coding == "f32":
        _expect_size(payload, channels * frames * 4)
        return np.frombuffer(payload, dtype="<f4").reshape(channels, frames).astype(np.float32)
    if quality == Quality.REDUCED:
        half = (frames + 1) // 2
        q = _flac_decode(payload, 16, 1, half) if coding == "flac" else _unpack(payload, 16, 1, half)
        return _expand(q, channels, frames)
    bits = _BITS[quality]
    if coding == "flac":
        q = _flac_decode(payload, bits, channels, frames)
    else:
        q = _unpack(payload, bits, channels, frames)
    return dequantize(q, bits)


def _pack(q: np.ndarray, bits: int) -> bytes:
    if bits == 16:
        return q.astype("<i2").tobytes()
    as_bytes = q.astype("<i4").view(np.uint8).reshape(-1, 4)
    return as_bytes[:, :3].tobytes()


def _unpack(payload: bytes, bits: int, channels: int, frames: int) -> np.ndarray:
    if bits == 16:
        _expect_size(payload, channels * frames * 2)
        return np.frombuffer(payload, dtype="<i2").astype(np.int32).reshape(channels, frames)
    _expect_size(payload, channels * frames * 3)
    b = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    value = np.where(value >= 1 << 23, value - (1 << 24), value)
    return value.reshape(channels, frames)


def _flac_encode(q: np.ndarray, bits: int, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    # libsndfile keeps the top bits of int32 input, so 24-bit values ride in the high bytes.
    data = q.T.astype(np.int16) if bits == 16 else (q.T << 8).astype(np.int32)
    soundfile.write(buffer, data, sample_rate, format="FLAC", subtype=_FLAC_SUBTYPE[bits])
    return buffer.getvalue()


def _flac_decode(payload: bytes, bits: int, channels: int, frames: int) -> np.ndarray:
    try:
        # the header first: a small payload may declare a huge signal; refuse it before decoding
        info = soundfile.info(io.BytesIO(payload))
        if (info.frames, info.channels) != (frames, channels):
            raise ProtocolError(ErrorCode.MALFORMED, f"FLAC payload declares {info.frames} frames x "
                                f"{info.channels} channels, expected {frames} x {channels}")
        data, _ = soundfile.read(io.BytesIO(payload), dtype="int32", always_2d=True, frames=frames)
    except ProtocolError:
        raise
    except Exception as exc:  # libsndfile reports bad input in several exception types
        raise ProtocolError(ErrorCode.MALFORMED, f"FLAC payload does not decode ({type(exc).__name__})") from None
    if data.shape != (frames, channels):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"FLAC payload holds {data.shape} frames x channels, expected {(frames, channels)}"
        )
    return np.ascontiguousarray((data >> (32 - bits)).T)


def _expect_size(payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"audio payload is {len(payload)} bytes, expected {size}")
