"""What a stream is, independent of any block: the facts a HELLO carries and stream.json keeps."""

from __future__ import annotations

from dataclasses import dataclass

from .block import MAX_CHANNELS, MAX_FRAMES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from .errors import InvalidBlock
from .names import check_name


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream of a session: a track on the session's clock."""

    session: str
    stream: str
    sample_rate: int
    channels: int
    block_size: int
    track: str = ""
    host: str = ""
    meta: tuple[tuple[str, int | float | str | bool | None], ...] = ()  # facts, e.g. a measured lag

    def __post_init__(self) -> None:
        check_name(self.session, "session")
        check_name(self.stream, "stream")
        for name, low, high in (("sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
                                ("channels", 1, MAX_CHANNELS), ("block_size", 1, MAX_FRAMES)):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise InvalidBlock(name, f"must be an int in {low}..{high}, got {value!r}")
        if not isinstance(self.track, str) or len(self.track) > 256:
            raise InvalidBlock("track", "must be a string of at most 256 characters")
        if not isinstance(self.host, str) or len(self.host) > 256:
            raise InvalidBlock("host", "must be a string of at most 256 characters")
        if not isinstance(self.meta, tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in self.meta):
            raise InvalidBlock("meta", "must be a tuple of (name, value) pairs")
