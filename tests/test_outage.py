"""The outage episode on a fake clock: when it begins and ends, how long the runner pauses,
when it gives up, and what the metrics and the progress line say."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from migrator.cluster.errors import Throttled, Unavailable
from migrator.log import configure
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint
from migrator.outage import MAX_PAUSE, ApiOutage
from migrator.progress import Progress
from tests.cluster.fakeclock import FakeClock

START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def every_level_logged() -> Iterator[None]:
    """Log at every level here (an earlier test may have set ``--log-level warning``), then
    put the logging configuration back."""
    saved = structlog.get_config()
    configure(level="debug", stream=io.StringIO())
    yield
    structlog.configure(**saved)


def _value(metrics: Metrics, name: str) -> float:
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(name)


def test_an_episode_is_counted_waited_out_and_ended_by_a_call_that_succeeds() -> None:
    clock, metrics = FakeClock(START), Metrics()
    progress = Progress(io.StringIO())
    cp = Checkpoint(plan_name="p", plan_hash="h", run_id="r", started_at=START)
    progress.update(cp)
    outage = ApiOutage(timedelta(minutes=1), clock=clock, metrics=metrics, progress=progress)
    outage.recovered()                                    # nothing to end
    assert not outage.active and _value(metrics, "migrator_api_outages_total") == 0
    error = Unavailable("connection refused")
    with capture_logs() as logs:
        assert outage.failed(error, where="observe") is None
    assert logs == [{"event": "api.unavailable", "log_level": "warning", "since": "2026-01-01T03:00:00+00:00",
                     "for": 0.0, "where": "observe", "error": "Unavailable", "message": "connection refused",
                     "tolerance": "1m"}]
    assert outage.since == START and _value(metrics, "migrator_api_unavailable") == 1
    assert "API server unavailable since 03:00:00Z" in progress.line(cp)
    pauses = []
    with capture_logs() as logs:
        for _ in range(6):
            pauses.append(outage.pause(error))
            clock.advance(pauses[-1])
            assert outage.failed(error, where="checkpoint save") is None
        assert outage.pause(Throttled("slow down", retry_after=3)) == 3           # the server's Retry-After
        outage.recovered()
    assert pauses == sorted(pauses) and pauses[0] < pauses[-1] == MAX_PAUSE       # backs off, capped
    assert [e["event"] for e in logs] == ["api.unavailable", "api.recovered"]     # repeated lines are paced
    assert logs[-1]["for"] == sum(pauses) and logs[-1]["failed_turns"] == 7
    assert not outage.active and _value(metrics, "migrator_api_unavailable") == 0
    assert _value(metrics, "migrator_api_unavailable_seconds_total") == sum(pauses)
    assert "unavailable" not in progress.line(cp)
    clock.advance(30)
    with capture_logs():
        outage.failed(error, where="actions")
    assert outage.since == START + timedelta(seconds=sum(pauses) + 30)
    assert _value(metrics, "migrator_api_outages_total") == 2


def test_past_the_tolerance_the_message_says_since_when_and_what_to_do() -> None:
    clock = FakeClock(START)
    outage = ApiOutage(timedelta(seconds=90), clock=clock, metrics=Metrics())
    with capture_logs():
        assert outage.failed(Throttled("too many requests"), where="observe") is None
        clock.advance(90)
        assert outage.failed(Throttled("too many requests"), where="observe") is None   # not longer yet
        assert outage.pause(Throttled("too many requests", retry_after=60)) <= 0.05 + 1e-9  # the next try decides
        clock.advance(1)
        message = outage.failed(Unavailable("503"), where="checkpoint save")
    assert message is not None
    assert "the API server has been unavailable since 2026-01-01 03:00:00Z (for 1m31s)" in message
    assert "longer than api.outage_tolerance=1m30s" in message and "checkpoint save: Unavailable: 503" in message
    assert "run `migrator resume` once the API server is back" in message
