"""Tokens the receiver accepts, kept as sha256 hashes (docs/serve.md, "Tokens").

A tokens file holds one line per token: its hash, then optionally the session-id prefixes it
may stream to (none: any session). Blank lines and ``#`` comments are ignored::

    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  lab-a- lab-b-

``sendlearn token`` makes a token and its line. A HELLO's token is hashed and compared with
every line by ``hmac.compare_digest``: neither a match's position nor a near miss shows in time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^sha256:([0-9a-f]{64})((?:\s+\S+)*)\s*$")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    digest: bytes
    scopes: tuple[str, ...] = ()  # session-id prefixes; empty: every session

    def allows(self, session: str) -> bool:
        return not self.scopes or any(session.startswith(prefix) for prefix in self.scopes)


class Tokens:
    def __init__(self, entries: list[TokenEntry], path: Path | None = None, stamp: int | None = None) -> None:
        if not entries:
            raise ValueError("no token")
        self.entries = entries
        self.path, self.stamp = path, stamp  # the file, and its mtime when read

    def fresh(self) -> Tokens:
        """These tokens, or the file's again if it changed since (a token added with
        ``sendlearn token --tokens FILE`` works without a restart). A file that no longer reads
        keeps the tokens last read."""
        if self.path is None:
            return self
        try:
            if self.path.stat().st_mtime_ns == self.stamp:
                return self
            return Tokens.load(self.path)
        except (OSError, ValueError):
            return self

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Raises OSError, or ValueError naming the line that is not a hash line."""
        entries = []
        stamp = path.stat().st_mtime_ns
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match is None:
                raise ValueError(f"line {number} is not 'sha256:<64 hex digits> [session prefixes]' "
                                 "(make one with: sendlearn token)")
            entries.append(TokenEntry(bytes.fromhex(match[1]), tuple(match[2].split())))
        return cls(entries, path, stamp)

    def accepts(self, token: str | None, session: str) -> bool:
        """Whether ``token`` is on the list and may stream to ``session``."""
        digest = hash_token(token or "")
        allowed = False
        for entry in self.entries:  # every entry, always: the time taken does not depend on which matched
            if hmac.compare_digest(digest, entry.digest) and token:
                allowed = allowed or entry.allows(session)
        return allowed


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def make_token(scopes: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """A new random token and its line for a tokens file."""
    token = secrets.token_urlsafe(32)
    line = f"sha256:{hash_token(token).hex()}"
    return token, " ".join([line, *scopes])
