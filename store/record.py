"""The journal's block record: the store's own codec, versioned, built straight from a ``Block``.

One map per accepted block (``files.records`` checksums and frames it)::

    {"k": "block", "v": 1, "seq", "start", "frames", "playhead": [10 values, Playhead's order],
     "midi": [[offset, data, timing_error | None], ...], "params": [[offset, name, value], ...],
     "digest", "quality", "backfill", "at"}

The journal is the store's, not the wire's: a protocol change never migrates an open work
folder. Records written before version 1 hold the wire's block map under ``"entry"`` and no
``"v"``; they are refused with ``OldJournal`` (naming the version), never silently dropped.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from sendlearn.capture import Block, MidiEvent, ParamChange, Playhead, Quality
from sendlearn.store.errors import OldJournal

VERSION = 1
OLD_FORMAT = 0  # the wire map under "entry" (sendlearn 0.1)


class BlockRecord(NamedTuple):
    """A stored block's header: everything but its audio (that is in ``audio.f32``). A named
    tuple, not a frozen dataclass: one is made per block (112k for 20 minutes), at a fifth of the cost."""

    seq: int
    start_sample: int
    frames: int
    playhead: Playhead
    midi: tuple[MidiEvent, ...]
    params: tuple[ParamChange, ...]
    digest: int


def header_of(block: Block) -> BlockRecord:
    """What ``read_block`` gives for ``block``'s journal record, without the msgpack round trip:
    the block's own playhead, events and changes, rebuilt only where the record would turn a
    number into a float (an int ``seconds`` or parameter value)."""
    playhead = block.playhead
    if (type(playhead.seconds) is not float or type(playhead.ppq) is not float or type(playhead.bpm) is not float
            or type(playhead.beat) is not float):
        playhead = Playhead(*playhead.as_tuple())
    params = block.params
    if params and any(type(change.value) is not float for change in params):  # most blocks have none
        params = tuple(ParamChange(change.offset, change.param, float(change.value)) for change in params)
    assert block.digest is not None  # a Block computes its digest when made
    return BlockRecord(block.seq, block.start_sample, block.frames, playhead, block.midi, params, block.digest)


def block_record(block: Block, quality: Quality, backfill: bool) -> dict[str, Any]:
    """The journal record of ``block``, stored at ``quality``."""
    return {"k": "block", "v": VERSION, "seq": block.seq, "start": block.start_sample, "frames": block.frames,
            "playhead": list(block.playhead.as_tuple()),
            "midi": [[e.offset, e.data, e.timing_error] for e in block.midi],
            "params": [[p.offset, p.param, float(p.value)] for p in block.params],
            "digest": block.digest, "quality": int(quality), "backfill": backfill, "at": time.time()}


def check_version(record: dict[str, Any], where: object) -> None:
    """Refuse a block record this store cannot read (``where`` names the work folder)."""
    version = record.get("v", OLD_FORMAT)
    if version != VERSION:
        then = "sendlearn 0.1" if version == OLD_FORMAT else "the sendlearn that wrote it"
        raise OldJournal(f"work folder {where} holds journal format {version!r}, this sendlearn reads format "
                         f"{VERSION}; finish it with {then} or remove it")


def record_span(record: dict[str, Any]) -> tuple[int, int, int]:
    """(seq, start sample, end sample) of a block record, without building its header."""
    return int(record["seq"]), int(record["start"]), int(record["start"]) + int(record["frames"])


def read_block(record: dict[str, Any]) -> BlockRecord:
    """The header a block record holds (its version checked by whoever opened the journal)."""
    return BlockRecord(record["seq"], record["start"], record["frames"], Playhead(*record["playhead"]),
                       tuple(MidiEvent(offset, bytes(data), error) for offset, data, error in record["midi"]),
                       tuple(ParamChange(offset, name, value) for offset, name, value in record["params"]),
                       record["digest"])
