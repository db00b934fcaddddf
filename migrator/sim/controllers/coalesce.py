"""Batching of controller work: many events, one reconcile per object.

A pod event at 20,000 pods must not cost a full reconcile of its ReplicaSet. Controllers
therefore mark the objects an event concerns as *dirty* and one flush, scheduled on the
world's worker, reconciles each dirty object once. The world runs queued events before
timers, so a storm of events collapses into one flush.

The flush is also throttled: after a flush that took ``d`` wall seconds, the next one
waits at least ``d`` (capped), so a large reconcile can never take more than about half
of the worker and starve the kubelets and agents that share it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import structlog

from migrator.sim.world import World

log = structlog.get_logger("migrator.sim.controllers")

K = TypeVar("K", bound=Hashable)

MAX_BACKOFF = 0.2  # wall seconds; waiting this long covers any throttled flush


class Coalescer(Generic[K]):
    """Reconcile each marked key once per flush, ``delay`` simulated seconds after marking."""

    def __init__(self, world: World, reconcile: Callable[[K], None], *, delay: float = 0.0) -> None:
        self._world = world
        self._reconcile = reconcile
        self._delay = delay
        self._dirty: set[K] = set()
        self._scheduled = False
        self._next_allowed = 0.0  # monotonic wall time

    def mark(self, key: K) -> None:
        self._dirty.add(key)
        if self._scheduled:
            return
        self._scheduled = True
        wait_wall = max(0.0, self._next_allowed - time.monotonic())
        self._world.call_later(max(self._delay, wait_wall * self._world.time_scale), self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        keys = sorted(self._dirty, key=repr)
        self._dirty.clear()
        started = time.monotonic()
        for key in keys:
            try:
                self._reconcile(key)
            except Exception:  # one broken object must not starve the others
                text = traceback.format_exc()
                self._world.errors.append(text)
                log.error("sim.controller.reconcile_failed", key=repr(key), error=text.splitlines()[-1])
        took = time.monotonic() - started
        self._next_allowed = time.monotonic() + min(took, MAX_BACKOFF)
