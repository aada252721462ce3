"""How a block's audio was kept on its way to disk: the rungs of the quality ladder.

A block's MIDI, playhead and automation are always whole; only its audio steps down, from
float32 to integer depths, to a reduced rate or mono, to none (docs/protocol.md, "Quality
ladder"). The store records each block's quality and replaces a degraded block's audio when
a better copy arrives (backfill), so the type lives with the block, below both the wire and
the store.
"""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    """Lower is better: a block's audio may be replaced only by a lower value."""

    FLOAT32 = 0
    PCM24 = 1
    PCM16 = 2
    REDUCED = 3
    NONE = 4


# A fact of the FLAC format, not of our wire: a FLAC stream holds at most 8 channels. The wire
# codes wider degraded audio otherwise, and the store writes it to a WAV at the same depth.
FLAC_MAX_CHANNELS = 8
