from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import make_block
from sendlearn.capture import Block


@pytest.fixture
def block() -> Block:
    return make_block()


@pytest.fixture(scope="module")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A private ``jackd -S -d dummy -r 48000 -p 128``, stopped (and checked gone) after.

    Synchronous (``-S``): a cycle's output is read by the clients downstream of it within
    the same cycle, so frames can be compared across clients."""
    from jackplay import PERIOD, RATE, alive
    from sendlearn.plugin.live import DummyServer

    log = tmp_path_factory.mktemp("jackd") / "jackd.log"
    jackd = DummyServer(rate=RATE, period=PERIOD, sync=True, log=log).start()
    pid = jackd.pid
    try:
        yield jackd
    finally:
        jackd.stop()
        assert pid is not None and not alive(pid), "jackd still running after stop"
