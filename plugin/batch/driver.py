"""Many inputs rendered as tasks: in worker processes (``plugin.pool``) or on a Dask cluster.

Each input is one task, run by a job (``"module:function"``, ``sendlearn.cli.batch:render_input``
for ``sendlearn render``) in a worker process, recycled after ``max_tasks`` renders and killed
after ``timeout`` seconds, or on a Dask cluster. A bad input is a failure recorded with its
reason (unreadable, empty, a render that came out silent or of the wrong length, a timeout, a
worker that died) and the batch goes on. Two inputs that would write the same session are
refused before anything renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendlearn.plugin.batch.pool import TaskDone
from sendlearn.plugin.session.inputs import Input, session_name

DEFAULT_TIMEOUT = 900.0  # seconds: a 19-minute score renders in about 100 s on a slow core


@dataclass
class BatchResult:
    """What a batch did: every stream's outcome, the inputs skipped as complete, failures."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0  # inputs rendered and written whole
    skipped: int = 0  # inputs complete before this run
    failed: int = 0  # inputs with any failure
    audio_seconds: float = 0.0  # rendered in this run
    peak_rss_kib: dict[int, int] = field(default_factory=dict)  # by worker process
    audio_by_worker: dict[int, float] = field(default_factory=dict)  # seconds rendered, by worker process
    interrupted: bool = False

    def add_failure(self, path: str, reason: str, session: str | None = None, stream: str | None = None) -> None:
        self.failures.append({"input": path, "session": session, "stream": stream, "reason": reason})


def run_batch(inputs: list[Input], options: dict[str, Any], job: str, *, workers: int, scheduler: str | None,
              timeout: float | None, max_tasks: int,
              progress: Callable[[BatchResult], None] | None = None) -> BatchResult:
    """Every input through ``job`` in the pool (``workers`` processes) or on the Dask cluster at
    ``scheduler``.

    Each task's payload is ``options`` (the keys every task shares: instrument, sample_rate,
    block_size, data_dir, server, token) with the input's ``input`` (resolved), ``shown`` (as
    given) and ``name``. The job returns ``{"skipped": bool, "error": reason or None,
    "outcomes": [stream outcomes as dicts]}``. ``progress(result)`` is called after each input.
    SIGINT (and whatever the caller turns into KeyboardInterrupt) stops it: renders in flight
    are killed, their streams left to resume, and the result says ``interrupted``."""
    result = BatchResult()
    tasks: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, Path] = {}
    for index, item in enumerate(inputs):
        name = session_name(item)
        if name is not None and name in seen:
            result.failed += 1
            result.add_failure(str(item.path), f"session {name!r} is also written by {seen[name]}; "
                               "rename one (each session must come from one input)", name)
            continue
        if name is not None:
            seen[name] = item.path
        tasks.append((index, {**options, "input": str(item.path.resolve()), "shown": str(item.path),
                              "name": item.name}))
    try:
        for done in _execute(job, tasks, workers=workers, scheduler=scheduler, timeout=timeout,
                             max_tasks=max_tasks):
            _take(result, inputs[done.key], done)
            if progress is not None:
                progress(result)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def _execute(job: str, tasks: list[tuple[int, dict[str, Any]]], *, workers: int, scheduler: str | None,
             timeout: float | None, max_tasks: int) -> Iterator[TaskDone]:
    from sendlearn.plugin.batch.pool import WorkerPool, run_on_dask

    if scheduler is None:
        with WorkerPool(job, workers, max_tasks=max_tasks, timeout=timeout) as pool:
            yield from pool.run(tasks)
        return
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        yield from run_on_dask(client, job, tasks, timeout=timeout, max_tasks=max_tasks)


def _take(result: BatchResult, item: Input, done: TaskDone) -> None:
    path = str(item.path)
    if done.worker:
        result.peak_rss_kib[done.worker] = max(result.peak_rss_kib.get(done.worker, 0), done.peak_rss_kib)
    if done.error is not None:
        result.failed += 1
        result.add_failure(path, done.error, session_name(item))
        return
    value = done.value
    if value["skipped"]:
        result.skipped += 1
        return
    if value["error"] is not None:
        result.failed += 1
        result.add_failure(path, value["error"], session_name(item))
        return
    outcomes = value["outcomes"]
    result.outcomes += outcomes
    seconds = sum(o["seconds"] for o in outcomes if o["ok"])
    result.audio_seconds += seconds
    result.audio_by_worker[done.worker] = result.audio_by_worker.get(done.worker, 0.0) + seconds
    bad = [o for o in outcomes if not o["ok"]]
    for o in bad:
        result.add_failure(path, o["reason"], o["session"], o["stream"])
    if bad or not outcomes:
        result.failed += 1
        if not outcomes:
            result.add_failure(path, "the input made no stream")
    else:
        result.done += 1
