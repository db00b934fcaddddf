"""Waiting out an unreachable or failing API server, up to ``api.outage_tolerance``.

The port retries each call a few times on its own; what still fails after that
(``Unavailable``, ``Throttled``) reaches the runner, which keeps its state (checkpoint, its
resourceVersion, the pending inbox) and tries the turn again after a pause. This module owns
the episode: when it began, how long to pause, when to give up, and how it is reported.

The machine, per turn of the run loop:

- *available*: a turn fails with an API error → *unavailable since now* (``api.unavailable``
  logged, ``migrator_api_outages_total`` counted, the progress line says so).
- *unavailable*: another failed turn → still unavailable (``api.unavailable`` again, at most
  every ``REPORT_EVERY`` seconds, with how long); once ``api.outage_tolerance`` has passed
  since the first failure → *halted* (exit 1, resumable, the message says since when).
- *unavailable*: a call that really reached the API server succeeds (a checkpoint save or
  read, an action) → *available* (``api.recovered``). A turn that only read the watch cache
  proves nothing: the cache serves its last state while its watches fail.

Seconds spent unavailable are added to ``migrator_api_unavailable_seconds_total`` as they pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from migrator.clock import Clock
from migrator.cluster.errors import ClusterError, Throttled, Unavailable
from migrator.metrics import Metrics
from migrator.model.units import format_duration

log = structlog.get_logger("migrator.outage")

#: The errors that say the API server could not answer (after the port's own retries).
API_DOWN: tuple[type[ClusterError], ...] = (Unavailable, Throttled)
FIRST_PAUSE = 0.5        # seconds before the first retry of a failed turn
MAX_PAUSE = 5.0          # longest pause between tries (a server's Retry-After included)
REPORT_EVERY = 10.0      # seconds between repeated ``api.unavailable`` lines of one episode


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class ApiOutage:
    """One run's view of the API server's availability."""

    def __init__(self, tolerance: timedelta, *, clock: Clock, metrics: Metrics, progress: Any = None) -> None:
        self.tolerance = tolerance
        self.clock = clock
        self.metrics = metrics
        self.progress = progress
        self.since: datetime | None = None   # wall time of the episode's first failure
        self._started = 0.0                   # the same moment, on the monotonic clock
        self._counted = 0.0                   # monotonic time up to which seconds were counted
        self._reported = 0.0
        self._failures = 0
        self.last_error = ""

    @property
    def active(self) -> bool:
        """True while the API server is considered unavailable."""
        return self.since is not None

    def unavailable_for(self) -> float:
        """Seconds since the episode began (0 when available)."""
        return self.clock.monotonic() - self._started if self.active else 0.0

    def failed(self, exc: ClusterError, *, where: str) -> str | None:
        """Record a turn that failed with an API error at ``where`` (observe, checkpoint save,
        checkpoint read, actions). Returns the halt message once the tolerance is exceeded."""
        mono = self.clock.monotonic()
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"[:300]
        self._failures += 1
        if self.since is None:
            self.since, self._started, self._counted, self._reported = self.clock.now(), mono, mono, mono
            self._failures = 1
            self.metrics.api_outages.inc()
            self.metrics.api_unavailable.set(1)
            log.warning("api.unavailable", since=self.since.isoformat(), **{"for": 0.0}, where=where,
                        error=type(exc).__name__, message=str(exc)[:200],
                        tolerance=format_duration(self.tolerance))
        else:
            self._count(mono)
            if mono - self._reported >= REPORT_EVERY:
                self._reported = mono
                log.warning("api.unavailable", since=self.since.isoformat(), **{"for": round(mono - self._started, 1)},
                            where=where, error=type(exc).__name__, message=str(exc)[:200],
                            tolerance=format_duration(self.tolerance))
        if self.progress is not None and hasattr(self.progress, "unavailable"):
            self.progress.unavailable(self.since)
        if mono - self._started > self.tolerance.total_seconds():
            return self.halt_message()
        return None

    def halt_message(self) -> str:
        assert self.since is not None
        lasted = timedelta(seconds=round(self.unavailable_for()))
        return (f"halted: the API server has been unavailable since {_stamp(self.since)} "
                f"(for {format_duration(lasted)}), longer than api.outage_tolerance="
                f"{format_duration(self.tolerance)} (last error: {self.last_error}); the state is kept — "
                "run `migrator resume` once the API server is back")

    def pause(self, exc: ClusterError) -> float:
        """Seconds to wait before trying the turn again: the server's Retry-After when it sent
        one, else doubling from ``FIRST_PAUSE``; never past the tolerance's end (plus a little,
        so the next failure is the one that halts)."""
        hinted = getattr(exc, "retry_after", None)
        wait = float(hinted) if hinted is not None and hinted > 0 else FIRST_PAUSE * 2 ** max(self._failures - 1, 0)
        left = self.tolerance.total_seconds() - self.unavailable_for()
        return max(0.05, min(wait, MAX_PAUSE, left + 0.05))

    def recovered(self) -> None:
        """A call reached the API server and succeeded: the episode, if any, is over."""
        if self.since is None:
            return
        mono = self.clock.monotonic()
        self._count(mono)
        log.info("api.recovered", since=self.since.isoformat(), **{"for": round(mono - self._started, 1)},
                 failed_turns=self._failures)
        self.metrics.api_unavailable.set(0)
        self.since = None
        self._failures = 0
        if self.progress is not None and hasattr(self.progress, "unavailable"):
            self.progress.unavailable(None)

    def _count(self, mono: float) -> None:
        self.metrics.api_unavailable_seconds.inc(max(mono - self._counted, 0.0))
        self._counted = mono
