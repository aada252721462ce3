"""Streams a restarted receiver finishes by itself: their sender said BYE (durably, in the
journal) but their files were never written — the receiver was killed in finalise, or the
disk refused them and the sender did not come back to say BYE again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sendlearn.capture import StreamInfo
from sendlearn.files.records import read_records
from sendlearn.store.identity import read_info, stream_info
from sendlearn.store.layout import WORK


def said_bye(data_dir: Path) -> Iterator[tuple[StreamInfo, dict[str, Any], str | None]]:
    """(info, meta, take) of every open stream whose journal holds a BYE."""
    for work in sorted(data_dir.glob(f"sessions/*/*/{WORK}")):
        try:
            summary = work.parent / "stream.json"
            if summary.exists() and json.loads(summary.read_text()).get("complete"):
                continue  # a crash's leftover beside a complete stream: the next HELLO removes it
            recorded = read_info(work)
            records, _ = read_records(work / "journal")
        except (OSError, ValueError):
            continue  # unreadable: its sender's next HELLO reports the problem
        if any(record.get("k") == "bye" for record in records):
            yield stream_info(recorded), recorded.get("meta", {}), recorded.get("take")
