"""``sendlearn.dataset``: the public reader of a data directory (docs/dataset.md).

    from sendlearn.dataset import Dataset

    data = Dataset("sendlearn-data")
    keys = data.stream("demo", "keys")
    keys.audio(48000, 96000)          # float32 (channels, 48000): seconds 1-2, read by seeking
    keys.events(48000, 96000)         # events.parquet rows in that range (absolute samples)
    keys.valid(48000, 96000)          # False in gaps and degraded or missing audio
    for window in data.windows("demo"):
        window.audio("keys"), window.events("keys"), window.features("keys")

Status, sequences, quality, exports and the tests read a data directory through this package;
nothing else parses its files. It imports no host and no wire library.

Layers, each importing only those below it (an import-linter contract in pyproject.toml):
    export, torch, report        what is made from a dataset
    facade                       ``Dataset``: the reader plus ``windows(session)``
    sequences                    the ``sequences/`` cache: stored windows, features, quality
    measures                     flags and features worked out now
    quality | features           the measures of a stream or a window
    windows                      cutting a session into windows
    splits                       train/validation/test per session, from a stable hash
    reader                       ``DataDir``, ``Stream``: stream.json, audio and tables by sample range
    notes, schema, errors        the format: ``FORMAT_VERSION``, ``StreamSummary``, Arrow schemas
"""

from typing import TYPE_CHECKING, Any

from .errors import FormatError, FormatTooNew
from .schema import (
    BLOCKS_SCHEMA,
    EVENTS_SCHEMA,
    FORMAT_VERSION,
    NOTES_SCHEMA,
    PARAMS_SCHEMA,
    WINDOWS_SCHEMA,
    StreamSummary,
)

if TYPE_CHECKING:
    from .facade import Dataset
    from .reader import Stream


def __getattr__(name: str) -> Any:
    """``Dataset`` and ``Stream`` on first use: the store imports only ``schema`` from here, and
    the reader's layers (pyarrow.compute among them) would add ~0.2 s to every render's start."""
    if name == "Dataset":
        from .facade import Dataset
        return Dataset
    if name == "Stream":
        from .reader import Stream
        return Stream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BLOCKS_SCHEMA", "EVENTS_SCHEMA", "FORMAT_VERSION", "NOTES_SCHEMA", "PARAMS_SCHEMA", "WINDOWS_SCHEMA",
           "Dataset", "FormatError", "FormatTooNew", "Stream", "StreamSummary"]
