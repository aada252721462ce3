"""Streams the receiver holds open and has not finished yet, read from their work folders.

Finished streams are read through ``sendlearn.dataset``; only the receiver knows its own work
files (``.work/info.json`` and the journal), so that part of ``sendlearn status`` lives here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sendlearn.files.records import read_records
from sendlearn.store.layout import WORK


def open_stream_summaries(data_dir: Path, finished: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """One dict per stream under ``data_dir/sessions`` that is streaming and has no ``stream.json``
    yet (those in ``finished`` are left out), sorted by session and stream."""
    summaries = []
    for info_json in sorted((data_dir / "sessions").glob(f"*/*/{WORK}/info.json")):
        info = json.loads(info_json.read_text())
        if (info["session"], info["stream"]) in finished:
            continue
        records, _ = read_records(info_json.parent / "journal")
        blocks = [r for r in records if r.get("k") == "block" and not r.get("backfill")]
        frames = max((_body(r)["start"] + _body(r)["frames"] for r in blocks), default=0)
        summaries.append({
            "session": info["session"], "stream": info["stream"], "track": info.get("track", ""),
            "state": "streaming", "seconds": frames / info["sample_rate"], "blocks": len(blocks),
            "events": sum(len(_body(r)["midi"]) for r in blocks), "gaps": None, "gap_blocks": None,
            "audio": None, "path": str(info_json.parent.parent),
        })
    return summaries


def _body(record: dict[str, Any]) -> dict[str, Any]:
    """A block record's header fields: format 1 holds them in the record, format 0 (an old work
    folder, which the writer refuses to resume) in its wire map under "entry". Status only
    counts them, so it shows both."""
    return record["entry"] if "entry" in record and "v" not in record else record
