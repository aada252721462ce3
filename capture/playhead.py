"""Where the host's transport is at the first sample of a block."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidBlock


@dataclass(frozen=True, slots=True)
class Playhead:
    """The host's timeline at a block's first sample.

    ``seconds`` and ``ppq`` (quarter notes) count from the timeline's zero; ``bar`` is
    1-based, ``beat`` is the 1-based position inside the bar in units of the time
    signature's denominator (beat 1.0 is the downbeat, 2.5 halfway through the second beat).
    """

    seconds: float = 0.0
    ppq: float = 0.0
    bpm: float = 120.0
    ts_num: int = 4
    ts_den: int = 4
    bar: int = 1
    beat: float = 1.0
    playing: bool = False
    recording: bool = False
    looping: bool = False

    def __post_init__(self) -> None:
        for name in ("seconds", "ppq", "beat"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidBlock(f"playhead.{name}", f"must be a finite number, got {value!r}")
        if not isinstance(self.bpm, (int, float)) or not 0.0 < self.bpm <= 10000.0:
            raise InvalidBlock("playhead.bpm", f"must be in (0, 10000], got {self.bpm!r}")
        if type(self.ts_num) is not int or not 1 <= self.ts_num <= 255:
            raise InvalidBlock("playhead.ts_num", f"must be an int in 1..255, got {self.ts_num!r}")
        if type(self.ts_den) is not int or self.ts_den not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise InvalidBlock("playhead.ts_den", f"must be a power of two 1..128, got {self.ts_den!r}")
        if type(self.bar) is not int or not -(2**31) <= self.bar < 2**31:
            raise InvalidBlock("playhead.bar", f"must be an int32, got {self.bar!r}")
        for name in ("playing", "recording", "looping"):
            if type(getattr(self, name)) is not bool:
                raise InvalidBlock(f"playhead.{name}", "must be a bool")

    def as_tuple(self) -> tuple[float, float, float, int, int, int, float, bool, bool, bool]:
        return (
            float(self.seconds), float(self.ppq), float(self.bpm), self.ts_num, self.ts_den,
            self.bar, float(self.beat), self.playing, self.recording, self.looping,
        )


STOPPED = Playhead()
