"""Windows and their features cached on disk (``sendlearn sequences``; docs/dataset.md, "Sequences").

    sequences/<session>/sequences.json              settings, streams' checksums, feature settings, split
    sequences/<session>/windows.parquet             one row per window (WINDOWS_SCHEMA), written last
    sequences/<session>/features/<stream>/<index:06d>.npz   one array per feature
    sequences/quality.parquet                       every stream and window measured (``write_quality``)

A cache is used only while its streams' checksums are those of the dataset; other settings or
changed streams rebuild it. The session's split (``splits.py``) is stored with it and in every
row of windows.parquet; another split asked for rewrites windows.parquet and keeps the features. A build cut off midway resumes: feature files already written for
the same settings are kept. Windows are computed in parallel, one window per task.

This layer sits over the measures (it stores what they compute) and under the ``Dataset`` façade,
whose ``windows`` is ``session_windows``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import shutil
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sendlearn.files.aside import write_aside, write_json

from .features import FEATURES, HOP, N_FFT, N_MFCC, warm_up, window_features
from .measures import MEASURE_NOW
from .quality import quality_table, stream_quality, window_quality
from .reader import DataDir
from .schema import WINDOWS_SCHEMA, read_parquet, stamp
from .splits import SessionSplit, SplitSpec, session_split
from .windows import Window, WindowSpec, cut

SEQUENCES = "sequences"
VERSION = 4  # 2: a padded tail window, frames_valid per window; 3: the session's split; 4: onset lag from silence


def session_root(data_dir: Path, session: str) -> Path:
    return data_dir / SEQUENCES / session


def _librosa_version() -> str | None:
    try:
        from librosa.version import version  # librosa.__version__, which librosa's stubs leave out
    except ImportError:  # the reader works without the 'dataset' extra; only features need it
        return None
    return str(version)


def _settings(dataset: DataDir, session: str, spec: WindowSpec) -> dict[str, Any]:
    rate = dataset.session_rate(session)
    streams = {}
    for name in dataset.streams(session):
        facts = dataset.stream(session, name).facts
        streams[name] = {f: facts.checksums.get(f) for f in (facts.audio.file, "events.parquet")}
    return {"version": VERSION, "session": session, "window": spec.window, "overlap": spec.overlap,
            "min_events": spec.min_events, "tail": spec.tail, "sample_rate": rate, "frames": spec.frames(rate),
            "hop": spec.hop(rate),
            "streams": streams, "features": {"names": list(FEATURES), "hop_length": HOP, "n_fft": N_FFT,
                                              "n_mfcc": N_MFCC, "librosa": _librosa_version()}}


def _same(now: dict[str, Any], stored: dict[str, Any], with_librosa: bool) -> bool:
    """``stored`` settings (sequences.json) are those of ``now``, the librosa version aside unless asked."""
    def key(settings: dict[str, Any]) -> dict[str, Any]:
        features = dict(settings.get("features", {}))
        if not with_librosa:
            features.pop("librosa", None)
        return {**{k: v for k, v in settings.items() if k not in ("windows", "split")}, "features": features}

    return key(now) == key(stored)


class SequenceCache:
    """The stored windows of one session, when they are still those of its streams; it is their
    ``WindowMeasures``: stored flags and features, else measured now."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root, self.settings = root, settings
        self.spec = _spec(settings)

    @classmethod
    def open(cls, dataset: DataDir, session: str, for_build: bool = False) -> SequenceCache | None:
        """The session's stored windows, or None when there are none or they are stale. Reading
        them needs no librosa; building (``for_build``) also wants the same librosa version."""
        root = session_root(dataset.path, session)
        try:
            settings = json.loads((root / "sequences.json").read_text())
        except (OSError, ValueError):
            return None
        if not (root / "windows.parquet").is_file():
            return None
        try:
            spec = _spec(settings)
        except (KeyError, TypeError, ValueError):
            return None  # written by another version: rebuilt
        if not _same(_settings(dataset, session, spec), settings, for_build):
            return None  # a stream was written again, or librosa changed: stale
        return cls(root, settings)

    @property
    def spec_values(self) -> tuple[float, float, int, str]:
        return self.spec.window, self.spec.overlap, self.spec.min_events, self.spec.tail

    def windows(self, dataset: DataDir) -> Iterator[Window]:
        table = read_parquet(self.root / "windows.parquet", WINDOWS_SCHEMA).to_pylist()
        streams = tuple(sorted(self.settings["streams"]))
        for row in table:
            yield Window(dataset, self.settings["session"], row["index"], row["start_sample"], row["frames"],
                         self.settings["sample_rate"], streams, self.spec, self, tuple(row["flags"]),
                         row["frames_valid"], row["split"])

    @property
    def split(self) -> dict[str, Any]:
        """How the session's split was decided: ``spec`` (parts, by), ``split``, ``key``, ``fallback``."""
        return dict(self.settings["split"])

    def flags(self, window: Window) -> tuple[str, ...]:
        return MEASURE_NOW.flags(window)  # stored windows carry theirs: only a window made elsewhere asks

    def features(self, window: Window, stream: str) -> dict[str, np.ndarray]:
        path = feature_path(self.root, stream, window.index)
        if not path.is_file():
            return MEASURE_NOW.features(window, stream)
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}


