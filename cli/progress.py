"""Progress bars on stderr for render and batch: drawn on a terminal, gone once done."""

from __future__ import annotations

import time
from typing import Any, Self

from sendlearn.plugin.chain.feed import Progress

REDRAW_SECONDS = 0.1  # rich redraws at 10 Hz anyway


class StderrBars:
    """Rich progress bars on stderr, drawn only when ``enabled`` and gone once done."""

    def __init__(self, *columns: Any, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bars

        self.progress = Bars(*columns, console=Console(stderr=True), disable=not enabled, transient=True)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class ProgressView(StderrBars):
    """One bar counts inputs; one shows the stream being captured, removed when it is done, so
    a thousand-file render keeps a two-line display."""

    def __init__(self, inputs: int, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         enabled=enabled)
        self.files = self.progress.add_task("inputs", total=inputs)
        self.current: tuple[str, Any] | None = None

    def for_session(self, session: str) -> Progress:
        shown = [0.0]  # when the bar last moved: a render calls this per block, rich costs ~6 us a call

        def update(stream: str, done: int, total: int) -> None:
            name = f"{session}/{stream}"
            if self.current is None or self.current[0] != name:
                self._drop_current()
                self.current = (name, self.progress.add_task(name, total=total))
            elif done < total and time.monotonic() - shown[0] < REDRAW_SECONDS:
                return
            shown[0] = time.monotonic()
            self.progress.update(self.current[1], completed=done)
        return update

    def input_done(self) -> None:
        self._drop_current()
        self.progress.advance(self.files)

    def _drop_current(self) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current[1])
            self.current = None
