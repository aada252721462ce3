"""The sender's account of its stream: which seqs are still to send, which are in flight, which
went degraded and wait for backfill (docs/protocol.md, "Delivery: spool, ACK, resume, backfill").

No network and no event loop: the sender's intake ``admit``s blocks, its connections take
batches (``take_unsent``, ``take_backfill``), say what they queued (``sent``,
``backfill_sent``), apply what the receiver acknowledged (``on_ack``) and, when a connection
is lost, ``requeue`` what it left unacknowledged. The blocks themselves stay in the spool, which
forgets a block once the receiver holds it durably at full quality.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

from sendlearn.capture import Block

from .codec import Quality
from .messages import NOTHING
from .retry import SenderError
from .spool import Spool


class Outbox:
    def __init__(self, spool: Spool, block_size: int, quality: Quality) -> None:
        self.spool = spool
        self.quality = quality  # full quality: what a degraded block is backfilled at
        self.first_seq = spool.next_seq  # where a producer resuming on this spool starts
        self.durable_through = NOTHING
        self.rtt_seconds: float | None = None
        self.blocks_backfilled = self.audio_lost_spool_full = 0
        self.unsent: deque[int] = deque(spool.seqs())  # oldest first
        self.unacked: dict[int, Quality] = {}
        self.needs_backfill: set[int] = set()
        self.backfill_unacked: set[int] = set()
        self.audioless: dict[int, Block] = {}  # live blocks the full spool kept without audio
        self.dropped_before: dict[int, tuple[int, int]] = {}  # seq -> the seqs dropped just before it
        self.frames: dict[int, int] = {seq: block_size for seq in self.unsent}
        self.backlog_frames = sum(self.frames.values())  # taken from the producer, not yet acknowledged
        self.expected_seq = spool.next_seq
        self.last_seq = spool.next_seq - 1
        self._sent_at: dict[int, float] = {}

    # --- from the producer ------------------------------------------------------------------

    def admit(self, block: Block, spooled: bool = False) -> None:
        """Take ``block`` to send (``spooled``: already in the spool). A live block the full
        spool refuses is kept without its audio: MIDI, playhead and automation are never lost."""
        if block.seq < self.first_seq:
            raise SenderError(f"the producer numbered a block {block.seq}, below the spool's next seq "
                              f"{self.first_seq}: create the processor with first_seq=spool.next_seq")
        if block.seq > self.expected_seq:
            self.dropped_before[block.seq] = (self.expected_seq, block.seq - 1)
        self.expected_seq = max(self.expected_seq, block.seq + 1)
        self.last_seq = max(self.last_seq, block.seq)
        if not spooled and not self.spool.add(block):
            # live and the spool is full: keep what is small and never degraded, lose the audio
            self.audio_lost_spool_full += 1
            self.audioless[block.seq] = replace(block, audio=None, digest=None)
        self.unsent.append(block.seq)
        self.frames[block.seq] = block.frames
        self.backlog_frames += block.frames

    def end(self, offered: int) -> None:
        """The producer offered ``offered`` blocks in all: seqs past the last taken were dropped."""
        self.last_seq = max(self.last_seq, self.first_seq + offered - 1)

    def tail_dropped(self) -> tuple[tuple[int, int], ...]:
        """For BYE: the seqs after the last block taken, which the audio thread dropped."""
        return ((self.expected_seq, self.last_seq),) if self.last_seq >= self.expected_seq else ()

    def resume_from(self) -> int:
        """For HELLO: the oldest seq this sender still holds."""
        return min(self.spool.seqs(), default=self.expected_seq)

    # --- to the receiver ----------------------------------------------------------------------

    def take_unsent(self, max_frames: int) -> tuple[list[Block], bool]:
        """The oldest unsent blocks, up to ``max_frames`` frames (at least one block), all with
        audio or all without it (a batch is coded at one level); and whether they are without."""
        batch: list[Block] = []
        frames = 0
        audioless = False
        while self.unsent and frames < max_frames:
            seq = self.unsent[0]
            is_audioless = seq in self.audioless
            if batch and is_audioless != audioless:
                break
            block = self.audioless[seq] if is_audioless else self.spool.block(seq)
            audioless = is_audioless
            batch.append(block)
            frames += block.frames
            self.unsent.popleft()
        return batch, audioless

    def take_backfill(self, max_frames: int) -> list[Block]:
        """Blocks sent degraded and not being backfilled yet, oldest first, up to ``max_frames``."""
        batch: list[Block] = []
        frames = 0
        for seq in sorted(s for s in self.needs_backfill if s not in self.backfill_unacked):
            if frames >= max_frames:
                break
            block = self.spool.block(seq)
            batch.append(block)
            frames += block.frames
        return batch

    def sent(self, frames: list[list[Block]], quality: Quality) -> None:
        """``frames`` (each a frame's blocks) are queued at ``quality``."""
        for blocks in frames:
            self._sent_at[blocks[-1].seq] = time.monotonic()
            for block in blocks:
                self.unacked[block.seq] = quality

    def backfill_sent(self, frames: list[list[Block]]) -> None:
        for blocks in frames:
            self.backfill_unacked.update(b.seq for b in blocks)

    @property
    def settled(self) -> bool:
        """No block waits for backfill or for its backfill's acknowledgement."""
        return not self.needs_backfill and not self.backfill_unacked

    # --- from the receiver --------------------------------------------------------------------

    def on_ack(self, through: int, backfilled: tuple[tuple[int, int], ...], resumed: bool = False) -> None:
        """The receiver holds every seq through ``through`` durably, and ``backfilled`` at full
        quality. ``resumed``: a WELCOME's, for a connection that resumes the stream."""
        if through > self.durable_through:
            self.durable_through = through
        release = []
        for seq in [s for s in self.unacked if s <= through]:
            quality = self.unacked.pop(seq)
            self.backlog_frames -= self.frames.pop(seq, 0)
            if quality == self.quality or seq in self.audioless:
                release.append(seq)
                self.audioless.pop(seq, None)
            else:
                self.needs_backfill.add(seq)
        if resumed:
            # a resumed stream: the receiver has everything through ``through``; what we still hold
            # of it may have gone degraded before we restarted, so replace it at full quality
            while self.unsent and self.unsent[0] <= through:
                seq = self.unsent.popleft()
                self.backlog_frames -= self.frames.pop(seq, 0)
                if seq in self.spool:
                    self.needs_backfill.add(seq)
        for first, last in backfilled:
            for seq in range(first, last + 1):
                if seq in self.needs_backfill:
                    self.needs_backfill.discard(seq)
                    self.backfill_unacked.discard(seq)
                    self.blocks_backfilled += 1
                    release.append(seq)
        self.spool.release(release)
        now = time.monotonic()
        for seq in [s for s in self._sent_at if s <= through]:
            self.rtt_seconds = now - self._sent_at.pop(seq)

    def requeue(self) -> None:
        """A lost connection: everything not yet acknowledged goes again, in order."""
        if self.unacked:
            self.unsent = deque(sorted(set(self.unsent) | set(self.unacked)))
            self.unacked.clear()
        self.backfill_unacked.clear()
        self._sent_at.clear()
