"""retry.py: only Unavailable/Throttled are retried, Retry-After is honoured, each call is bounded
in attempts and in time, and a call whose repeat could act twice is retried only when the
server provably did not execute it.

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
    LeaseExpired,
    NotFound,
    Throttled,
    Unavailable,
)
from migrator.retry import RetrySettings, Safety, is_retryable, retrying

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


def test_retry_after_is_honoured_even_beyond_the_backoff_cap() -> None:
    clock = FakeClock()
    fn = Flaky(Throttled("slow down", retry_after=3), Unavailable("busy", retry_after=12))
    policy = retrying(RetrySettings(attempts=5, initial_wait=0.1, max_wait=8.0, deadline=30.0), clock=clock)
    assert policy(fn) == "ok"
    assert clock.sleeps == [3.0, 12.0]


def test_a_retry_after_past_the_deadline_goes_to_the_caller_at_once() -> None:
    clock = FakeClock()
    fn = Flaky(Throttled("slow down", retry_after=99))
    with pytest.raises(Throttled) as caught:
        retrying(RetrySettings(deadline=30.0), clock=clock)(fn)
    assert fn.calls == 1 and clock.sleeps == []
    assert caught.value.retry_after == 99  # the engine backs off by it (checkpoint not_before)


def test_a_long_outage_reaches_the_caller_within_the_deadline() -> None:
    clock = FakeClock()
    fn = Flaky(*[Unavailable(f"refused {i}", sent=False) for i in range(100)])
    with pytest.raises(Unavailable):
        retrying(RetrySettings(attempts=100, deadline=30.0), clock=clock, rng=random.Random(1))(fn)
    assert fn.calls > 5
    assert sum(clock.sleeps) <= 30.0
    assert max(clock.sleeps) <= 8.0


def test_slow_attempts_count_against_the_deadline() -> None:
    """Each attempt hangs 20 s (a read timeout): a second one could not end within 30 s."""
    clock = FakeClock()
    calls = []

    def hangs() -> str:
        calls.append(clock.monotonic())
        clock.advance(20.0)
        raise Unavailable("the API server did not answer in time")

    with pytest.raises(Unavailable):
        retrying(RetrySettings(attempts=10, deadline=30.0), clock=clock)(hangs)
    assert calls == [0.0]
    assert clock.monotonic() <= 30.0


def test_gives_up_after_attempts_and_reraises_our_error() -> None:
    clock = FakeClock()
    fn = Flaky(*[Unavailable(f"down {i}") for i in range(10)])
    with pytest.raises(Unavailable, match="down 2"):
        retrying(RetrySettings(attempts=3, jitter=0.0), clock=clock)(fn)
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [
    Conflict("stale"), NotFound("gone"), Forbidden("rbac"), Invalid("bad"),
    DisruptionBudgetBlocked("pdb", retry_after=5), LeaseExpired("lease expired"),
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


# -- which failures a call is retried on, by how safe a repeat is -------------------------------
THROTTLED = Throttled("too many requests", retry_after=1)
UNAVAILABLE_503 = Unavailable("unavailable", status=503)
INTERNAL_500 = Unavailable("internal error", status=500)
GATEWAY_504 = Unavailable("gateway timeout", status=504)
REFUSED = Unavailable("connection refused", sent=False)
READ_TIMEOUT = Unavailable("did not answer in time", sent=True)
RESET = Unavailable("connection reset", sent=True)


@pytest.mark.parametrize(("error", "safe", "once", "probe"), [
    (THROTTLED, True, True, True),
    (UNAVAILABLE_503, True, True, False),
    (INTERNAL_500, True, False, False),
    (GATEWAY_504, True, False, False),
    (REFUSED, True, True, True),
    (READ_TIMEOUT, True, False, False),
    (RESET, True, False, False),
])
def test_retry_matrix(error: Exception, safe: bool, once: bool, probe: bool) -> None:
    for safety, expected in ((Safety.SAFE, safe), (Safety.ONCE, once), (Safety.PROBE, probe)):
        fn = Flaky(error)
        policy = retrying(RetrySettings(jitter=0.0), clock=FakeClock(), safety=safety)
        if expected:
            assert policy(fn) == "ok", safety
            assert fn.calls == 2
        else:
            with pytest.raises(Unavailable):
                policy(fn)
            assert fn.calls == 1, f"{safety}: an unknown outcome must not be re-sent"


def test_each_retry_is_reported() -> None:
    seen: list[str] = []
    retrying(RetrySettings(jitter=0.0), clock=FakeClock(), on_retry=lambda e: seen.append(str(e)))(
        Flaky(Unavailable("one"), Throttled("two")))
    assert seen == ["one", "two"]
