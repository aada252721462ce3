"""A sender and a receiver ``Protocol`` joined in memory (h11's ``ConnectionPair``): no socket,
every byte one end sends is the other end's input."""

from __future__ import annotations

from sendlearn.transport import Hello, Protocol, Role, Welcome

HELLO = Hello("sess", "keys", "Keys (Rhodes)", 48000, 2, 512, "test-host", "secret", 0)


class Pair:
    """A sender and a receiver joined in memory (h11's ConnectionPair)."""

    def __init__(self, max_frame_size: int = 1 << 24) -> None:
        self.sender = Protocol(Role.SENDER)
        self.receiver = Protocol(Role.RECEIVER, max_frame_size=max_frame_size)

    def to_receiver(self) -> list:
        for frame in self.sender.data_to_send():
            self.receiver.receive_data(frame)
        return self.receiver.events_received()

    def to_sender(self) -> list:
        for frame in self.receiver.data_to_send():
            self.sender.receive_data(frame)
        return self.sender.events_received()

    def open(self) -> None:
        """HELLO and WELCOME exchanged: both ends streaming."""
        self.sender.send(HELLO)
        assert self.to_receiver() == [HELLO]
        self.receiver.send(Welcome(durable_through=-1))
        assert self.to_sender() == [Welcome(-1)]
