"""What a data directory holds: one summary per stream, finished or still open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sendlearn.transport.journal import read_records

from .layout import WORK


def stream_summaries(data_dir: Path) -> list[dict[str, Any]]:
    """One dict per stream under ``data_dir/sessions``, sorted by session and stream."""
    summaries = []
    for stream_json in sorted((data_dir / "sessions").glob("*/*/stream.json")):
        s = json.loads(stream_json.read_text())
        open_work = (stream_json.parent / WORK).exists()
        summaries.append({
            "session": s["session"], "stream": s["stream"], "track": s.get("track", ""),
            "state": "open" if open_work else ("complete" if s["complete"] else "ended: " + s["ended"]),
            "seconds": s["audio"]["seconds"], "blocks": s["blocks"], "events": s["events"],
            "gaps": len(s["gaps"]), "gap_blocks": sum(g["last_seq"] - g["first_seq"] + 1 for g in s["gaps"]),
            "audio": s["audio"]["file"], "path": str(stream_json.parent),
        })
    finished = {(s["session"], s["stream"]) for s in summaries}
    for info_json in sorted((data_dir / "sessions").glob(f"*/*/{WORK}/info.json")):
        info = json.loads(info_json.read_text())
        if (info["session"], info["stream"]) in finished:
            continue
        records, _ = read_records(info_json.parent / "journal")
        blocks = [r for r in records if r.get("k") == "block" and not r.get("backfill")]
        frames = max((r["entry"]["start"] + r["entry"]["frames"] for r in blocks), default=0)
        summaries.append({
            "session": info["session"], "stream": info["stream"], "track": info.get("track", ""),
            "state": "streaming", "seconds": frames / info["sample_rate"], "blocks": len(blocks),
            "events": sum(len(r["entry"]["midi"]) for r in blocks), "gaps": None, "gap_blocks": None,
            "audio": None, "path": str(info_json.parent.parent),
        })
    return sorted(summaries, key=lambda s: (s["session"], s["stream"]))
