"""A device's sample clock kept from PortAudio's input timestamps: which frames were lost.

PortAudio gives each input block the time its first frame was captured (``inputBufferAdcTime``,
in seconds of the stream's clock). The frames themselves are counted; the timestamp only says
when frames went missing (an input overflow, a stalled device, JACK skipping cycles), so the
stream's sample n stays the device's frame ``origin + n`` and the lost frames become a gap.

A timestamp is the truth plus a lateness that is never negative (how late the host API read
its clock after the period began: up to most of a period under load, measured a few frames
on an idle machine) plus the drift between the device's crystal and the clock the timestamps
come from (tens of ppm: a frame every few hundred milliseconds). So each block's offset
(timestamp in frames minus frames counted) is compared with the *smallest* offset of the
last ``window`` blocks: lateness is one-sided, so that minimum is the block boundary, and a
window of about a second keeps drift under a frame. Frames are lost when the offset lies a
whole block or more above it; the loss is counted in whole blocks (``floor``), which is exact
where the device loses whole periods and otherwise measured to the block. Lateness of a whole
block or more would read as a loss.

``trusted=False`` measures the jumps (``jumps``, ``jump_frames``) without moving the clock:
for PortAudio's JACK host API, whose timestamps are ``jack_frame_time``, JACK's wall-clock
estimate, which leaps ahead for good after a stall while no frame was lost (measured here: a
384-frame leap with the audio on either side contiguous, bit for bit). There the frames as
delivered are the truth, and a leap is a fact recorded beside them, not a gap.
"""

from __future__ import annotations

from collections import deque


class AdcClock:
    """Counts a device's frames and places its losses. ``advance`` once per block, in order."""

    def __init__(self, rate: float, block: int, window: int = 512, trusted: bool = True) -> None:
        self.rate, self.block, self.window, self.trusted = float(rate), int(block), int(window), trusted
        self.clock = 0  # the device frame of the next block's first frame, from the first block's
        self.first = 0  # the device frame of the last block's first frame
        self.missed_frames = 0  # frames the clock moved on for (trusted timestamps)
        self.gaps = 0
        self.jumps = 0  # leaps the timestamps showed, trusted or not
        self.jump_frames = 0
        self._shift = 0  # frames of untrusted leaps, taken out of later offsets
        self._origin: float | None = None  # the first timestamp, in frames
        self._minima: deque[tuple[int, float]] = deque()  # (block index, offset), offsets rising
        self._index = 0

    def advance(self, adc_seconds: float, frames: int) -> int:
        """The block of ``frames`` frames stamped ``adc_seconds``: return the frames lost just
        before it (0 almost always); ``first`` is then this block's first frame."""
        stamp = adc_seconds * self.rate
        if self._origin is None:
            self._origin = stamp
        offset = stamp - self._origin - self.clock - self._shift
        missed = 0
        if self._minima:
            excess = offset - self._minima[0][1]
            if excess >= self.block:
                leap = int(excess // self.block) * self.block
                self.jumps += 1
                self.jump_frames += leap
                offset -= leap
                if self.trusted:
                    missed = leap
                    self.clock += missed
                    self.missed_frames += missed
                    self.gaps += 1
                else:
                    self._shift += leap
        self._remember(offset)
        self.first = self.clock
        self.clock += frames
        return missed

    def _remember(self, offset: float) -> None:
        """Keep the minimum of the last ``window`` offsets (a monotonic deque: O(1) a block)."""
        minima, index = self._minima, self._index
        while minima and minima[-1][1] >= offset:
            minima.pop()
        minima.append((index, offset))
        if minima[0][0] <= index - self.window:
            minima.popleft()
        self._index = index + 1
