"""The only retry policy for API calls: tenacity, bounded per call, applied once by ``cluster/guard.py``.

What is retried: ``Unavailable`` (5xx, a refused or reset connection, a timeout) and
``Throttled`` (429). Everything else propagates at once: a ``Conflict`` means "reload and
decide again" (compare-and-swap, never retried here), a ``DisruptionBudgetBlocked`` is a drain
decision, ``Forbidden``/``Invalid``/``NotFound`` will not get better by waiting, and a
``LeaseExpired`` is a local refusal (the runner's outage tolerance waits for the lease).

How safe a repeat is decides *which* failures are retried (``Safety``):
- ``SAFE``: repeating the call cannot act twice (a read, a write computed from what it read,
  a compare-and-swap, a uid precondition, a deterministic name). Retried on any of the above.
- ``ONCE``: repeating could act twice (an Event with a generated name, an eviction without a
  uid). Retried only when the server provably did not execute the first request: a 429, a
  503, or a connection that never reached it (``Unavailable.sent`` is False). An unknown
  outcome (a read timeout, a reset mid-answer, 500/502/504) is handed to the caller, and the
  next observation settles it; it is never re-sent blindly.
- ``PROBE`` (pods/proxy): retried only on 429 and on connections that were never made; any
  other failure is the probe's to judge (an API error through the proxy is "unknown", never
  evidence about the network), and a probe round must not hide behind half a minute of waits.

Waits: the server's ``Retry-After`` when it sent one, else exponential back-off with jitter from
an injected ``random.Random``, each capped by ``max_wait``. Bound per call: no further attempt
starts when it could not finish within ``deadline`` seconds of the first one (judged by the
longest attempt so far), so a long outage reaches the caller as ``Unavailable`` after at most
about ``deadline`` seconds; a ``Retry-After`` longer than what is left ends the call at once
with the server's hint on the error. Step attempt counts that must survive a crash live in
the checkpoint, not here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import structlog
import tenacity

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import LeaseExpired, Throttled, Unavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry a transient API failure."""

    attempts: int = 12           # total tries per call, including the first
    initial_wait: float = 0.2    # seconds before the second try
    max_wait: float = 8.0        # cap on a back-off wait (a Retry-After is honoured up to the deadline)
    multiplier: float = 2.0      # exponential growth per attempt
    jitter: float = 0.5          # fraction of the wait added at random
    deadline: float = 30.0       # seconds per call: no attempt starts that could end after it


class Safety(Enum):
    """What repeating a call could do (see the module docstring)."""

    SAFE = "safe"
    ONCE = "once"
    PROBE = "probe"


def is_retryable(exc: BaseException) -> bool:
    """True for the two transient error classes (a local ``LeaseExpired`` excepted)."""
    return isinstance(exc, (Unavailable, Throttled)) and not isinstance(exc, LeaseExpired)


def not_executed(exc: BaseException) -> bool:
    """True when the server provably did not execute the request: a 429 (rejected before it was
    handled), a 503 (the server refuses to serve), or a connection that never reached it."""
    if isinstance(exc, Throttled):
        return True
    return isinstance(exc, Unavailable) and (exc.status == 503 or not exc.sent)


def should_retry(exc: BaseException, safety: Safety) -> bool:
    """Whether a call of this ``safety`` is tried again after ``exc``."""
    if not is_retryable(exc):
        return False
    if safety is Safety.SAFE:
        return True
    if safety is Safety.PROBE:
        return isinstance(exc, Throttled) or (isinstance(exc, Unavailable) and not exc.sent)
    return not_executed(exc)


class _Policy:
    """Stop and wait of one call in one object: the stop decision needs the wait it leads to
    (computed once per attempt, whichever of the two tenacity asks first)."""

    def __init__(self, settings: RetrySettings, clock: Clock, rng: random.Random) -> None:
        self.s, self.clock, self.rng = settings, clock, rng
        self.started = clock.monotonic()
        self.attempt_started = self.started
        self.longest = 0.0
        self._waits: dict[int, float] = {}

    def before(self, retry_state: tenacity.RetryCallState) -> None:
        self.attempt_started = self.clock.monotonic()

    def wait(self, retry_state: tenacity.RetryCallState) -> float:
        n = retry_state.attempt_number
        if n not in self._waits:
            s = self.s
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            if hinted is not None and hinted >= 0:
                self._waits[n] = float(hinted)
            else:
                base = s.initial_wait * s.multiplier ** max(n - 1, 0)
                self._waits[n] = min(base * (1.0 + s.jitter * self.rng.random()), s.max_wait)
        return self._waits[n]

    def stop(self, retry_state: tenacity.RetryCallState) -> bool:
        now = self.clock.monotonic()
        self.longest = max(self.longest, now - self.attempt_started)
        if retry_state.attempt_number >= max(self.s.attempts, 1):
            return True
        return now - self.started + self.wait(retry_state) + self.longest > self.s.deadline


def _log_retry(retry_state: tenacity.RetryCallState, name: str) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning("api.retry", call=name or getattr(retry_state.fn, "__name__", None),
                attempt=retry_state.attempt_number, error=type(exc).__name__, message=str(exc)[:120],
                wait=round(retry_state.next_action.sleep, 3) if retry_state.next_action else None)


def retrying(settings: RetrySettings | None = None, *, clock: Clock | None = None,
             rng: random.Random | None = None, safety: Safety = Safety.SAFE,
             on_retry: Callable[[BaseException], None] | None = None, name: str = "") -> tenacity.Retrying:
    """A fresh tenacity ``Retrying`` for one port call: ``retrying(s)(port.cordon_node, "node-1")``.

    Make one per call: the per-call deadline starts when it is made."""
    s = settings or RetrySettings()
    c = clock or SystemClock()
    policy = _Policy(s, c, rng or random.Random(0))

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        _log_retry(retry_state, name)
        if on_retry is not None and retry_state.outcome is not None:
            exc = retry_state.outcome.exception()
            if exc is not None:
                on_retry(exc)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: should_retry(exc, safety)),
        stop=policy.stop,
        wait=policy.wait,
        before=policy.before,
        sleep=c.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
