"""PyTorch datasets of training windows (docs/export.md, "pytorch").

    from torch.utils.data import DataLoader
    from sendlearn.dataset.torch import WindowDataset, HDF5WindowDataset, collate

    data = WindowDataset("sendlearn-data")               # the data directory, read lazily per item
    data = WindowDataset("sendlearn-data", split="train")   # one split: train, validation or test
    data = HDF5WindowDataset("out/hdf5/windows.h5")      # or an hdf5 export, opened lazily per worker
    loader = DataLoader(data, batch_size=None, num_workers=2)   # one item at a time
    loader = DataLoader(data, batch_size=8, num_workers=2, collate_fn=collate)  # lists per key

An item is one (session, stream, window): ``audio`` float32 ``(channels, frames)``, ``midi_sample``
int64 (relative to the window), ``midi_data`` (list of bytes), ``features`` (name -> tensor, its own
dtype), ``playhead``, ``timeline``, ``params``, ``flags`` and the window's ids and sizes: the same
keys and values in both datasets and in ``sendlearn export pytorch``'s files (``torch.load``).

Both datasets open their files on first use in the process that reads (a forked worker opens its
own), so ``num_workers > 0`` works; nothing is read at construction but the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from .export.samples import Plan, Sample, iter_samples, plan, window_sample
from .facade import Dataset
from .splits import SPLITS


def sample_item(sample: Sample | dict[str, Any]) -> dict[str, Any]:
    """A ``Sample`` (or the dict an hdf5 group reads as) as a torch item."""
    # a field by name: each has its own type (ids, sizes, arrays, dicts of lists)
    get: Callable[[str], Any] = sample.get if isinstance(sample, dict) else lambda name: getattr(sample, name)
    subtype = get("audio_subtype") if isinstance(sample, dict) else sample.subtype
    features = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in get("features").items()}
    return {
        "session": get("session"), "stream": get("stream"), "window": int(get("window")),
        "split": get("split"),
        "start_sample": int(get("start_sample")), "frames": int(get("frames")),
        "frames_valid": int(get("frames_valid")), "sample_rate": int(get("sample_rate")),
        "channels": int(get("channels")), "audio_subtype": subtype,
        "audio": torch.from_numpy(np.ascontiguousarray(get("audio"), dtype=np.float32)),
        "midi_sample": torch.from_numpy(np.asarray(get("midi_sample"), dtype=np.int64)),
        "midi_data": [bytes(m) for m in get("midi_data")], "midi_timing_error": list(get("midi_timing_error")),
        "playhead": dict(get("playhead")), "timeline": {k: list(v) for k, v in get("timeline").items()},
        "params": {k: list(v) for k, v in get("params").items()},
        "features": features,
        "flags": list(get("flags")),
        "midi_file": bytes(get("midi_file")),
        "midi_notes": torch.from_numpy(np.asarray(get("midi_notes"), dtype=np.int64).reshape(-1, 4)),
    } | _mfcc(features)


def _mfcc(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``mfcc`` at the top level too (the seed's snippet reads it there): the same tensor."""
    return {"mfcc": features["mfcc"]} if "mfcc" in features else {}


def collate(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A batch as lists per key (windows of different streams differ in channels and event counts)."""
    return {key: [item[key] for item in items] for key in items[0]} if items else {}


class WindowDataset(TorchDataset[dict[str, Any]]):
    """Windows of a data directory through ``sendlearn.dataset``: the ones ``sendlearn sequences``
    stored (else cut with ``window``/``overlap``/``min_events``), flagged ones left out unless
    ``include_flagged``, only those of ``split`` (train, validation or test) when given; one item
    per (session, stream, window)."""

    def __init__(self, data_dir: str | os.PathLike[str], sessions: list[str] | None = None,
                 include_flagged: bool = False, with_features: bool = True, split: str | None = None,
                 **spec: Any) -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split {split!r}: one of {', '.join(SPLITS)}")
        self.data_dir, self.with_features = Path(data_dir), with_features
        self.spec = {k: v for k, v in spec.items() if v is not None}
        self.plan = plan(self.data_dir, sessions, include_flagged, **self.spec)
        if split is not None:
            self.plan = Plan([w for w in self.plan.windows if self.plan.splits[w[0]]["split"] == split],
                             self.plan.skipped, sum(w[2] for w in self.plan.windows
                                                    if self.plan.splits[w[0]]["split"] == split),
                             {s: v for s, v in self.plan.splits.items() if v["split"] == split})
        self.items: list[tuple[str, int, str]] = []
        dataset = Dataset(self.data_dir)
        for session, index, _ in self.plan.windows:
            self.items += [(session, index, stream) for stream in dataset.streams(session)]
        self._pid: int | None = None
        self._windows: dict[str, dict[int, Any]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        session, index, stream = self.items[i]
        if self._pid != os.getpid():  # first use in this process: a reader of its own
            self._pid, self._dataset, self._windows = os.getpid(), Dataset(self.data_dir), {}
        if session not in self._windows:
            self._windows[session] = {w.index: w for w in self._dataset.windows(session, **self.spec)}
        return sample_item(window_sample(self._windows[session][index], stream, self.with_features))

    def __iter__(self) -> Iterator[dict[str, Any]]:  # in order, one session's tables at a time
        for sample in iter_samples(self.data_dir, self.plan, self.with_features, **self.spec):
            yield sample_item(sample)

    def __getstate__(self) -> dict[str, Any]:  # spawned workers get the index, not this process's reader
        return {k: v for k, v in self.__dict__.items() if k not in ("_dataset", "_windows", "_pid")} | {
            "_pid": None, "_windows": {}}


class HDF5WindowDataset(TorchDataset[dict[str, Any]]):
    """The items of a ``sendlearn export hdf5`` file (those of ``split`` when given), read with
    h5py; the file is opened on first use in each process (h5py handles do not survive a fork)."""

    def __init__(self, path: str | os.PathLike[str], split: str | None = None) -> None:
        import h5py

        from .export.hdf5 import read_index

        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            self.index = [row for row in read_index(f) if split is None or row["split"] == split]
        self._pid: int | None = None
        self._file: Any = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import h5py

        from .export.hdf5 import read_sample

        if self._pid != os.getpid():
            self._pid, self._file = os.getpid(), h5py.File(self.path, "r")
        return sample_item(read_sample(self._file["samples"][self.index[i]["key"]]))

    def __getstate__(self) -> dict[str, Any]:  # spawned workers get the index, not the handle
        return {**self.__dict__, "_file": None, "_pid": None}
