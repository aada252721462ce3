"""``sendlearn export``: training windows in the formats training code reads (docs/export.md).

    from sendlearn.dataset.export import export
    export("parquet", "sendlearn-data", "out/parquet")          # or webdataset, hdf5, tfrecord, pytorch

One sample per (session, stream, window), in its session's split (train, validation or test, written
in each library's own convention: docs/export.md), read through ``sendlearn.dataset`` one window at a time
(``samples.py``); windows with flags are left out unless ``include_flagged``. Each format's writer
is a module of its own and imports its library only when it runs, so this package loads without
them (the ``export`` extra installs them). A writer stopped midway (an exception, Ctrl-C) removes
the files it had begun: an export is whole or absent.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendlearn.errors import MissingExtra

from .samples import Sample, decode_audio, encode_audio, iter_samples, plan, sample_key, window_sample

FORMATS = {
    "parquet": ("parquet", "write_parquet"),
    "webdataset": ("webdataset", "write_webdataset"),
    "hdf5": ("hdf5", "write_hdf5"),
    "tfrecord": ("tfrecord", "write_tfrecord"),
    "pytorch": ("pytorch", "write_pytorch"),
    "tokens": ("tokens", "write_tokens"),  # windows, not samples: export() hands it the plan (tokens.py)
}


@dataclass
class ExportResult:
    format: str
    out: Path
    samples: int
    skipped_windows: int  # flagged windows left out
    audio_seconds: float  # real audio in the samples written: a padded last window counts its frames_valid
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "out": str(self.out), "samples": self.samples,
                "skipped_windows": self.skipped_windows, "audio_seconds": self.audio_seconds, "files": self.files}


def writer(fmt: str) -> Callable[..., dict[str, Any]]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    module, name = FORMATS[fmt]
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ImportError as exc:
        raise MissingExtra(exc.name or "its writer's library", f"export {fmt}", extra="export") from exc


def export(fmt: str, data_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
           sessions: list[str] | None = None, include_flagged: bool = False, with_features: bool = True,
           progress: Callable[[int, int], None] | None = None, window: float | None = None,
           overlap: float | None = None, min_events: int | None = None, **options: Any) -> ExportResult:
    """Export the windows of ``data_dir`` (those ``sendlearn sequences`` stored, else cut with
    ``window``/``overlap``/``min_events``) to ``out`` in ``fmt``."""
    write = writer(fmt)
    spec = {k: v for k, v in (("window", window), ("overlap", overlap), ("min_events", min_events)) if v is not None}
    data_dir, out = Path(data_dir), Path(out)
    chosen = plan(data_dir, sessions, include_flagged, **spec)
    if fmt == "tokens":
        out.mkdir(parents=True, exist_ok=True)
        done: Any = write(data_dir, chosen, out, include_flagged=include_flagged, progress=progress, **spec, **options)
        return ExportResult(fmt, out, done.rows, chosen.skipped + done.skipped, done.audio_seconds, done.files)
    seconds = [0.0]

    def counted() -> Any:
        for sample in iter_samples(data_dir, chosen, with_features, progress, **spec):
            seconds[0] += sample.frames_valid / sample.sample_rate  # real audio, not the padding
            yield sample

    out.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":  # its card says how sessions were split
        options = {**options, "plan": chosen}
    written = write(counted(), out, **options)
    return ExportResult(fmt, out, int(written["rows"]), chosen.skipped, seconds[0], list(written["files"]))


__all__ = ["FORMATS", "ExportResult", "Sample", "decode_audio", "encode_audio", "export", "iter_samples", "plan",
           "sample_key", "window_sample", "writer"]
