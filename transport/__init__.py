"""The wire: a sans-I/O protocol shared by both ends, and the sender that drives it.

Messages are types (``messages``); frames are made by ``encode`` and read by ``decode``, which
import the types and nothing imports back.
"""

from .codec import Quality
from .decode import decode_frame
from .encode import encode_frame
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
)
from .protocol import Protocol
from .received import BlocksReceived
from .state import Role, State

__all__ = [
    "EXPLANATIONS", "PROTOCOL_VERSION", "Ack", "BlockEntry", "BlockFrame", "BlocksReceived", "Bye",
    "Error", "ErrorCode", "Hello", "InvalidMessage", "InvalidState", "Protocol", "ProtocolError", "Quality", "Role", "State", "Welcome",
    "decode_frame", "encode_frame",
]
