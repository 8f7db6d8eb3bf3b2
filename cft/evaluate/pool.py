"""Worker processes for grading, with a per-item deadline enforced from outside.

Each worker runs math-verify on its own main thread (where timers work) and
gets one item at a time, so the parent knows which item a worker is stuck on.
A worker past its item's deadline is killed and replaced; the item is graded
wrong with error "timeout". Workers come from a forkserver that has already
imported math-verify, so a replacement starts in milliseconds and never
inherits the parent's threads or CUDA state.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from cft.evaluate.grade import TIMEOUT_ERROR

WORKER_START_TIMEOUT_S = 120.0  # generous: a loaded machine imports sympy slowly
MAX_START_FAILURES = 3


def _context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Only takes effect when this process's forkserver first starts.
        ctx.set_forkserver_preload(["cft.evaluate.preload"])
        return ctx
    return mp.get_context("spawn")


def _worker_main(conn: Connection, timeout_s: float) -> None:
    """Worker loop: receive (index, pred, gold), send (index, correct, error); None stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from cft.evaluate.grade import verify_inline, warm_up

    warm_up()
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, pred, gold = message
        correct, error = verify_inline(pred, gold, timeout_s)
        conn.send((index, correct, error))


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    started_at: float
    ready: bool = False
    item: int | None = None
    deadline: float = field(default=float("inf"))


class GradingPool:
    """A fixed number of grading processes; use as a context manager."""

    def __init__(self, workers: int, *, timeout_s: float, kill_after_s: float | None = None):
        if workers < 1:
            raise ValueError(f"a grading pool needs >= 1 worker, got {workers}")
        self.size = workers
        self.timeout_s = timeout_s
        # The worker's own timer should fire first; the kill is for C-level hangs.
        self.kill_after_s = kill_after_s if kill_after_s is not None else 1.5 * timeout_s + 1.0
        self._ctx = _context()
        self._workers: list[_Worker] = []
        self._start_failures = 0
        self.kills = 0

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(kill=exc_type is not None)

    def _start(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child_conn, self.timeout_s), daemon=True)
        process.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        return _Worker(process, parent_conn, time.monotonic())

    def _stop(self, worker: _Worker, *, kill: bool) -> None:
        if not kill and worker.process.is_alive():
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(timeout=2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def _replace(self, worker: _Worker) -> _Worker:
        self._stop(worker, kill=True)
        new = self._start()
        self._workers[self._workers.index(worker)] = new
        return new

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker: politely, or at once (`kill`) when a run was interrupted."""
        for worker in self._workers:
            self._stop(worker, kill=kill)
        self._workers = []

    def verify(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, str | None]]:
        """(correct, error) for each (pred, gold) pair, in order."""
        results: list[tuple[bool, str | None] | None] = [None] * len(pairs)
        queue = deque(range(len(pairs)))
        while len(self._workers) < min(self.size, len(pairs)):
            self._workers.append(self._start())

        while queue or any(w.item is not None for w in self._workers):
            now = time.monotonic()
            for worker in self._workers:
                if worker.ready and worker.item is None and queue:
                    index = queue.popleft()
                    worker.conn.send((index, *pairs[index]))
                    worker.item, worker.deadline = index, now + self.kill_after_s
            self._collect(results, queue)
            self._enforce_deadlines(results)
        return results  # type: ignore[return-value]

    def _collect(self, results: list, queue: deque) -> None:
        """Wait until a worker answers, is ready, dies, or a deadline passes."""
        now = time.monotonic()
        waits = [w.deadline if w.ready else w.started_at + WORKER_START_TIMEOUT_S for w in self._workers]
        by_conn = {w.conn: w for w in self._workers}
        for conn in wait(list(by_conn), timeout=max(0.0, min(waits) - now)):
            worker = by_conn[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the worker died (e.g. killed for memory)
                self._worker_died(worker, results, queue)
                continue
            if message == ("ready",):
                worker.ready = True
            else:
                index, correct, error = message
                results[index] = (correct, error)
                worker.item, worker.deadline = None, float("inf")

    def _worker_died(self, worker: _Worker, results: list, queue: deque) -> None:
        if worker.item is not None:
            results[worker.item] = (False, f"worker died (exit code {worker.process.exitcode})")
        elif not worker.ready:
            self._start_failures += 1
            if self._start_failures > MAX_START_FAILURES:
                raise RuntimeError("grading workers fail to start; try workers=0 to see the error in-process")
        self._replace(worker)

    def _enforce_deadlines(self, results: list) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.item is not None and now >= worker.deadline:
                results[worker.item] = (False, TIMEOUT_ERROR)
                self.kills += 1
                self._replace(worker)
            elif not worker.ready and now >= worker.started_at + WORKER_START_TIMEOUT_S:
                raise RuntimeError(f"a grading worker did not start within {WORKER_START_TIMEOUT_S:.0f} s")
