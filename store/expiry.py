"""Work folders nobody comes back for (docs/serve.md, "Limits"): a stream cut without BYE keeps
its ``.work/`` folder so its sender can resume it; after ``work_expiry`` seconds untouched and
unconnected, its public files are written if they are not yet, and the folder is removed."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Container
from pathlib import Path

from sendlearn.store.identity import read_info, stream_info
from sendlearn.store.layout import WORK
from sendlearn.store.writer import StreamWriter

log = logging.getLogger("sendlearn.receiver")


def expired(data_dir: Path, older_than: float, busy: Container[tuple[str, str]]) -> list[Path]:
    """Work folders untouched for ``older_than`` seconds whose stream is not in ``busy``."""
    now = time.time()
    found = []
    for work in sorted(data_dir.glob(f"sessions/*/*/{WORK}")):
        key = (work.parent.parent.name, work.parent.name)
        try:
            newest = max((p.stat().st_mtime for p in work.iterdir()), default=work.stat().st_mtime)
        except OSError:
            continue
        if key not in busy and now - newest > older_than:
            found.append(work)
    return found


def expire(work: Path) -> None:
    """Write the stream's files if it has none, then remove its work folder. Raises on failure
    (the folder stays for the next sweep)."""
    folder = work.parent
    if not (folder / "stream.json").exists():
        recorded = read_info(work)
        writer = StreamWriter(work.parent.parent.parent.parent, stream_info(recorded), recorded.get("meta", {}),
                              recorded.get("take"))
        writer.finalise("expired")
    shutil.rmtree(work)
    log.info("removed the expired work folder of %s/%s", folder.parent.name, folder.name,
             extra={"session": folder.parent.name, "stream": folder.name})
