"""Tables the commands print on stdout (rich)."""

from __future__ import annotations

from typing import Any


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in ("seconds", "blocks", "events") else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)
