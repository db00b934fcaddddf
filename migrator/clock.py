"""Time as an input: the ``Clock`` Protocol and the production ``SystemClock``.

Every deadline in the migrator is ``phase_started_at + timeout`` computed from a ``Clock``
that the shell receives, so tests can substitute a fake clock and assert that no real time
passed. The engine never reads a clock: it is handed ``now``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall time (timezone-aware UTC), a monotonic counter, and sleeping."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for measuring durations)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a fake clock advances instead)."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
