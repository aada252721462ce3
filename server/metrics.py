"""The receiver's Prometheus metrics, declared once (prometheus-client), served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("sendlearn_connections", "open websocket connections")
STREAMS = Gauge("sendlearn_streams", "streams with a connected sender")
BLOCKS = Counter("sendlearn_blocks_total", "blocks received (duplicates included)")
BYTES = Counter("sendlearn_bytes_total", "bytes of BLOCK frames received")
EVENTS = Counter("sendlearn_midi_events_total", "MIDI events received")
GAPS = Counter("sendlearn_gap_blocks_total", "blocks declared dropped by senders")
ACK_LAG = Histogram("sendlearn_ack_lag_seconds", "from a frame's arrival to the ACK that covers it",
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
QUALITY = Gauge("sendlearn_stream_quality", "quality level of a stream's last BLOCK (0 float32 .. 4 none)",
                ["session", "stream"])
REFUSALS = Counter("sendlearn_refusals_total", "connections ended on an error, by code", ["reason"])
STORAGE_ERRORS = Counter("sendlearn_storage_errors_total", "writes or syncs the disk refused")
STREAMS_FINALISED = Counter("sendlearn_streams_finalised_total", "streams whose files were written")
