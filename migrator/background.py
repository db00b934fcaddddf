"""Work the decision loop must not wait for, done on one background thread, keyed results.

A continuous run's gap report costs seconds per node on a large cluster (``policy.transition``
evaluates every flow of the groups the switch moves): computed in the observation it would stop
the loop from turning (no gate, drain or rollback of other nodes) for that long. ``Background``
runs such jobs one at a time on a daemon thread; the loop asks for a result by key on every
observation and gets ``None`` until it is ready, which the engine already treats as "waiting
for the node's gap report". A failed job raises its error once, to the asker, and is forgotten,
so the next observation submits it again (e.g. once a policy that could not be read is fixed).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """Jobs by key, run in submission order on one daemon thread (started on first use)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: dict[Hashable, Future[T]] = {}
        self._queue: queue.Queue[tuple[Future[T], Callable[[], T]]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def result(self, key: Hashable, job: Callable[[], Callable[[], T]]) -> T | None:
        """The result for ``key``: None while it is computed. ``job`` is called on the caller's
        thread only when ``key`` has no job yet (to read what the work needs) and returns the work
        to run in the background. A job's exception is raised here once; the key is then free."""
        future = self._jobs.get(key)
        if future is None:
            work = job()
            future = self._jobs[key] = Future()
            self._queue.put((future, work))
            self._start()
        if not future.done():
            return None
        error = future.exception()
        if error is not None:
            del self._jobs[key]
            raise error
        return future.result()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            future, work = self._queue.get()
            try:
                future.set_result(work())
            except Exception as exc:   # handed to the asker, who decides
                future.set_exception(exc)
