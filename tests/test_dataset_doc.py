"""docs/dataset.md is the contract for readers: a written dataset matches its tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from helpers import make_block
from receiving import RawClient
from sendlearn.capture import MidiEvent
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Hello

DOC = (Path(__file__).parent.parent / "docs" / "dataset.md").read_text()
ARROW_NAMES = {"int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint64": "uint64",
               "float64": "double", "bool": "bool", "string": "string", "binary": "binary"}


def doc_table(title: str) -> dict[str, tuple[str, bool]]:
    """Column -> (arrow type, nullable) from the markdown table under ``## title``."""
    section = DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    columns = {}
    for name, kind in re.findall(r"^\| `(\w+)` \| ([\w, ]+) \|", section, re.M):
        base, _, null = kind.partition(",")
        columns[name] = (ARROW_NAMES[base.strip()], null.strip() == "null")
    return columns


def test_a_written_dataset_matches_the_doc(tmp_path: Path) -> None:
    block = make_block(0, frames=64, midi=(MidiEvent(0, b"\x90\x3c\x64"), MidiEvent(3, b"\xf8"),
                                            MidiEvent(5, b"\x80\x3c\x00", 12)))
    with ReceiverThread(tmp_path) as receiver:
        client = RawClient(receiver.url, Hello("sess", "keys", "", 48000, 2, 64, "raw"))
        client.send([block])
        client.bye(0)
        client.read_until_ack(0)
    folder = tmp_path / "sessions" / "sess" / "keys"
    for file, title in (("events.parquet", "events.parquet"), ("blocks.parquet", "blocks.parquet"),
                        ("params.parquet", "params.parquet")):
        schema = pq.read_schema(folder / file)
        documented = doc_table(title)
        assert list(documented) == schema.names, file
        for field in schema:
            assert (str(field.type), field.nullable) == documented[field.name], (file, field.name)
    events = pq.read_table(folder / "events.parquet").to_pydict()
    assert events["channel"] == [0, None, 0] and events["timing_error_samples"] == [None, None, 12]
    assert events["kind"] == ["note_on", "clock", "note_off"]
    info = json.loads((folder / "stream.json").read_text())
    documented_keys = set(re.findall(r"`(\w+)`", DOC.split("## stream.json\n", 1)[1].split("\n## ", 1)[0]))
    top = {k.split(".")[0] for k in documented_keys}
    assert set(info) <= top | {"quality"}, set(info) - top
    assert {"session", "stream", "audio", "gaps", "complete", "ended", "checksums"} <= set(info)
