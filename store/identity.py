"""Which stream a folder holds (docs/dataset.md, "stream.json"), and whether a HELLO is that stream.

An open stream names itself in ``.work/info.json`` (its StreamInfo's fields, the HELLO's facts
and its take); a finished one in ``stream.json``, whose first fields are the same.

    info_json(info)                 a StreamInfo's naming fields, as both files hold them
    stream_info(recorded)           ... and back
    read_info(work) / record_info   ``.work/info.json``: read it, or write it for a stream
    check_same_stream(disk, hello)  raises StreamMismatch unless a HELLO may resume the stream
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sendlearn.capture import StreamInfo
from sendlearn.store.errors import StreamMismatch
from sendlearn.store.layout import write_json

INFO = "info.json"  # in a stream's work folder


def info_json(info: StreamInfo) -> dict[str, Any]:
    return {"session": info.session, "stream": info.stream, "track": info.track, "host": info.host,
            "sample_rate": info.sample_rate, "channels": info.channels, "block_size": info.block_size}


def stream_info(recorded: dict[str, Any]) -> StreamInfo:
    """The StreamInfo of an ``info_json`` map."""
    return StreamInfo(recorded["session"], recorded["stream"], recorded["sample_rate"], recorded["channels"],
                      recorded["block_size"], recorded.get("track", ""), recorded.get("host", ""))


def read_info(work: Path) -> dict[str, Any]:
    """``<work>/info.json``: ``info_json`` plus the stream's ``meta`` and ``take``."""
    recorded: dict[str, Any] = json.loads((work / INFO).read_text())
    return recorded


def record_info(work: Path, info: StreamInfo, meta: dict[str, Any], take: str | None) -> None:
    """Write ``<work>/info.json`` for a HELLO of ``info``. A stream that has one already must
    be the same (StreamMismatch); it keeps its take, and its facts when this HELLO states none
    (a resumed sender need not say them again)."""
    path = work / INFO
    mine = {**info_json(info), "meta": meta, "take": take}
    if path.exists():
        theirs = read_info(work)
        if not meta:
            mine["meta"] = theirs.get("meta", {})
        check_same_stream(theirs, mine)
        mine["take"] = theirs.get("take") or take
    write_json(path, mine)


def check_same_stream(on_disk: dict[str, Any], hello: dict[str, Any]) -> None:
    """A HELLO may resume a stream only with its rate, channels and take (when both name one)."""
    for key in ("sample_rate", "channels"):
        if on_disk.get(key) != hello[key]:
            raise StreamMismatch(f"{key} is {hello[key]} but the stream on disk has {on_disk.get(key)}")
    if on_disk.get("take") and hello.get("take") and on_disk["take"] != hello["take"]:
        raise StreamMismatch(
            f"another take ({on_disk['take']}) of {hello['session']}/{hello['stream']} is on disk; "
            "give this take its own session or stream id")