def _spec(settings: dict[str, Any]) -> WindowSpec:
    return WindowSpec(settings["window"], settings["overlap"], settings["min_events"], settings["tail"])


def session_windows(dataset: DataDir, session: str, window: float | None = None, overlap: float | None = None,
                    min_events: int | None = None, tail: str | None = None) -> Iterator[Window]:
    """The windows ``sendlearn sequences`` stored for ``session`` when their settings match the
    ones asked for (or none is asked), with their flags and features cache; else cut afresh, in
    the split ``sendlearn sequences`` chose for the session (else the default: 80/10/10 by id)."""
    cache = SequenceCache.open(dataset, session)
    asked = (window, overlap, min_events, tail)
    if cache is not None and all(a is None or a == b for a, b in zip(asked, cache.spec_values, strict=True)):
        yield from cache.windows(dataset)
        return
    default = WindowSpec()
    spec = WindowSpec(default.window if window is None else window, default.overlap if overlap is None else overlap,
                      default.min_events if min_events is None else min_events,
                      default.tail if tail is None else tail)
    yield from cut(dataset, session, spec, MEASURE_NOW, None if cache is None else cache.split["split"])


def feature_path(root: Path, stream: str, index: int) -> Path:
    return root / "features" / stream / f"{index:06d}.npz"


@dataclass(frozen=True, slots=True)
class SequencesResult:
    session: str
    windows: int
    flagged: int
    computed: int  # windows whose features were computed in this run (the rest were on disk)
    audio_seconds: float  # audio whose features were computed: window seconds x streams
    path: Path
    split: SessionSplit


def build_sequences(data_dir: Path, session: str, spec: WindowSpec, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None,
                    split: SplitSpec | None = None) -> SequencesResult:
    """Cut ``session`` into windows in its split (``split``, default 80/10/10 by session id),
    compute every stream's features and flags, store them."""
    dataset = DataDir(data_dir)
    root = session_root(dataset.path, session)
    split = SplitSpec() if split is None else split
    chosen = session_split(dataset, session, split)
    settings = {**_settings(dataset, session, spec), "split": {"spec": split.as_dict(), **chosen.as_dict()}}
    windows = list(cut(dataset, session, spec, MEASURE_NOW, chosen.split))
    cached = SequenceCache.open(dataset, session, for_build=True)
    if cached is not None and cached.spec == spec and cached.settings.get("split") == settings["split"]:
        stored = list(cached.windows(dataset))
        return SequencesResult(session, len(stored), sum(bool(w.flags) for w in stored), 0, 0.0, root, chosen)
    try:
        previous = json.loads((root / "sequences.json").read_text())
    except (OSError, ValueError):
        previous = None
    if previous is None or not _same(settings, previous, True):
        shutil.rmtree(root, ignore_errors=True)  # other settings or other streams: nothing in it is ours
    (root / "windows.parquet").unlink(missing_ok=True)
    write_json(root / "sequences.json", {**settings, "windows": len(windows)}, durable=False)
    jobs = [(str(dataset.path), session, w.index, w.start_sample, spec, chosen.split) for w in windows]
    results = []
    for done, result in enumerate(_run(jobs, workers, dataset), 1):
        results.append(result)
        if progress is not None:
            progress(done, len(jobs))
    results.sort(key=lambda r: r["index"])
    table = pa.Table.from_pylist([{k: r[k] for k in WINDOWS_SCHEMA.names} for r in results], schema=WINDOWS_SCHEMA)
    write_aside(root / "windows.parquet", lambda tmp: pq.write_table(stamp(table), tmp), durable=False)
    computed = [r for r in results if r["computed"]]
    return SequencesResult(session, len(results), sum(bool(r["flags"]) for r in results), len(computed),
                           sum(r["audio_seconds"] for r in computed), root, chosen)


