"""Ardour 7.3 headless: ``ardour7-lua -i`` (a Lua interpreter with Ardour's session API) driven
over its stdin, on a JACK server named by ``JACK_DEFAULT_SERVER``.

``ardour7-lua -i`` reads Lua a line at a time (GNU readline, so a chunk is one line). ``run``
sends one chunk wrapped in ``pcall`` with a marker printed after it, and reads its output up to
the marker: what the chunk printed, or ``ArdourError`` with Lua's message. The Lua API is Ardour
7.3's (libs/ardour/luabindings.cc, luasession/luasession.cc). Used by ``sendlearn render`` on an
Ardour session and by the tests, which build their sessions with it.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from sendlearn.errors import SendLearnError
from sendlearn.plugin.lifetime import die_with_parent

LUA = "ardour7-lua"
PACKAGE = "ardour"  # Debian's Ardour 7.3: ardour7-lua, ardour7-export, ACE plugins
# Ardour's JACK client name: with an empty instance name its ports are ":<track>/audio_out 1".
# (Named otherwise, 7.3's tracks recorded no take: the empty name is what works.)
CLIENT = ""
TIMEOUT = 60.0  # a hang guard only: a chunk takes milliseconds, loading a session a second or two

# Ardour follows JACK's transport (so its rolling is JACK's, and the timebase callback it
# registers publishes its BBT for JACK's frame) only with the "JACK Transport" master current,
# which Lua cannot set in 7.3: it comes from the user config file (TransportMasterManager reads
# it at start), plus the session's external-sync option.
# ``port-resampler-quality`` 0: Ardour 7 resamples at its JACK ports (for varispeed) and each
# output port then delays its audio by the quality - 1 samples (16 at the default 17), while
# MIDI ports do not: a MIDI track's audio came 16 samples after its own events, the master 32
# after its tracks' sources. A render runs at speed 1, so no port needs the resampler
# (tests/test_ardour_audio.py: a region's samples on their sample, bit for bit).
RC_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<Ardour>
  <Config>
    <Option name="port-resampler-quality" value="0"/>
  </Config>
  <TransportMasters current="JACK Transport">
    <TransportMaster type="Engine" removeable="0" name="JACK Transport"/>
  </TransportMasters>
</Ardour>
"""


class ArdourError(SendLearnError):
    """Ardour could not run, or a Lua chunk failed: the message says which and why."""


class ArdourProcess:
    """One headless Ardour process on JACK server ``server``, its user config under ``home``."""

    def __init__(self, server: str, home: Path) -> None:
        lua = shutil.which(LUA)
        if lua is None:
            raise ArdourError(f"{LUA} not found: install Debian's {PACKAGE!r} package (make system does)")
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config" / "ardour7"
        config.mkdir(parents=True, exist_ok=True)
        (config / "config").write_text(RC_CONFIG)
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "HOME": str(home),
               "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
        self.home = home
        self.process = subprocess.Popen([lua, "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env, bufsize=1,
                                        preexec_fn=die_with_parent)
        self.log: list[str] = []  # everything it printed
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="ardour-output", daemon=True)
        self._reader.start()
        self._count = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def run(self, chunk: str, timeout: float = TIMEOUT) -> list[str]:
        """Run one Lua chunk (newlines become spaces: no ``--`` comments); return what it printed."""
        if _has_comment(chunk):  # it would swallow the rest of the line: the chunk never ends
            raise ValueError(f"a Lua chunk sent as one line holds a -- comment: {chunk.strip()[:200]!r}")
        self._count += 1
        mark = f"@@{self._count}"
        one_line = " ".join(line.strip() for line in chunk.strip().splitlines())
        # the marker is built at run time, so readline's echo of the line never matches it
        wrapped = (f"local ok, err = pcall(function() {one_line} end) "
                   f"print('@' .. '@{self._count} ' .. (ok and 'ok' or ('error ' .. tostring(err))))")
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(wrapped + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ArdourError(f"{LUA} exited ({self.process.poll()}): {self.tail()}") from exc
        printed: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise ArdourError(f"{LUA} did not finish {one_line[:200]!r} in {timeout} s: {self.tail()}") from None
            if line is None:
                self._lines.put(None)  # every later call sees the end too
                raise ArdourError(f"{LUA} exited ({self.process.wait(10)}) running {one_line[:200]!r}: {self.tail()}")
            at = line.find(mark + " ")
            if at >= 0:
                status = line[at + len(mark) + 1:]
                if status != "ok":
                    raise ArdourError(f"Lua failed: {status} in {one_line[:300]!r}")
                return printed
            if not line.startswith(">") and "pcall(function()" not in line:  # readline's prompt and echo
                printed.append(line)

    def value(self, expression: str) -> str:
        """The printed value of a Lua expression."""
        printed = self.run(f"print('=' .. tostring({expression}))")
        return next(line[1:] for line in printed if line.startswith("="))

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log[-lines:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    # -- a session ------------------------------------------------------------------------

    def use_jack(self) -> None:
        self.run(f'assert(AudioEngine:set_backend("JACK", "{CLIENT}", ""), "no JACK backend")')

    def load_session(self, folder: Path, snapshot: str) -> None:
        """Open snapshot ``snapshot`` (the .ardour file's stem) of the session in ``folder``."""
        self.use_jack()
        self.run(f'assert(load_session("{folder}", "{snapshot}"), "load_session failed")')

    def locate(self, sample: int) -> None:
        self.run(f"Session:request_locate({sample}, false, ARDOUR.LocateTransportDisposition.MustStop, "
                 "ARDOUR.TransportRequestSource.TRS_UI)")

    def roll(self) -> None:
        self.run("Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)")

    def stop(self) -> None:
        self.run("Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)")

    def be_timebase_master(self) -> None:
        """Ardour publishes its BBT as JACK's timebase master and follows JACK's transport."""
        self.run("Session:cfg():set_jack_time_master(true) Session:cfg():set_external_sync(true)")

    # -- lifetime ---------------------------------------------------------------------------

    def close(self, save: bool = False) -> None:
        """Close the session (saving it only when asked) and end the process; killed if it hangs."""
        process = self.process
        if process.poll() is None:
            try:
                self.run("if Session then Session:request_stop(false, false, "
                         "ARDOUR.TransportRequestSource.TRS_UI) end", timeout=10)
                if save:
                    self.run('Session:save_state("", false, false, false, false, false)', timeout=30)
                self.run("close_session()", timeout=30)
                assert process.stdin is not None
                process.stdin.write("quit\n")
                process.stdin.close()
                process.wait(30)
            except (ArdourError, OSError, subprocess.TimeoutExpired):
                self.kill()
        self._reader.join(10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _has_comment(chunk: str) -> bool:
    """Whether a line of ``chunk`` holds ``--`` outside a string literal."""
    for line in chunk.splitlines():
        quote, i = "", 0
        while i < len(line):
            if quote:
                if line[i] == "\\":
                    i += 1
                elif line[i] == quote:
                    quote = ""
            elif line[i] in "'\"":
                quote = line[i]
            elif line.startswith("--", i):
                return True
            i += 1
    return False
