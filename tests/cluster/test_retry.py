"""retry.py: only Unavailable/Throttled are retried, Retry-After is honoured, attempts are bounded.

No real time passes: the policy sleeps on a FakeClock.
"""

from __future__ import annotations

import random

import pytest

from migrator.clock import Clock
from migrator.cluster.errors import (
    Conflict,
    DisruptionBudgetBlocked,
    Forbidden,
    Invalid,
    NotFound,
    Throttled,
    Unavailable,
)
from migrator.retry import RetrySettings, is_retryable, retrying

from .fakeclock import FakeClock


class Flaky:
    """Raises the given errors in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_fake_clock_satisfies_clock_protocol() -> None:
    assert isinstance(FakeClock(), Clock)


def test_retries_unavailable_then_succeeds_with_exponential_waits() -> None:
    clock = FakeClock()
    fn = Flaky(Unavailable("down"), Unavailable("down"))
    policy = retrying(RetrySettings(attempts=5, initial_wait=0.5, multiplier=2.0, jitter=0.0),
                      clock=clock)
    assert policy(fn) == "ok"
    assert fn.calls == 3
    assert clock.sleeps == [0.5, 1.0]


def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    fn = Flaky(Throttled("slow down", retry_after=3), Unavailable("busy", retry_after=99))
    policy = retrying(RetrySettings(attempts=5, initial_wait=0.1, max_wait=10.0), clock=clock)
    assert policy(fn) == "ok"
    assert clock.sleeps == [3.0, 10.0]


def test_gives_up_after_attempts_and_reraises_our_error() -> None:
    clock = FakeClock()
    fn = Flaky(*[Unavailable(f"down {i}") for i in range(10)])
    with pytest.raises(Unavailable, match="down 2"):
        retrying(RetrySettings(attempts=3, jitter=0.0), clock=clock)(fn)
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [
    Conflict("stale"), NotFound("gone"), Forbidden("rbac"), Invalid("bad"),
    DisruptionBudgetBlocked("pdb", retry_after=5),
])
def test_other_errors_are_not_retried(error: Exception) -> None:
    clock = FakeClock()
    fn = Flaky(error)
    with pytest.raises(type(error)):
        retrying(clock=clock)(fn)
    assert fn.calls == 1
    assert clock.sleeps == []
    assert not is_retryable(error)


def test_jitter_is_deterministic_for_a_seed() -> None:
    def waits(seed: int) -> list[float]:
        clock = FakeClock()
        retrying(RetrySettings(attempts=4, jitter=0.5), clock=clock, rng=random.Random(seed))(
            Flaky(Unavailable("a"), Unavailable("b"), Unavailable("c")))
        return clock.sleeps

    assert waits(7) == waits(7)
    assert waits(7) != waits(8)


def test_error_kind_names_for_action_results() -> None:
    from migrator.cluster.errors import ClusterError, Expired
    assert DisruptionBudgetBlocked("x").kind == "DisruptionBudgetBlocked"
    assert Unavailable("x").kind == "Unavailable"
    assert Expired("x").kind == "Error" and ClusterError("x").kind == "Error"
