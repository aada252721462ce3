"""The connection's state machine, as a table.

Rules:
- The sender speaks first (HELLO); nothing else is allowed before it.
- The receiver answers HELLO with WELCOME (accepted) or ERROR (refused).
- BLOCK and ACK flow only while STREAMING; BYE moves to CLOSING, where the receiver still
  ACKs what it makes durable, and the sender sends nothing more.
- ERROR, from either side and in any state, moves to CLOSED. Nothing follows it.
Both ends hold the same table; each checks the messages it sends and those it receives.
"""

from __future__ import annotations

from enum import Enum


class Role(Enum):
    SENDER = "sender"
    RECEIVER = "receiver"


class State(Enum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    STREAMING = "streaming"
    CLOSING = "closing"
    CLOSED = "closed"


# which role may originate each message type
ORIGIN: dict[str, Role | None] = {
    "hello": Role.SENDER,
    "welcome": Role.RECEIVER,
    "block": Role.SENDER,
    "ack": Role.RECEIVER,
    "bye": Role.SENDER,
    "error": None,  # either
}

# (state, message type) -> next state; anything absent is UNEXPECTED_MESSAGE
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.IDLE, "hello"): State.HANDSHAKE,
    (State.HANDSHAKE, "welcome"): State.STREAMING,
    (State.STREAMING, "block"): State.STREAMING,
    (State.STREAMING, "ack"): State.STREAMING,
    (State.STREAMING, "bye"): State.CLOSING,
    (State.CLOSING, "ack"): State.CLOSING,
    **{(state, "error"): State.CLOSED for state in State if state is not State.CLOSED},
}


def next_state(state: State, kind: str, origin: Role) -> State | None:
    """The state after a message of ``kind`` from ``origin``; None if it is not allowed."""
    allowed = ORIGIN.get(kind, Role.SENDER)
    if allowed is not None and allowed is not origin:
        return None
    return TRANSITIONS.get((state, kind))