def _run(jobs: list[tuple[Any, ...]], workers: int, dataset: DataDir) -> Iterator[dict[str, Any]]:
    if not jobs:
        return
    warm_up()  # before forking: the workers inherit the compiled kernels
    if workers <= 1 or len(jobs) <= 1:
        yield from (_window_job(job, dataset) for job in jobs)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_interrupts) as pool:
        try:
            for future in as_completed([pool.submit(_window_job, job) for job in jobs]):
                yield future.result()
        except BaseException:  # Ctrl-C or a failed window: windows not started are not started
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops handing out windows and waits for the ones
    running (each writes its files aside, so a stopped build resumes where it was)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# One reader per worker process, so a stream's tables are read once per worker, not per window.
# It lives as long as the pool's processes: the parent never fills it, so a fork starts empty.
_WORKER_DATASETS: dict[str, DataDir] = {}


def _window_job(job: tuple[str, str, int, int, WindowSpec, str], dataset: DataDir | None = None) -> dict[str, Any]:
    data_dir, session, index, start, spec, split = job
    if dataset is None:
        dataset = _WORKER_DATASETS.setdefault(data_dir, DataDir(data_dir))
    rate = dataset.session_rate(session)
    frames = spec.frames(rate)
    window = Window(dataset, session, index, start, frames, rate, tuple(dataset.streams(session)), spec,
                    MEASURE_NOW, frames_valid=min(frames, dataset.session_frames(session) - start), split=split)
    audio = {stream: window.audio(stream) for stream in window.streams}  # read once, for quality and features
    quality = window_quality(window, audio)
    root = session_root(dataset.path, session)
    computed = 0
    for stream in window.streams:
        path = feature_path(root, stream, index)
        if path.is_file():
            continue
        features = window_features(window, stream, audio[stream])
        write_aside(path, functools.partial(_save_npz, arrays=features), durable=False)
        computed += 1
    return {"index": index, "start_sample": start, "frames": window.frames, "frames_valid": window.frames_valid,
            "events": quality["events"],
            "flags": quality["flags"], "split": split, "computed": computed > 0,
            "audio_seconds": computed * window.frames / rate}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)  # plain arrays; and no feature can be taken for the flag


def write_quality(dataset: DataDir) -> tuple[Path, list[dict[str, Any]]]:
    """Measure every stream and every window of ``dataset`` (the windows ``sendlearn sequences``
    stored, else the default cut) into ``sequences/quality.parquet``; the path and the rows."""
    rows: list[dict[str, Any]] = []
    for session in dataset.sessions():
        rows += [stream_quality(dataset.stream(session, name)) for name in dataset.streams(session)]
        for window in session_windows(dataset, session):
            rows += window_quality(window)["rows"]
    path = dataset.path / SEQUENCES / "quality.parquet"
    table = stamp(quality_table(rows))
    write_aside(path, lambda tmp: pq.write_table(table, tmp), durable=False)
    return path, rows
