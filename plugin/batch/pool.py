"""Jobs in worker processes: one task at a time per process, recycled, timed out, bounded.

``WorkerPool(job, workers)`` runs ``job(payload)`` (``job`` is ``"module:function"``) in
``workers`` child processes. Each child takes one task at a time and is replaced after
``max_tasks`` of them (DawDreamer and pedalboard leak over long runs and a render holds a
whole file in memory: a fresh process gives it all back). A task still running ``timeout``
seconds after it was handed out is a failure and its process is killed (SIGKILL: a render
stuck in C code hears nothing else) and replaced; a process that dies (a segfault, the
kernel's OOM killer) fails its task alone. Tasks are taken from the iterable only when a
process is free, so a thousand-file batch holds ``workers`` tasks in flight, never more.

Why not ``concurrent.futures.ProcessPoolExecutor``: killing one hung worker breaks the whole
executor (``BrokenProcessPool`` fails every future in flight), so one timeout would cost the
other workers their renders.

Children are started with ``subprocess`` (not ``multiprocessing``: a Dask worker is a daemon
process, which may not have multiprocessing children), talk over two pipes, ignore SIGINT
(the parent decides what a Ctrl-C means) and die with their parent (``PR_SET_PDEATHSIG``), so
a batch killed with SIGKILL leaves no render running that could write beside its rerun.

``run_in_process`` is the same for a task on a Dask worker: each worker thread keeps a pool of
one child, so a Dask task has our timeout (Dask has none) and our recycling.
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from sendlearn.errors import SendLearnError
from sendlearn.plugin.lifetime import die_with_parent

DEFAULT_MAX_TASKS = 20


class WorkerError(SendLearnError):
    """No worker process could be started (or kept alive long enough) to take a task."""


@dataclass(frozen=True, slots=True)
class TaskDone:
    """One task's end: the job's return ``value``, or ``error`` saying why there is none (the job
    raised, the task timed out, its process died). ``peak_rss_kib`` is the process's peak RSS
    so far, ``worker`` its pid."""

    key: Any
    value: Any
    error: str | None
    seconds: float
    peak_rss_kib: int
    worker: int


class _Child:
    """One worker process and its two pipe ends."""

    def __init__(self, job: str) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sendlearn.plugin.batch.pool", job, str(to_child_r), str(from_child_w),
                 str(os.getpid())],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=2, close_fds=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.tx = Connection(to_child_w, readable=False)
        self.rx = Connection(from_child_r, writable=False)
        self.tasks = 0
        self.task: tuple[Any, float] | None = None  # (key, monotonic time handed out)

    def send(self, key: Any, payload: Any) -> None:
        self.tx.send((key, payload))
        self.task = (key, time.monotonic())
        self.tasks += 1

    def retire(self) -> None:
        """No more tasks: the child sees EOF and exits."""
        self.tx.close()
        self.rx.close()
        _reap(self.proc)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for conn in (self.tx, self.rx):
            if not conn.closed:
                conn.close()
        return code


def _reap(proc: subprocess.Popen, wait_seconds: float = 5.0) -> None:
    try:
        proc.wait(wait_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class WorkerPool:
    """``workers`` processes running ``job``; see the module's docstring. Use it as a context
    manager: leaving it kills what is still running and retires the rest."""

    def __init__(self, job: str, workers: int, *, max_tasks: int = DEFAULT_MAX_TASKS,
                 timeout: float | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
        self.job, self.workers, self.max_tasks, self.timeout = job, workers, max_tasks, timeout
        self._idle: list[_Child] = []
        self._busy: list[_Child] = []
        self.started = 0  # processes started, recycled ones included

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, tasks: Iterable[tuple[Any, Any]]) -> Iterator[TaskDone]:
        """Run every ``(key, payload)``; yield each task's end as it comes (any order)."""
        pending = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(self._busy) < self.workers:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                    break
                self._hand_out(*task)
            if not self._busy:
                return
            ready = wait([c.rx for c in self._busy], timeout=self._wait_seconds())
            now = time.monotonic()
            for child in list(self._busy):
                if child.rx in ready:
                    yield self._collect(child)
                elif self.timeout is not None and child.task is not None and now - child.task[1] >= self.timeout:
                    self._busy.remove(child)
                    key, started = child.task
                    child.kill()
                    yield TaskDone(key, None, f"timed out after {self.timeout:g} s (its process was killed)",
                                   now - started, 0, child.proc.pid)

    def _hand_out(self, key: Any, payload: Any) -> None:
        for _ in range(3):  # an idle child may have died meanwhile (OOM killer, its Dask thread gone)
            child = self._idle.pop() if self._idle else self._start()
            try:
                child.send(key, payload)
            except OSError:
                child.kill()
                continue
            self._busy.append(child)
            return
        raise WorkerError(f"cannot start a worker process for {self.job}")

    def _start(self) -> _Child:
        self.started += 1
        return _Child(self.job)

    def _collect(self, child: _Child) -> TaskDone:
        self._busy.remove(child)
        key, started = child.task or (None, time.monotonic())
        child.task = None
        try:
            done: TaskDone = child.rx.recv()
        except (EOFError, OSError):
            code = child.kill()
            return TaskDone(key, None, f"worker process died ({_describe(code)})", time.monotonic() - started,
                            0, child.proc.pid)
        if child.tasks >= self.max_tasks:
            child.retire()
        else:
            self._idle.append(child)
        return done

    def _wait_seconds(self) -> float | None:
        if self.timeout is None:
            return None
        first = min(c.task[1] for c in self._busy if c.task is not None)
        return max(0.0, first + self.timeout - time.monotonic()) + 0.01

    def close(self) -> None:
        """Kill the children still running a task; retire the idle ones."""
        for child in self._busy:
            child.kill()
        for child in self._idle:
            child.retire()
        self._busy, self._idle = [], []


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# --- on a Dask worker ------------------------------------------------------------------------

