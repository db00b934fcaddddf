"""``Pending``: when an action that was sent may be sent again.

Every step that sends an action records when (``sent_at``) before the action runs. The cache
the engine observes through is eventually consistent and a crash may lose a request, so an
action whose effect has not shown is sent again — but only ``RESEND_AFTER`` later, never on
every loop turn. This one value replaces the per-step copies of that check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: How long an action's effect may take to show before the action is sent again.
RESEND_AFTER = timedelta(seconds=20)


@dataclass(frozen=True)
class Pending:
    """An action sent at ``sent_at`` (None: never sent), resent ``after`` that."""

    sent_at: datetime | None
    after: timedelta = RESEND_AFTER

    def due(self, now: datetime) -> bool:
        """The action should be (re)sent now."""
        return self.sent_at is None or now >= self.sent_at + self.after

    def wake_at(self, now: datetime) -> datetime:
        """When to look again: the resend moment, counted from now when the action goes now."""
        if self.sent_at is None or self.due(now):
            return now + self.after
        return self.sent_at + self.after
