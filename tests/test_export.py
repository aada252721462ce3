"""``sendlearn export``: every format read back by its own library, every sample checked against the
same window read through ``sendlearn.dataset`` (tests/export_session.py: a real render, float32 and
16-/24-bit FLAC sources)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from export_session import check_sample, make_data, truth
from sendlearn.cli.main import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("export"))


def run_export(fmt: str, data_dir: Path, out: Path, *flags: str) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", fmt, "--data-dir", str(data_dir), "--out", str(out), "--json", *flags]) == 0
    return json.loads(stdout.getvalue())


def decode(data: bytes) -> tuple[np.ndarray, str]:
    audio, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), soundfile.info(io.BytesIO(data)).subtype


# --- parquet: Hugging Face datasets -------------------------------------------------------------

def test_parquet_loads_with_datasets_as_an_audio_column_and_every_row_is_its_window(data_dir: Path,
                                                                                   tmp_path: Path) -> None:
    import datasets
    import yaml

    summary = run_export("parquet", data_dir, tmp_path / "pq", "--include-flagged")
    files = sorted((tmp_path / "pq" / "data").glob("*.parquet"))
    assert [f.name for f in files] == ["train-00000-of-00001.parquet"] and summary["files"] == [str(files[0])]
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    assert isinstance(ds.features["audio"], datasets.Audio)
    # the card's YAML is the same features as the schema's metadata
    card = yaml.safe_load((tmp_path / "pq" / "README.md").read_text().split("---")[1])
    assert card["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert datasets.Features._from_yaml_list(card["dataset_info"]["features"]) == ds.features
    expected = truth(data_dir)
    assert len(ds) == len(expected) == summary["samples"] == 6 * 4 + 3 * 2  # with each session's padded last window
    rows = ds.cast_column("audio", datasets.Audio(decode=False))
    for row in rows:
        window, stream = expected[(row["session"], row["stream"], row["window"])]
        audio, subtype = decode(row["audio"]["bytes"])
        assert row["audio"]["path"].endswith(".flac" if row["session"] == "pcm" else ".wav")
        dtypes = {name: _leaf(feature) for name, feature in ds.features["features"].items()}
        got = {**row, "audio": audio, "features": {k: np.asarray(v, dtype=dtypes[k]) for k, v in row["features"].items()}}
        check_sample(got, window, stream)
        assert subtype == row["audio_subtype"]


def _leaf(feature: object) -> str:
    while not hasattr(feature, "dtype"):
        feature = feature.feature  # type: ignore[attr-defined]
    return feature.dtype  # type: ignore[attr-defined, no-any-return]


def test_flagged_windows_are_left_out_unless_asked(data_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    summary = run_export("parquet", data_dir, tmp_path / "pq")
    table = pq.read_table(tmp_path / "pq" / "data", columns=["session", "stream", "window", "flags"])
    keys = set(zip(*(table[c].to_pylist() for c in ("session", "stream", "window")), strict=True))
    assert keys == set(truth(data_dir, include_flagged=False)) and len(keys) == 6
    assert summary["skipped_windows"] == 6 and table["flags"].to_pylist() == [[]] * 6
    assert main(["export", "parquet", "--data-dir", str(data_dir), "--out", str(tmp_path / "pq")]) == 2  # not empty
    # sessions shorter than one window: each is one padded window (band's is flagged, pcm's exported)
    short = run_export("parquet", data_dir, tmp_path / "short", "--window", "30", "--overlap", "5")
    rows = pq.read_table(tmp_path / "short" / "data", columns=["session", "frames", "frames_valid"]).to_pylist()
    assert (short["samples"], short["skipped_windows"]) == (2, 1)
    assert rows == [{"session": "pcm", "frames": 30 * 48000, "frames_valid": 340 * 512}] * 2
    everything_flagged = run_export("parquet", data_dir, tmp_path / "flagged", "--session", "band")
    assert everything_flagged["samples"] == 0 and everything_flagged["why_empty"].startswith("all 6 windows are flagged")
    assert main(["export", "parquet", "--data-dir", str(data_dir), "--out", str(tmp_path / "none"),
                 "--session", "nope"]) == 2
    assert f"--session: no session 'nope' in {data_dir}" in capsys.readouterr().err


# --- webdataset -----------------------------------------------------------------------------------

def test_webdataset_shards_read_by_webdataset_are_the_windows(data_dir: Path, tmp_path: Path) -> None:
    import webdataset

    run_export("webdataset", data_dir, tmp_path / "wds", "--include-flagged")
    shards = sorted(str(p) for p in (tmp_path / "wds" / "train").glob("shard-*.tar"))
    assert [Path(s).name for s in shards] == ["shard-000000.tar"]
    expected = truth(data_dir)
    seen = set()
    for item in webdataset.WebDataset(shards, shardshuffle=False).decode():  # npy: numpy.load, no pickles
        meta = item["json"]
        key = (meta["session"], meta["stream"], meta["window"])
        assert item["__key__"] == f"{key[0]}__{key[1]}__{key[2]:06d}" and "." not in item["__key__"]
        window, stream = expected[key]
        (kind,) = [k for k in ("wav", "flac") if k in item]
        assert kind == meta["audio_format"] == ("flac" if key[0] == "pcm" else "wav")
        # .decode() leaves audio as bytes (its audio decoder needs torchaudio): the file itself
        audio, subtype = decode(item[kind])
        assert subtype == meta["audio_subtype"]
        features = {name[:-4]: value for name, value in item.items() if name.endswith(".npy")}
        got = {**meta, "audio": audio, "midi_sample": [s for s, _ in meta["midi"]],
               "midi_data": [bytes(d) for _, d in meta["midi"]], "features": features}
        check_sample(got, window, stream)
        seen.add(key)
    assert seen == set(expected)


# --- hdf5 and pytorch -------------------------------------------------------------------------------

def test_hdf5_read_by_h5py_is_the_windows_and_its_torch_dataset_loads_with_workers(data_dir: Path,
                                                                                     tmp_path: Path) -> None:
    import h5py
    import torch

    from sendlearn.dataset.export.hdf5 import read_sample
    from sendlearn.dataset.torch import HDF5WindowDataset

    run_export("hdf5", data_dir, tmp_path / "h5", "--include-flagged")
    path = tmp_path / "h5" / "windows.h5"
    assert sorted(p.name for p in (tmp_path / "h5").iterdir()) == ["windows.h5"]
    expected = truth(data_dir)
    with h5py.File(path, "r") as f:
        assert (f.attrs["format"], int(f.attrs["version"]), int(f.attrs["samples"])) == ("sendlearn-windows", 1, 30)
        keys = [k.decode() for k in f["index"]["key"]]
        assert sorted(keys) == sorted(f["samples"]) and len(keys) == len(expected)
        for key in keys:
            group = f["samples"][key]
            assert group["audio"].dtype == np.float32
            got = read_sample(group)
            check_sample(got, *expected[(got["session"], got["stream"], got["window"])])
    loader = torch.utils.data.DataLoader(HDF5WindowDataset(path), batch_size=None, num_workers=2)
    items = list(loader)
    assert len(items) == len(expected)
    for item in items:
        window, stream = expected[(item["session"], item["stream"], item["window"])]
        check_sample(_numpy(item), window, stream)


def _numpy(item: dict) -> dict:
    return {**item, "audio": item["audio"].numpy(), "midi_sample": item["midi_sample"].tolist(),
            "features": {k: v.numpy() for k, v in item["features"].items()}}


def test_pytorch_window_dataset_with_workers_and_the_files_torch_load_reads(data_dir: Path, tmp_path: Path) -> None:
    import torch

    from sendlearn.dataset.torch import WindowDataset, collate

    expected = truth(data_dir)
    data = WindowDataset(data_dir, include_flagged=True)
    assert len(data) == len(expected)
    batches = list(torch.utils.data.DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate))
    items = [{k: v[i] for k, v in batch.items()} for batch in batches for i in range(len(batch["audio"]))]
    assert sorted((i["session"], i["stream"], i["window"]) for i in items) == sorted(expected)
    for item in items:
        check_sample(_numpy(item), *expected[(item["session"], item["stream"], item["window"])])
    assert len(WindowDataset(data_dir)) == len(truth(data_dir, include_flagged=False)) == 6

    summary = run_export("pytorch", data_dir, tmp_path / "pt", "--include-flagged")
    files = sorted((tmp_path / "pt").glob("*.pt"))
    assert [f.name for f in files] == ["train-00000.pt"] and summary["samples"] == len(expected)
    loaded = torch.load(files[0], weights_only=True)
    assert (loaded["format"], loaded["version"], len(loaded["samples"])) == ("sendlearn-windows", 1, len(expected))
    for item in loaded["samples"]:
        check_sample(_numpy(item), *expected[(item["session"], item["stream"], item["window"])])


# --- tfrecord: written with the tfrecord package, read with tfrecord_lite (nanopb, its own parser) ---

def records(path: Path) -> list[bytes]:
    """The file's records, each frame's length and data CRCs checked as the TFRecord format defines
    them (masked CRC-32C), independently of both libraries."""
    import struct

    import crc32c

    def masked(data: bytes) -> int:
        crc = crc32c.crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    out, raw, at = [], path.read_bytes(), 0
    while at < len(raw):
        (length,), (length_crc,) = struct.unpack_from("<Q", raw, at), struct.unpack_from("<I", raw, at + 8)
        assert length_crc == masked(raw[at:at + 8])
        data = raw[at + 12:at + 12 + length]
        assert struct.unpack_from("<I", raw, at + 12 + length)[0] == masked(data)
        out.append(data)
        at += 16 + length
    return out


def test_tfrecord_read_by_an_independent_parser_is_the_windows(data_dir: Path, tmp_path: Path) -> None:
    from tfrecord_lite import tf_record_iterator

    run_export("tfrecord", data_dir, tmp_path / "tfr", "--include-flagged")
    files = sorted((tmp_path / "tfr").glob("*.tfrecord"))
    assert [f.name for f in files] == ["train-00000.tfrecord"]
    expected = truth(data_dir)
    assert len(records(files[0])) == len(expected)
    seen = set()
    for example in tf_record_iterator(str(files[0])):
        text = {k: example[k][0].decode() for k in ("session", "stream", "audio_format", "audio_subtype")}
        ints = {k: int(example[k][0]) for k in ("window", "start_sample", "frames", "frames_valid", "sample_rate",
                                                   "channels")}
        key = (text["session"], text["stream"], ints["window"])
        audio, subtype = decode(example["audio"][0])
        assert subtype == text["audio_subtype"] and text["audio_format"] == ("flac" if key[0] == "pcm" else "wav")
        features = {}
        for name in [k.split("/")[1] for k in example if k.startswith("features/") and k.count("/") == 1]:
            dtype = np.dtype(example[f"features/{name}/dtype"][0].decode())
            shape = tuple(int(n) for n in example[f"features/{name}/shape"])
            features[name] = np.frombuffer(example[f"features/{name}"][0], dtype=dtype).reshape(shape)
        meta = json.loads(example["meta"][0])
        got = {**text, **ints, **meta, "audio": audio, "midi_sample": example.get("midi_sample", np.zeros(0)).tolist(),
               "midi_data": example.get("midi_data", []), "flags": [f.decode() for f in example.get("flags", [])],
               "features": features}
        check_sample(got, *expected[key])
        seen.add(key)
    assert seen == set(expected)


# --- stopping -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_export_exits_0_and_leaves_no_part_of_itself(data_dir: Path, tmp_path: Path, sig: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "h5"
    # 2 s windows are stored; 0.1 s ones are cut now and their features computed: hundreds of samples
    child = subprocess.Popen([sys.executable, "-m", "sendlearn", "export", "hdf5", "--data-dir", str(data_dir),
                              "--session", "band", "--out", str(out), "--include-flagged", "--window", "0.1",
                              "--overlap", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # the machine is shared: no judging by time
    while not (out / ".windows.h5.part").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the export ended before it could be stopped"
    child.send_signal(getattr(signal, sig))
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr.decode()
    assert list(out.iterdir()) == [], stderr.decode()
    assert b"stopped; nothing of the hdf5 export is left" in stderr


def test_shards_roll_at_their_size_and_every_sample_is_in_exactly_one(data_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import torch
    import webdataset

    from sendlearn.dataset.export import export

    expected = set(truth(data_dir))
    result = export("parquet", data_dir, tmp_path / "pq", include_flagged=True, shard_bytes=3_000_000,
                    row_group_bytes=1_000_000)
    names = [Path(f).name for f in result.files]
    count = len(names)
    assert count >= 3 and names == [f"train-{k:05d}-of-{count:05d}.parquet" for k in range(count)]
    keys = []
    for name in result.files:
        meta = pq.ParquetFile(name).metadata
        assert Path(name).stat().st_size <= 3_000_000 + 100_000  # a shard rolls before a row group passes it (+ footer)
        assert meta.num_row_groups >= 1 and all(meta.row_group(g).total_byte_size <= 3_000_000
                                                for g in range(meta.num_row_groups))
        keys += pq.read_table(name, columns=["session", "stream", "window"]).to_pylist()
    assert sorted((k["session"], k["stream"], k["window"]) for k in keys) == sorted(expected)
    result = export("webdataset", data_dir, tmp_path / "wds", include_flagged=True, shard_samples=5)
    assert [Path(f).name for f in result.files] == [f"shard-{k:06d}.tar" for k in range(6)]
    got = [(i["json"]["session"], i["json"]["stream"], i["json"]["window"])
           for i in webdataset.WebDataset(result.files, shardshuffle=False).decode()]
    assert sorted(got) == sorted(expected)
    result = export("pytorch", data_dir, tmp_path / "pt", include_flagged=True, shard_bytes=5_000_000)
    got = [(i["session"], i["stream"], i["window"]) for f in result.files
           for i in torch.load(f, weights_only=True)["samples"]]
    assert len(result.files) > 3 and sorted(got) == sorted(expected)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowing, on purpose
def test_a_stop_swallowed_by_a_finaliser_still_stops_the_command() -> None:
    """The KeyboardInterrupt of SIGTERM is lost when it lands in a weakref callback (CI saw an export
    go on and publish its file): ``check`` raises it again, and the export calls it per sample."""
    import gc
    import signal
    import weakref

    from sendlearn.cli.signals import interrupted_by_signals

    class Held:
        pass

    with interrupted_by_signals() as interrupt:
        interrupt.check()  # no signal yet: nothing raised
        held = Held()
        ref = weakref.ref(held, lambda _: interrupt(signal.SIGTERM, None))
        del held  # the callback's KeyboardInterrupt is printed and ignored
        gc.collect()
        assert ref() is None
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
