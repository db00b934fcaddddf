"""The simulated cluster's clockwork: one thread that runs every controller.

Controllers, kubelets and agents are reactive: they register handlers for store events
(``on``) and schedule delayed work (``call_later``: a pod becomes Ready 300 ms after its
sandbox starts, an agent writes its CNI file once ready). Everything runs on one worker
thread, in order, so simulated components never race each other; they share the store
with the API server's request threads, whose lock makes each store call atomic.

Time: delays are in simulated seconds and divided by ``time_scale`` to get wall seconds,
so a demo can run realistic latencies quickly. Randomness comes from one seeded
``random.Random`` so that a run replays from its seed (up to thread interleaving with API
clients, which is the client's business).

``settle()`` lets tests wait until nothing is queued and no timer is due within a
horizon: the cluster has converged.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import random
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import structlog

from migrator.sim.store import Event, Store

Handler = Callable[[Event], None]
#: Cyclic garbage collection for the simulator's process: rare (see ``World.start``).
GC_THRESHOLDS = (10_000, 20, 1_000)
#: Seconds a thread runs before the interpreter hands over to another that waits (default 0.005).
SWITCH_INTERVAL = 0.0002
log = structlog.get_logger("migrator.sim.world")


def own_process() -> None:
    """For a process that serves the simulated cluster alone (``migrator sim serve``, the
    benchmarks' server): the interpreter is handed between threads every 0.2 ms. An API request
    thread needs it again after every socket read and write, and waited up to the default 5 ms
    each time behind the world's worker (a 1,000-node run at 50 nodes in flight took 88 s with
    the default, 80 s with 0.2 ms). Where the cluster shares its process with a client (the
    tests, ``migrator demo``) the default stays: there the shorter interval cost the end-to-end
    tests 7 %. A shorter interval already set is kept."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


class World:
    """Event dispatch plus timers on a single worker thread."""

    def __init__(self, store: Store, *, seed: int = 0, time_scale: float = 1.0) -> None:
        self.store = store
        self.seed = seed
        self.rng = random.Random(seed)
        self.time_scale = time_scale
        self._handlers: dict[str, list[Handler]] = {}
        self._any: list[Handler] = []
        self._events: deque[Event] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        store.subscribe(self._enqueue)

    # ------------------------------------------------------------------ wiring
    def on(self, resource: str | None, handler: Handler) -> None:
        """Run ``handler(event)`` on the worker for each change of ``resource`` (None: all)."""
        if resource is None:
            self._any.append(handler)
        else:
            self._handlers.setdefault(resource, []).append(handler)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker after ``delay`` simulated seconds."""
        due = time.monotonic() + max(0.0, delay) / self.time_scale
        with self._cv:
            heapq.heappush(self._timers, (due, next(self._seq), fn))
            self._cv.notify()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.call_later(0.0, fn)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker. The process then collects cyclic garbage rarely: the cluster's
        objects are JSON trees that reference counting frees, and a full collection walks every
        snapshot the store and its watch history hold (up to 0.75 s at 1,000 nodes), stopping
        every kubelet and API request meanwhile, which no real cluster does. Thresholds already
        higher are kept."""
        current = gc.get_threshold()
        gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS, strict=True)))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-world", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def settle(self, *, timeout: float = 30.0, horizon: float = 0.0) -> bool:
        """Wait until no event is queued, nothing runs and no timer is due within ``horizon``
        simulated seconds. Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cv:
                limit = time.monotonic() + horizon / self.time_scale
                idle = not self._events and not self._busy and \
                    not (self._timers and self._timers[0][0] <= limit)
            if idle:
                return True
            time.sleep(0.005)
        return False

    # ------------------------------------------------------------------ internals
    def _enqueue(self, event: Event) -> None:  # called under the store lock: be quick
        with self._cv:
            self._events.append(event)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    if self._events:
                        job: Callable[[], None] = self._dispatcher(self._events.popleft())
                        break
                    if self._timers and self._timers[0][0] <= now:
                        job = heapq.heappop(self._timers)[2]
                        break
                    wait = (self._timers[0][0] - now) if self._timers else None
                    self._cv.wait(timeout=wait)
                self._busy = True
            try:
                job()
            except Exception:  # a controller bug must not kill the cluster; tests read errors
                text = traceback.format_exc()
                self.errors.append(text)
                log.error("sim.world.handler_failed", error=text.splitlines()[-1])
            finally:
                with self._cv:
                    self._busy = False

    def _dispatcher(self, event: Event) -> Callable[[], None]:
        handlers = self._handlers.get(event.resource, []) + self._any

        def dispatch() -> None:
            for h in handlers:
                h(event)
        return dispatch
