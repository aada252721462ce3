"""Splits (issue 22, part 1) on real renders: every session in one split, decided by a stable hash of
its id (or a session fact), never moved by adding sessions; and every export's splits read back by its
own library (datasets, webdataset, h5py, tfrecord_lite, torch)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from export_session import check_sample, make_data, truth
from sendlearn.cli.main import main
from sendlearn.dataset import Dataset
from split_corpus import render_corpus

FIRST, MORE = ["s00", "s01", "s02", "s03"], ["s04", "s05", "s06", "s07"]


def run(*argv: str, code: int = 0) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        got = main(list(argv))
    assert got == code, stderr.getvalue()
    return stdout.getvalue(), stderr.getvalue()


def sequences(data_dir: Path, *flags: str) -> dict:
    out, _ = run("sequences", "--data-dir", str(data_dir), "--window", "2", "--overlap", "0.5", "--min-events", "1",
                 "--workers", "1", "--json", *flags)
    return json.loads(out)


def splits_on_disk(data_dir: Path) -> dict[str, set[str]]:
    """session -> the splits its windows.parquet rows name (one, if nothing leaks)."""
    return {path.parent.name: set(pq.read_table(path, columns=["split"])["split"].to_pylist())
            for path in (data_dir / "sequences").glob("*/windows.parquet")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_corpus(tmp_path_factory.mktemp("splits") / "data", FIRST)


def test_every_session_is_in_one_split_and_adding_sessions_moves_none(corpus: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(corpus, data_dir)
    first = sequences(data_dir, "--split", "50/25/25")
    before = {s["session"]: s["split"] for s in first["sessions"]}
    assert set(before) == set(FIRST) and first["split"]["spec"] == "50/25/25"
    on_disk = splits_on_disk(data_dir)
    assert {s: {split} for s, split in before.items()} == on_disk  # every window of a session in its one split
    dataset = Dataset(data_dir)
    for session, split in before.items():
        windows = list(dataset.windows(session))
        assert windows and {w.split for w in windows} == {split}

    render_corpus(data_dir, MORE)  # more sessions in the same data dir
    second = sequences(data_dir, "--split", "50/25/25")
    after = {s["session"]: s["split"] for s in second["sessions"]}
    assert set(after) == set(FIRST + MORE)
    assert {s: after[s] for s in FIRST} == before  # no existing session moved
    assert all(len(splits) == 1 for splits in splits_on_disk(data_dir).values())
    assert len(set(after.values())) >= 2  # the hash spreads them

    # the assignment is a function of the session id alone: a data dir of other sessions agrees
    alone = tmp_path / "alone"
    render_corpus(alone, MORE)
    assert {s["session"]: s["split"] for s in sequences(alone, "--split", "50/25/25")["sessions"]} == \
        {s: after[s] for s in MORE}

    # another split asked for rewrites the windows' split and keeps their features
    features = sorted((data_dir / "sequences" / "s00" / "features").rglob("*.npz"))
    again = sequences(data_dir, "--split", "0/0/100")
    assert {s["split"] for s in again["sessions"]} == {"test"} and all(s["computed"] == 0 for s in again["sessions"])
    assert sorted((data_dir / "sequences" / "s00" / "features").rglob("*.npz")) == features
    assert set().union(*splits_on_disk(data_dir).values()) == {"test"}


def test_split_by_a_session_fact_groups_sessions_and_a_missing_key_warns(corpus: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(corpus, data_dir)
    # every rendered stream's meta has voices = 8: one group, one split
    grouped = sequences(data_dir, "--split", "34/33/33", "--split-by", "voices")
    assert len({s["split"] for s in grouped["sessions"]}) == 1
    assert {s["split_key"] for s in grouped["sessions"]} == {"voices=8"} and grouped["split"]["fallback_sessions"] == 0
    out, err = run("sequences", "--data-dir", str(data_dir), "--window", "2", "--overlap", "0.5", "--min-events", "1",
                   "--workers", "1", "--split-by", "performer")
    assert "performer" in err and "warning" in err  # no session has it: named, and ids used instead
    by_id = sequences(data_dir)
    fallen = sequences(data_dir, "--split-by", "performer")
    assert [s["split"] for s in fallen["sessions"]] == [s["split"] for s in by_id["sessions"]]
    assert fallen["split"]["fallback_sessions"] == len(FIRST)


@pytest.mark.parametrize("spec", ["80/10", "80/10/20", "a/b/c", "50/50/-0", "100/0/0/0"])
def test_a_split_that_is_not_three_percentages_summing_to_100_exits_2(corpus: Path, spec: str) -> None:
    _, err = run("sequences", "--data-dir", str(corpus), "--split", spec, code=2)
    assert "--split" in err and spec in err


# --- every export's splits, read back by its own library -------------------------------------------------

@pytest.fixture(scope="module")
def two_splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """export_session's data (sessions band and pcm) split 40/30/30: band in train, pcm in validation
    (their ids' hashes are 0.085 and 0.615)."""
    data_dir = make_data(tmp_path_factory.mktemp("split-exports"))
    summary = sequences_export(data_dir)
    assert {s["session"]: s["split"] for s in summary["sessions"]} == {"band": "train", "pcm": "validation"}
    return data_dir


def sequences_export(data_dir: Path) -> dict:
    from dataset_session import OVERLAP, WINDOW

    out, _ = run("sequences", "--data-dir", str(data_dir), "--window", str(WINDOW), "--overlap", str(OVERLAP),
                 "--min-events", "3", "--workers", "2", "--split", "40/30/30", "--json")
    return json.loads(out)


def export(fmt: str, data_dir: Path, out: Path) -> dict:
    stdout, _ = run("export", fmt, "--data-dir", str(data_dir), "--out", str(out), "--include-flagged", "--json")
    return json.loads(stdout)


def expected_split(key: tuple[str, str, int]) -> str:
    return {"band": "train", "pcm": "validation"}[key[0]]


def test_parquet_splits_load_as_a_dataset_dict(two_splits: Path, tmp_path: Path) -> None:
    import datasets

    export("parquet", two_splits, tmp_path / "pq")
    names = sorted(p.name for p in (tmp_path / "pq" / "data").iterdir())
    assert names == ["train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    ds = datasets.load_dataset(str(tmp_path / "pq"), cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds, datasets.DatasetDict) and sorted(ds) == ["train", "validation"]
    expected = truth(two_splits)
    seen = set()
    for split, rows in ds.items():
        for row in rows.select_columns(["session", "stream", "window", "split"]):
            key = (row["session"], row["stream"], row["window"])
            assert row["split"] == split == expected_split(key)
            seen.add(key)
    assert seen == set(expected)
    card = (tmp_path / "pq" / "README.md").read_text()
    assert "split 40/30/30" in card and "by a hash of their id" in card


def test_webdataset_hdf5_tfrecord_pytorch_tokens_splits_read_by_their_libraries(two_splits: Path,
                                                                               tmp_path: Path) -> None:
    import datasets
    import h5py
    import torch
    import webdataset
    from tfrecord_lite import tf_record_iterator

    from sendlearn.dataset.torch import HDF5WindowDataset, WindowDataset

    expected = truth(two_splits)
    # webdataset: {split}/shard-NNNNNN.tar
    export("webdataset", two_splits, tmp_path / "wds")
    assert sorted(p.name for p in (tmp_path / "wds").iterdir()) == ["train", "validation"]
    seen = set()
    for split in ("train", "validation"):
        shards = sorted(str(p) for p in (tmp_path / "wds" / split).glob("shard-*.tar"))
        assert [Path(s).name for s in shards] == ["shard-000000.tar"]
        for item in webdataset.WebDataset(shards, shardshuffle=False).decode():
            key = (item["json"]["session"], item["json"]["stream"], item["json"]["window"])
            assert item["json"]["split"] == split == expected_split(key)
            seen.add(key)
    assert seen == set(expected)

    # hdf5: a split column in the index
    export("hdf5", two_splits, tmp_path / "h5")
    with h5py.File(tmp_path / "h5" / "windows.h5", "r") as f:
        index = f["index"][()]
        got = {(r["session"].decode(), r["stream"].decode(), int(r["window"])): r["split"].decode() for r in index}
        assert got == {key: expected_split(key) for key in expected}
        assert {f["samples"][r["key"].decode()].attrs["split"] for r in index} == {"train", "validation"}
    assert {i["session"] for i in HDF5WindowDataset(tmp_path / "h5" / "windows.h5", split="validation").index} == {"pcm"}

    # tfrecord: {split}-NNNNN.tfrecord
    export("tfrecord", two_splits, tmp_path / "tfr")
    assert sorted(p.name for p in (tmp_path / "tfr").iterdir()) == ["train-00000.tfrecord", "validation-00000.tfrecord"]
    seen = set()
    for path in sorted((tmp_path / "tfr").iterdir()):
        for example in tf_record_iterator(str(path)):
            key = (example["session"][0].decode(), example["stream"][0].decode(), int(example["window"][0]))
            assert example["split"][0].decode() == path.name.split("-")[0] == expected_split(key)
            seen.add(key)
    assert seen == set(expected)

    # pytorch: {split}-NNNNN.pt, and WindowDataset(..., split=...)
    export("pytorch", two_splits, tmp_path / "pt")
    assert sorted(p.name for p in (tmp_path / "pt").iterdir()) == ["train-00000.pt", "validation-00000.pt"]
    seen = set()
    for split in ("train", "validation"):
        loaded = torch.load(tmp_path / "pt" / f"{split}-00000.pt", weights_only=True)
        assert loaded["split"] == split
        for item in loaded["samples"]:
            key = (item["session"], item["stream"], item["window"])
            assert item["split"] == split == expected_split(key)
            seen.add(key)
    assert seen == set(expected)
    validation = WindowDataset(two_splits, include_flagged=True, split="validation")
    assert len(validation) == sum(1 for k in expected if k[0] == "pcm")
    item = validation[0]
    assert item["split"] == "validation"
    check_sample({k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
                 | {"features": {k: v.numpy() for k, v in item["features"].items()}},
                 *expected[(item["session"], item["stream"], item["window"])])
    with pytest.raises(ValueError, match="split"):
        WindowDataset(two_splits, split="dev")

    # tokens: the split column and data/{split}-* files
    run("export", "tokens", "--tokenizer", "REMI", "--data-dir", str(two_splits), "--out", str(tmp_path / "tok"),
        "--include-flagged", "--json")
    ds = datasets.load_dataset(str(tmp_path / "tok"), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds) == ["train", "validation"]
    for split, rows in ds.items():
        assert {expected_split((s, "", 0)) for s in rows["session"]} == {split} == set(rows["split"])


def test_report_shows_hours_windows_and_sessions_per_split(two_splits: Path, tmp_path: Path) -> None:
    out, _ = run("report", "--data-dir", str(two_splits), "--out", str(tmp_path / "r.html"), "--max-windows", "2",
                 "--json")
    splits = json.loads(out)["splits"]
    dataset = Dataset(two_splits)
    for split, session in (("train", "band"), ("validation", "pcm")):
        windows = list(dataset.windows(session))
        assert splits[split]["sessions"] == 1 and splits[split]["windows"] == len(windows)
        assert splits[split]["hours"] == pytest.approx(dataset.session_frames(session)
                                                       / dataset.session_rate(session) / 3600, rel=0.01)
    assert splits["test"] == {"hours": 0.0, "windows": 0, "sessions": 0}
    assert "<h2>Splits</h2>" in (tmp_path / "r.html").read_text()


def test_split_by_a_fact_of_the_session_file_keeps_its_sessions_together(tmp_path: Path) -> None:
    from split_corpus import write_melody

    folder = tmp_path / "files"
    folder.mkdir()
    performers = {"a1": "ana", "a2": "ana", "a3": "ana", "b1": "ben", "b2": "ben", "x1": None}
    for name, performer in performers.items():
        write_melody(folder / f"{name}.mid", 3.0, name)
        meta = f'\n[meta]\nperformer = "{performer}"\npiece = "{name}"\n' if performer else ""
        (folder / f"{name}.toml").write_text(
            f'name = "{name}"\nsample_rate = 48000\nblock_size = 512\n{meta}\n[[track]]\nname = "keys"\n'
            f'midi = "{name}.mid"\ninstrument = {{ faust = "poly_saw", voices = 8 }}\n')
    data_dir = tmp_path / "data"
    run("render", *[str(folder / f"{n}.toml") for n in performers], "--data-dir", str(data_dir), "--json")
    meta = json.loads((data_dir / "sessions" / "a1" / "keys" / "stream.json").read_text())["meta"]
    assert meta["performer"] == "ana" and meta["piece"] == "a1"
    summary = sequences(data_dir, "--split", "34/33/33", "--split-by", "performer")
    got = {s["session"]: (s["split"], s["split_key"], s["split_fallback"]) for s in summary["sessions"]}
    assert len({got[n][0] for n in ("a1", "a2", "a3")}) == 1 and len({got[n][0] for n in ("b1", "b2")}) == 1
    assert got["a1"][1] == "performer=ana" and got["b2"][1] == "performer=ben"
    assert got["x1"][1:] == ("session=x1", True) and summary["split"]["fallback_sessions"] == 1
    out, _ = run("export", "tokens", "--tokenizer", "TSD", "--data-dir", str(data_dir), "--out", str(tmp_path / "t"),
                 "--include-flagged", "--json")
    assert "1 of 6 sessions have no `performer`" in (tmp_path / "t" / "README.md").read_text()