_local = threading.local()


def run_in_process(job: str, key: Any, payload: Any, timeout: float | None, max_tasks: int) -> TaskDone:
    """A Dask task: ``job(payload)`` in this worker thread's own child process (started once,
    recycled after ``max_tasks``), killed after ``timeout`` seconds."""
    pool = getattr(_local, "pool", None)
    if pool is None or (pool.job, pool.timeout, pool.max_tasks) != (job, timeout, max_tasks):
        if pool is not None:
            pool.close()
        pool = _local.pool = WorkerPool(job, 1, max_tasks=max_tasks, timeout=timeout)
    return next(iter(pool.run([(key, payload)])))


def run_on_dask(client: Any, job: str, tasks: Iterable[tuple[Any, Any]], *, timeout: float | None,
                max_tasks: int = DEFAULT_MAX_TASKS) -> Iterator[TaskDone]:
    """``tasks`` on a Dask cluster through ``client`` (``Client.submit`` and ``as_completed``),
    each in ``run_in_process``; as many in flight as the cluster has threads, plus one each
    queued so no worker waits for the next. A task Dask itself lost (its worker gone more
    often than the scheduler allows) is a failure naming that."""
    from distributed import as_completed

    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    bound = max(2, 2 * threads)
    pending = iter(tasks)
    keys: dict[str, Any] = {}
    running = as_completed([], with_results=True, raise_errors=False)

    def submit() -> bool:
        task = next(pending, None)
        if task is None:
            return False
        future = client.submit(run_in_process, job, task[0], task[1], timeout, max_tasks, pure=False, retries=0)
        keys[future.key] = task[0]
        running.add(future)
        return True

    for _ in range(bound):
        if not submit():
            break
    for future, result in running:
        key = keys.pop(future.key)
        if isinstance(result, TaskDone):
            yield result
        else:
            yield TaskDone(key, None, f"dask: {type(result).__name__}: {result}", 0.0, 0, 0)
        future.release()
        submit()


# --- the child -------------------------------------------------------------------------------


def resolve(job: str) -> Callable[[Any], Any]:
    module, _, name = job.partition(":")
    return getattr(importlib.import_module(module), name)


def _child_main(job: str, rfd: int, wfd: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, parent)
    rx, tx = Connection(rfd, writable=False), Connection(wfd, readable=False)
    function = resolve(job)
    while True:
        try:
            key, payload = rx.recv()
        except (EOFError, OSError):
            return
        started = time.monotonic()
        try:
            value, error = function(payload), None
        except Exception as exc:  # the job's own failure: reported, and the process goes on
            value, error = None, f"{type(exc).__name__}: {exc}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tx.send(TaskDone(key, value, error, time.monotonic() - started, rss, os.getpid()))


if __name__ == "__main__":
    from sendlearn.plugin.batch.pool import _child_main as main  # TaskDone pickled under its module's name

    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
