"""Running ``sendlearn live`` the way a user does (a process of its own) beside a JACK player,
and finding the player's noise in what it stored: shared by the PortAudio and Link tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from helpers import wait_for
from jackplay import PERIOD, Player, noise


def run_cli(argv: list[str], pythonpath: str | None = None) -> tuple[int, str, str]:
    """``sendlearn ARGV`` in a process of its own, as a user runs it: PortAudio, once loaded,
    keeps a JACK client of its own in the process, and a JACK-Client closed later in the same
    process (pytest's, in the JACK tests after these) could hang in jack_client_close."""
    done = subprocess.run([sys.executable, "-m", "sendlearn", *argv], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "COLUMNS": "160",
                               **({"PYTHONPATH": pythonpath} if pythonpath else {})})
    return done.returncode, done.stdout, done.stderr


def origin_of(stored: np.ndarray, player: Player) -> tuple[int, int]:
    """(JACK frame of the stream's sample 0, samples of silence before the player is heard).
    PortAudio connects its ports once its stream runs, so the first blocks may be silence;
    the origin comes from the first block that is not, which must be the player's noise."""
    silent = 0
    while silent < stored.shape[1] and not stored[:, silent:silent + PERIOD].any():
        silent += PERIOD
    first, last = min(player.played), max(player.played) + PERIOD
    played = noise(first, last - first, 0)
    head = stored[0, silent:silent + 32]
    for at in np.flatnonzero(played == head[0]):
        if np.array_equal(played[at:at + 32], head):
            return first + int(at) - silent, silent
    raise AssertionError(f"the stored audio from sample {silent} on is not the player's noise anywhere")


def live_until(argv: list[str], ready: Callable[[], bool], then: Callable[[], None],
               timeout: float = 60) -> tuple[int, str, str]:
    """``sendlearn ARGV`` in a process of its own; once ``ready()``, ``then()`` runs, and the
    capture is stopped with SIGTERM (as Ctrl-C stops it)."""
    live = subprocess.Popen([sys.executable, "-m", "sendlearn", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "160"})
    try:
        wait_for(lambda: ready() or live.poll() is not None, timeout=timeout, what="the capture to start")
        assert live.poll() is None, live.communicate()
        then()
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=120)
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    return live.returncode, out, err


def live_beside(player_port: str, tmp_path: Path, options: list[str], ready: Callable[[], bool],
                then: Callable[[], None]) -> tuple[int, str, str]:
    """``sendlearn live --audio portaudio:PLAYER_PORT OPTIONS`` into ``tmp_path`` (session
    ``gig``) with ``live_until``: ``then`` runs once ``ready()`` and the stream has opened."""
    return live_until(["live", "--audio", f"portaudio:{player_port}", "--block-size", str(PERIOD), *options,
                       "--data-dir", str(tmp_path), "--session", "gig"],
                      lambda: ready() and (tmp_path / "sessions" / "gig" / "portaudio").exists(), then)
