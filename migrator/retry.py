"""The only place that retries API calls: tenacity policies built from settings.

Only ``Unavailable`` and ``Throttled`` are retried; a ``Retry-After`` sent by the server is
honoured (capped by ``max_wait``) and otherwise the wait grows exponentially with jitter from
an injected ``random.Random``. Everything else propagates at once: a ``Conflict`` means
"reload and decide again", a ``DisruptionBudgetBlocked`` is a drain decision, ``Forbidden``
and ``Invalid`` will not get better by waiting. Step attempt counts that must survive a crash
live in the checkpoint, not here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import structlog
import tenacity

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import Throttled, Unavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry a transient API failure."""

    attempts: int = 5            # total tries, including the first
    initial_wait: float = 0.2    # seconds before the second try
    max_wait: float = 10.0       # cap on any single wait, Retry-After included
    multiplier: float = 2.0      # exponential growth per attempt
    jitter: float = 0.1          # fraction of the wait added at random


def is_retryable(exc: BaseException) -> bool:
    """True for the two transient error classes, and nothing else."""
    return isinstance(exc, (Unavailable, Throttled))


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server sent one, else capped exponential backoff with jitter."""

    def __init__(self, settings: RetrySettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        s = self.settings
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        if hinted is not None and hinted >= 0:
            return min(float(hinted), s.max_wait)
        base = s.initial_wait * s.multiplier ** max(retry_state.attempt_number - 1, 0)
        return min(base * (1.0 + s.jitter * self.rng.random()), s.max_wait)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning("api.retry", attempt=retry_state.attempt_number,
                error=type(exc).__name__, message=str(exc)[:120],
                wait=round(retry_state.next_action.sleep, 3) if retry_state.next_action else None)


def retrying(settings: RetrySettings | None = None, *, clock: Clock | None = None,
             rng: random.Random | None = None) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for port calls: ``retrying(s)(port.cordon_node, "node-1")``."""
    s = settings or RetrySettings()
    c = clock or SystemClock()
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        stop=tenacity.stop_after_attempt(max(s.attempts, 1)),
        wait=_Wait(s, rng or random.Random(0)),
        sleep=c.sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
