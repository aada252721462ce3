"""The dataset's format version (docs/dataset.md, "Format version"): written into stream.json and
every Parquet file's schema metadata; a newer major refused by the reader, naming both versions;
a file from before versions read as 1.0."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataset_session import render_session
from sendlearn.capture import StreamInfo
from sendlearn.dataset import FORMAT_VERSION, Dataset, FormatError, FormatTooNew, StreamSummary
from sendlearn.dataset.schema import FORMAT_KEY
from sendlearn.store.completed import open_stream_writer

TABLES = ("events.parquet", "blocks.parquet", "params.parquet")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_session(tmp_path_factory.getbasetemp() / "band")


@pytest.fixture
def data_dir(rendered: Path, tmp_path: Path) -> Path:
    """A copy of one stream of the rendered session, to be altered."""
    shutil.copytree(rendered / "sessions" / "band" / "lead", tmp_path / "sessions" / "band" / "lead")
    return tmp_path


def edit_summary(data_dir: Path, change) -> Path:  # noqa: ANN001 (a function of the JSON object)
    path = data_dir / "sessions" / "band" / "lead" / "stream.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
    return path


def test_the_store_writes_the_version_into_stream_json_and_every_table(rendered: Path) -> None:
    assert FORMAT_VERSION == "1.2"
    for folder in sorted((rendered / "sessions" / "band").iterdir()):
        info = json.loads((folder / "stream.json").read_text())
        assert info["format_version"] == FORMAT_VERSION
        assert StreamSummary.read(folder / "stream.json").to_json() == info  # typed, and back, unchanged
        for table in TABLES:
            assert pq.read_schema(folder / table).metadata[FORMAT_KEY] == FORMAT_VERSION.encode(), (folder, table)


def test_a_newer_major_stream_json_is_refused_naming_both_versions(data_dir: Path) -> None:
    path = edit_summary(data_dir, lambda info: info.update(format_version="2.0"))
    with pytest.raises(FormatTooNew) as refused:
        Dataset(data_dir).stream("band", "lead")
    assert str(refused.value) == (f"{path}: dataset format 2.0 is newer than this sendlearn reads (1.2): "
                                  "upgrade sendlearn")
    assert (refused.value.found, refused.value.supported) == ("2.0", "1.2")
    with pytest.raises(FormatTooNew):  # the store will not take it for one of its own either
        open_stream_writer(data_dir, StreamInfo("band", "lead", 48000, 1, 512), take="again")


def test_a_newer_major_parquet_file_is_refused_naming_both_versions(data_dir: Path) -> None:
    path = data_dir / "sessions" / "band" / "lead" / "events.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, FORMAT_KEY: b"3.1"}), path)
    stream = Dataset(data_dir).stream("band", "lead")
    assert len(stream.blocks()) > 0  # the other tables still read
    with pytest.raises(FormatTooNew, match=r"events\.parquet: dataset format 3\.1 is newer than this sendlearn "
                                           r"reads \(1\.2\): upgrade sendlearn"):
        stream.events()


def test_a_stream_json_from_before_versions_reads_as_1_0(data_dir: Path, rendered: Path) -> None:
    edit_summary(data_dir, lambda info: info.pop("format_version"))
    stream = Dataset(data_dir).stream("band", "lead")
    before = Dataset(rendered).stream("band", "lead")
    assert stream.facts.format_version == "1.0"
    # the same facts, but for the version they say they are in
    assert replace(stream.facts, format_version=FORMAT_VERSION) == before.facts
    assert {**stream.info, "format_version": FORMAT_VERSION} == before.info
    assert stream.events().equals(before.events())


def test_a_newer_minor_is_read_and_its_new_keys_kept(data_dir: Path) -> None:
    edit_summary(data_dir, lambda info: info.update(format_version="1.9", tags=["new"]))
    stream = Dataset(data_dir).stream("band", "lead")
    assert stream.facts.format_version == "1.9" and stream.facts.extra == {"tags": ["new"]}
    assert stream.info["tags"] == ["new"] and stream.state == "complete"


@pytest.mark.parametrize("change", [lambda info: info.update(format_version="two"),
                                    lambda info: info.pop("audio"),
                                    lambda info: info.update(gaps=[{"first_seq": 1}])])
def test_a_stream_json_of_another_shape_is_a_format_error(data_dir: Path, change) -> None:  # noqa: ANN001
    path = edit_summary(data_dir, change)
    with pytest.raises(FormatError, match=str(path)) as refused:
        StreamSummary.read(path)
    assert not isinstance(refused.value, FormatTooNew)
