"""docs/protocol.md is the contract: its examples decode to what it says, its tables match the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sendlearn.transport import EXPLANATIONS, ErrorCode, decode_frame, encode_frame
from sendlearn.transport.codec import Quality
from sendlearn.transport.encode import wire_form

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
EXAMPLES = re.findall(r"```hex\n(.*?)```\s*decodes to\s*```json\n(.*?)```", DOC, re.S)


def test_the_doc_has_an_example_of_every_message() -> None:
    kinds = {json.loads(shown)["type"] for _, shown in EXAMPLES}
    assert kinds == {"hello", "welcome", "block", "ack", "bye", "error"}


def test_every_example_decodes_to_what_the_doc_says() -> None:
    for hexed, shown in EXAMPLES:
        frame = bytes.fromhex(hexed.replace(" ", "").replace("\n", ""))
        message = decode_frame(frame)
        assert wire_form(message) == json.loads(shown)
        if frame[0] == 0:  # uncompressed frames are canonical: re-encoding gives the same bytes
            assert encode_frame(message, 0) == frame


def test_the_error_table_lists_every_code_with_its_explanation() -> None:
    for code in ErrorCode:
        assert f"| {int(code)} | `{code.name}` | {EXPLANATIONS[code]} |" in DOC


def test_the_quality_table_lists_every_level() -> None:
    for level in Quality:
        assert re.search(rf"\| {int(level)} \| {level.name} \|", DOC)
