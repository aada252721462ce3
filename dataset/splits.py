"""Train, validation and test splits, decided once per session (docs/dataset.md, "Splits").

A session's split is a function of one string alone: its id, or with ``by=KEY`` the value a
session fact ``KEY`` has (``stream.json``'s ``meta``, the same in every stream that carries it),
so sessions sharing a performer or a piece share a split. The string is hashed (SHA-256; its first
8 bytes as a fraction of 2^64) and the fraction falls in one of the parts, in order. Nothing else
counts: adding sessions to a data directory never moves one, and every window and stream of a
session is in its split. Windows overlap and a session's streams share their notes, so a split
made afterwards by row would leak; this one cannot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .reader import DataDir

SPLITS = ("train", "validation", "test")
DEFAULT = "80/10/10"


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """Percentages of ``train``/``validation``/``test`` (integers summing to 100; a part may be 0)
    and the session fact to group by (None: the session id)."""

    parts: tuple[int, int, int] = (80, 10, 10)
    by: str | None = None

    def __post_init__(self) -> None:
        if len(self.parts) != len(SPLITS) or not all(isinstance(p, int) and p >= 0 for p in self.parts):
            raise ValueError(f"a split is three whole percentages (train/validation/test), got {self.parts}")
        if sum(self.parts) != 100:
            raise ValueError(f"split {self.text}: the percentages sum to {sum(self.parts)}, not 100")

    @classmethod
    def parse(cls, text: str, by: str | None = None) -> SplitSpec:
        """``"80/10/10"`` (train/validation/test); ValueError naming the problem."""
        pieces = text.split("/")
        if len(pieces) != len(SPLITS) or not all(p.strip().isdigit() for p in pieces):
            raise ValueError(f"split {text!r}: need three whole percentages TRAIN/VALIDATION/TEST, such as {DEFAULT}")
        parts = tuple(int(p) for p in pieces)
        return cls((parts[0], parts[1], parts[2]), by or None)

    @property
    def text(self) -> str:
        return "/".join(str(p) for p in self.parts)

    def split_of(self, key: str) -> str:
        """The split of a session whose grouping string is ``key``."""
        fraction = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
        edge = 0.0
        for name, part in zip(SPLITS, self.parts, strict=True):
            edge += part / 100
            if part and fraction < edge:
                return name
        return [n for n, p in zip(SPLITS, self.parts, strict=True) if p][-1]  # rounding at the top edge

    def as_dict(self) -> dict[str, object]:
        return {"parts": list(self.parts), "by": self.by}


@dataclass(frozen=True, slots=True)
class SessionSplit:
    """Where a session went and why: ``key`` is what was hashed; ``fallback`` when ``by`` was
    asked and the session has no such fact (its id was hashed)."""

    split: str
    key: str
    fallback: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"split": self.split, "key": self.key, "fallback": self.fallback}


def session_fact(dataset: DataDir, session: str, name: str) -> str | None:
    """The value of fact ``name`` in the session's streams' ``meta`` (the first stream, in name
    order, that has it), as text; None when no stream has it."""
    for stream in dataset.streams(session):
        meta = dataset.stream(session, stream).facts.meta
        if name in meta and meta[name] is not None:
            value = meta[name]
            return value if isinstance(value, str) else repr(value)
    return None


def session_split(dataset: DataDir, session: str, spec: SplitSpec) -> SessionSplit:
    """The split of ``session`` by ``spec``."""
    if spec.by is not None:
        value = session_fact(dataset, session, spec.by)
        if value is not None:
            key = f"{spec.by}={value}"
            return SessionSplit(spec.split_of(key), key)
        return SessionSplit(spec.split_of(f"session={session}"), f"session={session}", fallback=True)
    return SessionSplit(spec.split_of(f"session={session}"), f"session={session}")
