"""Print the worked examples of docs/protocol.md: each frame in hex and what it decodes to.

    python scripts/protocol_examples.py > /tmp/examples.md

tests/test_protocol_doc.py decodes the hex in the doc and checks it against the JSON beside it.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np

from sendlearn.capture import Block, MidiEvent, ParamChange, Playhead
from sendlearn.transport import Ack, Bye, Error, ErrorCode, Hello, Protocol, Quality, Role, Welcome, encode_frame
from sendlearn.transport.decode import decode_frame
from sendlearn.transport.encode import wire_form

HELLO = Hello("demo", "keys", "Keys", 48000, 1, 4, "dawdreamer", "t0ken", 0)


def examples() -> list[tuple[str, bytes]]:
    sender = Protocol(Role.SENDER, compression_level=0)
    sender.send(HELLO)
    sender.hello = HELLO
    sender.state = sender.state.__class__.STREAMING  # skip the WELCOME round trip for the example
    block = Block("demo", "keys", 0, 0, 4, 48000, 1,
                  Playhead(seconds=0.0, ppq=0.0, bpm=120.0, playing=True),
                  (MidiEvent(1, b"\x90\x3c\x64"),), (ParamChange(2, "cutoff", 0.5),),
                  np.array([[0.0, 0.5, -0.5, 0.25]], dtype=np.float32))
    sender.send_blocks([block], Quality.PCM16)
    hello_frame, block_frame = sender.data_to_send()
    return [
        ("HELLO", hello_frame),
        ("WELCOME", encode_frame(Welcome(-1, 16 * 1024 * 1024), 0)),
        ("BLOCK (one 4-frame mono block at PCM16, raw s16 coding)", block_frame),
        ("ACK", encode_frame(Ack(0), 0)),
        ("ACK naming backfilled blocks", encode_frame(Ack(191, ((128, 191),)), 0)),
        ("BYE", encode_frame(Bye(0), 0)),
        ("ERROR", encode_frame(Error(ErrorCode.BAD_ID, "hello.stream: '../x' is not 1-64 characters"), 0)),
        ("HELLO, zstd-compressed at level 19 (flags 0x01)", encode_frame(HELLO, 19)),
    ]


def main() -> None:
    for title, frame in examples():
        shown = json.dumps(wire_form(decode_frame(frame)), indent=2)
        hexed = "\n".join(textwrap.wrap(frame.hex(" "), 48))
        print(f"#### {title}\n\n```hex\n{hexed}\n```\n\ndecodes to\n\n```json\n{shown}\n```\n")


if __name__ == "__main__":
    main()
