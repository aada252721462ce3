from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import make_block
from protocol_pair import Pair
from sendlearn.capture import Block
from sendlearn.server.receiver import ReceiverThread


@pytest.fixture
def block() -> Block:
    return make_block()


@pytest.fixture
def pair() -> Pair:
    """A sender and a receiver Protocol joined in memory, HELLO not yet sent."""
    return Pair()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    """A real receiver on loopback writing to ``tmp_path``, committing every 50 ms. A test that
    reads the dataset back calls ``receiver.stop()`` first (it finalises the open streams)."""
    with ReceiverThread(tmp_path, commit_interval=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A private ``jackd -S -d dummy -r 48000 -p 128``, stopped (and checked gone) after.

    Synchronous (``-S``): a cycle's output is read by the clients downstream of it within
    the same cycle, so frames can be compared across clients."""
    from jackplay import PERIOD, RATE, alive
    from sendlearn.plugin.live.runner import DummyServer

    log = tmp_path_factory.mktemp("jackd") / "jackd.log"
    jackd = DummyServer(rate=RATE, period=PERIOD, sync=True, log=log).start()
    pid = jackd.pid
    try:
        yield jackd
    finally:
        jackd.stop()
        assert pid is not None and not alive(pid), "jackd still running after stop"
