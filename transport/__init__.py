"""The wire: a sans-I/O protocol shared by both ends, and the sender that drives it.

``.messages`` is imported here before anything imports ``.decode`` or ``.encode``: it
re-exports their functions at its end, and they import its types.
"""

from .codec import Quality
from .errors import EXPLANATIONS, ErrorCode, InvalidMessage, InvalidState, ProtocolError
from .messages import (
    PROTOCOL_VERSION,
    Ack,
    BlockEntry,
    BlockFrame,
    Bye,
    Error,
    Hello,
    Welcome,
    decode_frame,
    encode_frame,
)
from .protocol import BlocksReceived, Protocol
from .state import Role, State

__all__ = [
    "EXPLANATIONS", "PROTOCOL_VERSION", "Ack", "BlockEntry", "BlockFrame", "BlocksReceived", "Bye",
    "Error", "ErrorCode", "Hello", "InvalidMessage", "InvalidState", "Protocol", "ProtocolError", "Quality", "Role", "State", "Welcome",
    "decode_frame", "encode_frame",
]
