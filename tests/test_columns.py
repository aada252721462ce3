"""The store's tables built on numpy buffers (store/columns.py) are the tables pyarrow's own
conversion makes of the same lists, and a render writes its dataset without importing pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendlearn.dataset.schema import BLOCKS_SCHEMA, EVENTS_SCHEMA, PARAMS_SCHEMA
from sendlearn.store.columns import arrow_column, arrow_table

_RANGES = {pa.int8(): 7, pa.int16(): 15, pa.int32(): 31, pa.int64(): 63}


def _values(field: pa.Field) -> st.SearchStrategy:
    kind = field.type
    if kind in _RANGES:
        bits = _RANGES[kind]
        value: st.SearchStrategy = st.integers(-(1 << bits), (1 << bits) - 1)
    elif kind == pa.uint64():
        value = st.integers(0, (1 << 64) - 1)
    elif kind == pa.float64():
        value = st.floats(allow_nan=False)
    elif kind == pa.bool_():
        value = st.booleans()
    elif kind == pa.string():
        value = st.text(max_size=12)
    else:
        value = st.binary(max_size=12)
    return st.one_of(st.none(), value) if field.nullable else value


def _rows(schema: pa.Schema) -> st.SearchStrategy:
    return st.integers(0, 40).flatmap(
        lambda n: st.fixed_dictionaries({f.name: st.lists(_values(f), min_size=n, max_size=n) for f in schema}))


@pytest.mark.parametrize("schema", [EVENTS_SCHEMA, BLOCKS_SCHEMA, PARAMS_SCHEMA], ids=["events", "blocks", "params"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_tables_equal_pyarrows_own_conversion(schema: pa.Schema, data: st.DataObject) -> None:
    columns = data.draw(_rows(schema))
    built = arrow_table(columns, schema)
    built.validate(full=True)
    assert built.equals(pa.table(columns, schema=schema))


def test_none_in_a_column_that_may_not_be_null_is_refused() -> None:
    with pytest.raises(ValueError, match="column sample holds None at row 1 but may not be null"):
        arrow_column([1, None], EVENTS_SCHEMA.field("sample"))


def test_a_render_writes_its_dataset_without_importing_pandas(tmp_path: Path) -> None:
    """pandas costs a render 0.4-0.7 s to import and nothing in the store needs it."""
    import mido

    song = tmp_path / "song.mid"
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("control_change", control=64, value=127, time=240),
                            mido.Message("note_off", note=60, velocity=0, time=480)])
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(song)
    program = ("import runpy, sys\n"
               f"sys.argv = ['sendlearn', 'render', {str(song)!r}, '--data-dir', {str(tmp_path / 'data')!r}]\n"
               "try:\n    runpy.run_module('sendlearn', run_name='__main__')\n"
               "except SystemExit as end:\n    assert not end.code, end.code\n"
               "print(sorted(m for m in ('pandas', 'pyarrow.compute') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    from sendlearn.dataset import Dataset

    data = Dataset(tmp_path / "data")
    (session,) = data.sessions()
    (name,) = data.streams(session)
    assert data.stream(session, name).events().column("kind").to_pylist() == ["note_on", "control_change", "note_off"]
