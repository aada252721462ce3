"""Offline producers and consumers block on the hand-off's condition, never a sleep loop; the
real-time ``offer`` takes no lock and never waits."""

from __future__ import annotations

import threading

import pytest

from helpers import make_audio
from sendlearn.capture import Block, ConsumerFailed, HandOff, Playhead


def _block(seq: int) -> Block:
    return Block("s", "x", seq, seq * 64, 64, 48000, 2, Playhead(), (), (), make_audio(2, 64, seed=seq))


def test_a_waiting_take_gets_every_put_block_then_none_at_close() -> None:
    handoff = HandOff(capacity=2)
    taken: list[int | None] = []

    def consume() -> None:
        while (block := handoff.take(timeout=None)) is not None:
            taken.append(block.seq)
        taken.append(None)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for seq in range(100):  # capacity 2: the producer waits for room again and again
        handoff.put(_block(seq))
    handoff.close()
    consumer.join(60)
    assert not consumer.is_alive() and taken == [*range(100), None]


def test_a_waiting_put_raises_when_the_consumer_fails() -> None:
    handoff = HandOff(capacity=1)
    handoff.put(_block(0))
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            handoff.put(_block(1))
        except ConsumerFailed as exc:
            failed.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    handoff.fail("disk full")
    producer.join(60)
    assert not producer.is_alive() and "disk full" in str(failed[0])


def test_offer_never_waits_and_counts_what_it_drops() -> None:
    handoff = HandOff(capacity=1)
    with handoff._changed:  # even with the condition held by someone else, offer goes through
        assert handoff.offer(_block(0)) and not handoff.offer(_block(1))
    assert handoff.dropped == 1 and handoff.take().seq == 0
    assert handoff.offer(_block(2))  # full again
    with pytest.raises(TimeoutError):  # an offline put with a deadline says so rather than waiting on
        handoff.put(_block(3), timeout=0.0)
