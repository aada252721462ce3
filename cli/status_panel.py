"""``sendlearn status --server URL``: a live terminal panel of a running receiver's streams
(its /status JSON, server/http.py), with the seed plugin's indicators: connected, Mbps, blocks,
MIDI events, latency (ACK lag), quality, gaps."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from sendlearn.errors import UsageError
from sendlearn.transport.tls import client_context, for_url

QUALITY = {0: "float32", 1: "pcm24", 2: "pcm16", 3: "reduced", 4: "none", None: "-"}


def fetch(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> dict[str, Any]:
    """The receiver's /status, with ``token`` as ``Authorization: Bearer`` (a receiver with
    --tokens answers 401 without one)."""
    base = url.rstrip("/").replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    request = urllib.request.Request(base + "/status", headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10, context=for_url(base, context)) as response:
        return json.loads(response.read())


def panel(status: dict[str, Any], url: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    health = Text("storage: " + status["storage_error"], style="bold red") if status["storage_error"] \
        else Text("storage: ok", style="green")
    head = Text(f"{url}  connections {status['connections']}  lingering {status['lingering']}  "
                f"finalised {status['streams_finalised']}  refused {sum(status['refused'].values())}  ")
    table = Table(expand=True)
    for column in ("session", "stream", "host", "up", "Mbps", "blocks", "MIDI", "lag", "quality", "gaps"):
        table.add_column(column, justify="right" if column not in ("session", "stream", "host") else "left",
                         min_width=len(column), no_wrap=True)
    for s in status["streams"]:
        lag = "-" if s["ack_lag_seconds"] is None else f"{s['ack_lag_seconds'] * 1000:.0f} ms"
        table.add_row(s["session"], s["stream"], s["host"], f"{s['connected_seconds']:.0f} s", f"{s['mbps']:.2f}",
                      str(s["blocks"]), str(s["midi_events"]), lag, QUALITY.get(s["quality"], "?"),
                      str(s["gap_blocks"]))
    return Group(head + health, table)


def run_status_panel(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    context = client_context(args.ca_file)
    token = getattr(args, "token", None) or os.environ.get("SENDLEARN_TOKEN") or None
    try:
        status = fetch(args.server, context, token)
    except urllib.error.HTTPError as exc:
        hint = " (give --token or SENDLEARN_TOKEN)" if exc.code == 401 and not token else ""
        raise UsageError(f"--server {args.server}: {exc.code} {exc.reason}{hint}") from None
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise UsageError(f"--server {args.server}: {getattr(exc, 'reason', exc)}") from None
    if args.json:
        print(json.dumps(status))
        return 0
    console = Console()
    if args.once or not console.is_terminal:
        console.print(panel(status, args.server))
        return 0
    with Live(panel(status, args.server), console=console, refresh_per_second=2) as live:
        while True:
            time.sleep(1.0)
            try:
                live.update(panel(fetch(args.server, context, token), args.server))
            except (OSError, urllib.error.URLError, ValueError) as exc:
                live.update(f"[red]{args.server}: {getattr(exc, 'reason', exc)}[/red]")
