"""Tokens the receiver accepts, kept as sha256 hashes (docs/serve.md, "Tokens").

A tokens file holds one line per token: its hash, then optionally the session-id prefixes it
may stream to (none: any session). Blank lines and ``#`` comments are ignored::

    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  lab-a- lab-b-

``sendlearn token`` makes a token and its line. A HELLO's token is hashed and compared with
every line by ``hmac.compare_digest``: neither a match's position nor a near miss shows in time.

The file fails closed while the receiver runs, as it does at start (``serve`` refuses a file
that is missing, empty or does not parse):

- it is read again when its content changes (a sha256 of its bytes, not its mtime);
- an empty or missing file accepts no token;
- a file that does not parse, or cannot be read, accepts no token either, and is an ``error``
  (``/healthz`` says 503 with it) until it is fixed;
- each change is logged once, when it is seen.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sendlearn.receiver")

_LINE = re.compile(r"^sha256:([0-9a-f]{64})((?:\s+\S+)*)\s*$")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    digest: bytes
    scopes: tuple[str, ...] = ()  # session-id prefixes; empty: every session

    def allows(self, session: str) -> bool:
        return not self.scopes or any(session.startswith(prefix) for prefix in self.scopes)


class Tokens:
    def __init__(self, entries: list[TokenEntry], path: Path | None = None, seen: bytes | None = None) -> None:
        self.entries = entries
        self.path = path  # the file they were read from (None: given in-process, never read again)
        self.seen = seen  # what was last seen of the file: the sha256 of its bytes, or of why it did not read
        self.error: str | None = None  # why the file accepts no token though it should (it does not parse)

    def refresh(self) -> bool:
        """Read the file again if what is in it changed since it was last seen; True if it did
        (what is accepted may have changed: a token added, or one revoked)."""
        if self.path is None:
            return False
        error = None
        try:
            data = self.path.read_bytes()
            seen = hashlib.sha256(b"file\0" + data).digest()
        except FileNotFoundError:
            data, seen = None, hashlib.sha256(b"missing").digest()
        except OSError as exc:
            data, error = None, f"tokens file {self.path}: {exc.strerror or exc}"
            seen = hashlib.sha256(b"error\0" + error.encode()).digest()
        if seen == self.seen:
            return False
        self.seen = seen
        entries: list[TokenEntry] = []
        if data is not None:
            try:
                entries = parse(data)
            except ValueError as exc:
                error = f"tokens file {self.path}: {exc}"
        self.entries, self.error = ([] if error else entries), error
        if error:
            log.error("%s: every new HELLO is refused until it is fixed", error, extra={"tokens": str(self.path)})
        elif data is None:
            log.warning("tokens file %s is missing: no token is accepted", self.path, extra={"tokens": str(self.path)})
        elif not entries:
            log.warning("tokens file %s is empty: no token is accepted", self.path, extra={"tokens": str(self.path)})
        else:
            log.info("tokens file %s read again: %d tokens", self.path, len(entries),
                     extra={"tokens": str(self.path), "count": len(entries)})
        return True

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """At start: raises OSError, or ValueError naming the line that is not a hash line, or
        saying there is no token."""
        data = path.read_bytes()
        entries = parse(data)
        if not entries:
            raise ValueError("no token in it (make one with: sendlearn token)")
        return cls(entries, path, hashlib.sha256(b"file\0" + data).digest())

    def entry(self, token: str | None) -> TokenEntry | None:
        """The line ``token`` matches, or None (no token, not on the list, or the file is in error)."""
        digest = hash_token(token or "")
        found = None
        for entry in self.entries:  # every entry, always: the time taken does not depend on which matched
            if hmac.compare_digest(digest, entry.digest) and token:
                found = found or entry
        return found

    def accepts(self, token: str | None, session: str) -> bool:
        """Whether ``token`` is on the list and may stream to ``session``."""
        entry = self.entry(token)
        return entry is not None and entry.allows(session)


def parse(data: bytes) -> list[TokenEntry]:
    """A tokens file's lines; ValueError naming the first that is not a hash line."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"line {number} is not 'sha256:<64 hex digits> [session prefixes]' "
                             "(make one with: sendlearn token)")
        entries.append(TokenEntry(bytes.fromhex(match[1]), tuple(match[2].split())))
    return entries


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def make_token(scopes: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """A new random token and its line for a tokens file.

    Never one starting with ``-``: pasted after ``--token`` it would be read as an option.
    """
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    line = f"sha256:{hash_token(token).hex()}"
    return token, " ".join([line, *scopes])
