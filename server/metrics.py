"""The receiver's Prometheus metrics, declared once (prometheus-client), served at /metrics.

With ``serve --workers N`` every worker writes its figures to ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, set up by the parent before the workers start), and
whichever worker answers /metrics reports them all: counters and histograms summed, gauges
summed over the living workers. A dead worker's gauges go with it (``worker_died``).

A stream's quality is labelled by (session, stream), and its label goes when the stream does.
prometheus-client cannot remove a label in multiprocess mode (it warns and keeps it), so the
quality is not one of its gauges: each worker keeps its streams' levels in a small JSON file
of its own there, rewritten when one changes, and /metrics reads the living workers' files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS = Gauge("sendlearn_connections", "open connections, their websocket handshake done or not",
                    multiprocess_mode="livesum")
STREAMS = Gauge("sendlearn_streams", "streams with a connected sender", multiprocess_mode="livesum")
BLOCKS = Counter("sendlearn_blocks_total", "blocks received (duplicates included)")
BYTES = Counter("sendlearn_bytes_total", "bytes of BLOCK frames received")
EVENTS = Counter("sendlearn_midi_events_total", "MIDI events received")
GAPS = Counter("sendlearn_gap_blocks_total", "blocks declared dropped by senders")
ACK_LAG = Histogram("sendlearn_ack_lag_seconds", "from a frame's arrival to the ACK that covers it",
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
REFUSALS = Counter("sendlearn_refusals_total", "connections ended on an error, by code", ["reason"])
STORAGE_ERRORS = Counter("sendlearn_storage_errors_total", "writes or syncs the disk refused")
STREAMS_FINALISED = Counter("sendlearn_streams_finalised_total", "streams whose files were written")


class StreamQuality(Collector):
    """``sendlearn_stream_quality{session,stream}``: the quality level of each connected stream's
    last BLOCK (0 float32 .. 4 none); a stream's label goes when its connection ends."""

    NAME, HELP = "sendlearn_stream_quality", "quality level of a stream's last BLOCK (0 float32 .. 4 none)"

    def __init__(self) -> None:
        self.levels: dict[tuple[str, str], int] = {}

    def set(self, key: tuple[str, str], level: int) -> None:
        if self.levels.get(key) != level:
            self.levels[key] = level
            self._publish()

    def remove(self, key: tuple[str, str]) -> None:
        if self.levels.pop(key, None) is not None:
            self._publish()

    def _publish(self) -> None:
        folder = os.environ.get(MULTIPROCESS_DIR)
        if folder is None:
            return
        path = quality_file(folder, os.getpid())
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps([[*key, level] for key, level in self.levels.items()]))
        os.replace(temporary, path)  # a reader sees the old list or the new, whole

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["session", "stream"])
        folder = os.environ.get(MULTIPROCESS_DIR)
        levels = dict(self.levels) if folder is None else every_workers_levels(folder)
        for (session, stream), level in sorted(levels.items()):
            family.add_metric([session, stream], float(level))
        yield family


def quality_file(folder: str, pid: int) -> Path:
    return Path(folder) / f"quality_{pid}.json"


def every_workers_levels(folder: str) -> dict[tuple[str, str], int]:
    levels: dict[tuple[str, str], int] = {}
    for path in Path(folder).glob("quality_*.json"):
        try:
            os.kill(int(path.stem.split("_", 1)[1]), 0)  # a dead worker's streams are not connected
            for session, stream, level in json.loads(path.read_text()):
                levels[(session, stream)] = max(level, levels.get((session, stream), level))
        except (OSError, ValueError):
            continue
    return levels


QUALITY = StreamQuality()
REGISTRY.register(QUALITY)


def worker_died(pid: int) -> None:
    """Clear a dead worker's gauges (its connections and streams, its streams' qualities)."""
    multiprocess.mark_process_dead(pid)
    folder = os.environ.get(MULTIPROCESS_DIR)
    if folder is not None:
        quality_file(folder, pid).unlink(missing_ok=True)


def exposition() -> bytes:
    """The Prometheus text /metrics serves: this process's, or every worker's under --workers."""
    if MULTIPROCESS_DIR not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QUALITY)
    return generate_latest(registry)
