"""Arrow tables from Python column lists, built on numpy buffers.

``pa.array`` and ``pa.table`` of Python lists import pandas the first time they run (pyarrow
asks whether the input is a pandas object), and pandas takes 0.4–0.7 s to import: for a
render, that was most of what writing its three small tables cost. ``pa.Array.from_buffers``
asks no such thing, so the store builds its columns here: numbers through numpy, strings and
bytes as an offsets buffer and one joined data buffer, None as a cleared validity bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.uint64(): np.uint64, pa.float64(): np.float64}
_MAX_BYTES = (1 << 31) - 1  # binary and string keep 32-bit offsets


def arrow_table(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """``columns`` (every field of ``schema``, by name) as a table of ``schema``."""
    arrays = [arrow_column(columns[field.name], field) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def arrow_column(values: Sequence[Any], field: pa.Field) -> pa.Array:
    """One column. None is null where ``field`` is nullable; elsewhere a ValueError."""
    count = len(values)
    # ``None in values`` is one C loop; the rows are listed only when there is one
    nulls = [index for index, value in enumerate(values) if value is None] if None in values else []
    if nulls and not field.nullable:
        raise ValueError(f"column {field.name} holds None at row {nulls[0]} but may not be null")
    validity = _validity(count, nulls) if nulls else None
    kind = field.type
    if kind == pa.bool_():
        bits = np.packbits(np.fromiter(values, dtype=bool, count=count), bitorder="little")
        return pa.Array.from_buffers(kind, count, [validity, pa.py_buffer(bits)], null_count=len(nulls))
    if kind in (pa.string(), pa.binary()):
        data = [b"" if value is None else value.encode() if isinstance(value, str) else bytes(value)
                for value in values]
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=count), out=offsets[1:])
        if offsets[-1] > _MAX_BYTES:
            raise ValueError(f"column {field.name} holds {offsets[-1]} bytes, more than 32-bit offsets reach")
        return pa.Array.from_buffers(kind, count, [validity, pa.py_buffer(offsets.astype(np.int32)),
                                                   pa.py_buffer(b"".join(data))], null_count=len(nulls))
    dtype = _NUMPY.get(kind)
    if dtype is None:
        raise TypeError(f"column {field.name}: no numpy buffer for {kind}")
    filled = values if not nulls else [0 if value is None else value for value in values]
    numbers = np.fromiter(filled, dtype=dtype, count=count)
    return pa.Array.from_buffers(kind, count, [validity, pa.py_buffer(numbers)], null_count=len(nulls))


def _validity(count: int, nulls: list[int]) -> pa.Buffer:
    valid = np.ones(count, dtype=bool)
    valid[nulls] = False
    return pa.py_buffer(np.packbits(valid, bitorder="little"))
