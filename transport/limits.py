"""What one frame from a peer may make the receiver do (docs/serve.md, "Limits").

Every bound is checked before the work it bounds: the count of list items while msgpack
decodes (so a MIDI bomb stops after ``max_list_items``, not after millions of events), the
decoded audio size before the codec runs, the dropped ranges before any is looked at.

    Limits()                       the defaults below
    Limits.from_env()              each field from SENDLEARN_<FIELD> when set
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, TypeVar

from .messages import DEFAULT_MAX_FRAME, MAX_BATCH

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_size: int = DEFAULT_MAX_FRAME  # bytes of a frame, and of its decompressed body
    max_hello_size: int = 2 * MiB  # bytes of a frame before the stream is accepted: a HELLO, its facts at their most
    max_events_per_block: int = 4096  # MIDI events, and separately parameter changes, in one block
    max_events_per_frame: int = 32768  # MIDI events plus parameter changes in one BLOCK frame
    max_decoded_bytes: int = 32 * MiB  # float32 audio a BLOCK frame decodes to (frames x channels x 4)
    block_factor: int = 4  # a block holds at most HELLO's block_size x this many frames
    min_block_frames: int = 4096  # ... but never fewer than this (hosts vary their block sizes)
    max_dropped_ranges: int = 1024  # dropped seq ranges one BLOCK frame or BYE may list
    max_seqs_ahead: int = 4096  # seqs a block may run past everything stored or declared dropped

    def max_block_frames(self, block_size: int) -> int:
        return max(block_size * self.block_factor, self.min_block_frames)

    @property
    def max_list_items(self) -> int:
        """Items in all the lists of one frame: events and parameter changes (3 each), playheads
        (10 per block), dropped ranges (2 each), and slack for the rest."""
        return 3 * self.max_events_per_frame + 14 * MAX_BATCH + 2 * self.max_dropped_ranges + 4096

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: int | None) -> Limits:
        """The defaults, replaced by SENDLEARN_MAX_EVENTS_PER_BLOCK etc., then by ``overrides``
        (command-line flags) that are not None."""
        return settings_from_env(cls, environ, overrides)


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def settings_from_env(cls: type[T], environ: Mapping[str, str] | None, overrides: Mapping[str, object]) -> T:
    """A frozen dataclass of positive numbers: defaults, then SENDLEARN_<FIELD>, then ``overrides``
    that are not None. Raises ValueError naming the variable or field that is wrong."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in fields(cls):
        kind = float if isinstance(getattr(cls(), field.name), float) else int
        raw = env.get(f"SENDLEARN_{field.name.upper()}")
        if raw is not None:
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(f"SENDLEARN_{field.name.upper()}={raw!r} is not a number") from None
        if overrides.get(field.name) is not None:
            values[field.name] = overrides[field.name]
    settings = replace(cls(), **values)
    for field in fields(cls):
        if getattr(settings, field.name) <= 0:
            raise ValueError(f"--{field.name.replace('_', '-')} (SENDLEARN_{field.name.upper()}) must be above 0")
    return settings
