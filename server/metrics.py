"""The receiver's Prometheus metrics, declared once (prometheus-client), served at /metrics.

With ``serve --workers N`` every worker writes its figures to ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, set up by the parent before the workers start), and
whichever worker answers /metrics reports them all: counters and histograms summed, gauges
summed over the living workers (a stream's quality: its one writer's).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS = Gauge("sendlearn_connections", "open websocket connections", multiprocess_mode="livesum")
STREAMS = Gauge("sendlearn_streams", "streams with a connected sender", multiprocess_mode="livesum")
BLOCKS = Counter("sendlearn_blocks_total", "blocks received (duplicates included)")
BYTES = Counter("sendlearn_bytes_total", "bytes of BLOCK frames received")
EVENTS = Counter("sendlearn_midi_events_total", "MIDI events received")
GAPS = Counter("sendlearn_gap_blocks_total", "blocks declared dropped by senders")
ACK_LAG = Histogram("sendlearn_ack_lag_seconds", "from a frame's arrival to the ACK that covers it",
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
QUALITY = Gauge("sendlearn_stream_quality", "quality level of a stream's last BLOCK (0 float32 .. 4 none)",
                ["session", "stream"], multiprocess_mode="livemax")
REFUSALS = Counter("sendlearn_refusals_total", "connections ended on an error, by code", ["reason"])
STORAGE_ERRORS = Counter("sendlearn_storage_errors_total", "writes or syncs the disk refused")
STREAMS_FINALISED = Counter("sendlearn_streams_finalised_total", "streams whose files were written")


def exposition() -> bytes:
    """The Prometheus text /metrics serves: this process's, or every worker's under --workers."""
    if MULTIPROCESS_DIR not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
