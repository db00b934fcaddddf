"""Start gates: may a new node start now, and if not, when to look again.

Gates only hold back the *start* of a node; a node already in flight always continues (a half
migrated node is worse than a late one). The maintenance window is evaluated in its own time
zone (``zoneinfo``), a window whose end is before its start runs overnight and belongs to the
day it opens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from migrator.model.checkpoint import Checkpoint
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, WindowGate

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _open_at(window: WindowGate, day: datetime) -> tuple[datetime, datetime]:
    start = day.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    end = day.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
    if end <= start:
        end += timedelta(days=1)
    return start, end


def window_state(window: WindowGate, now: datetime) -> tuple[bool, datetime | None]:
    """(inside the window now?, when it next opens — or closes when inside)."""
    zone = ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    upcoming: datetime | None = None
    for offset in range(-1, 8):
        day = (local + timedelta(days=offset)).replace(tzinfo=None)
        if _DAYS[day.weekday()] not in window.days:
            continue
        start, end = _open_at(window, day)
        start, end = start.replace(tzinfo=zone), end.replace(tzinfo=zone)
        if start <= local < end:
            return True, end
        if start > local and (upcoming is None or start < upcoming):
            upcoming = start
    return False, upcoming


def start_gate(plan: MigrationPlan, checkpoint: Checkpoint, obs: ClusterObservation,
               now: datetime) -> tuple[str | None, datetime | None]:
    """(reason no node may start now or None, when to look again)."""
    gates = plan.gates
    if gates.window is not None:
        inside, moment = window_state(gates.window, now)
        if not inside:
            when = moment.isoformat() if moment else "never"
            return f"outside the maintenance window (opens {when})", moment
    if gates.pause_between_nodes and checkpoint.last_node_done_at is not None:
        ready_at = checkpoint.last_node_done_at + gates.pause_between_nodes
        if now < ready_at:
            return f"pausing between nodes until {ready_at.isoformat()}", ready_at
    if gates.blocking_pods is not None and obs.blocking_pods:
        names = ", ".join(p.key for p in obs.blocking_pods[:3])
        return f"blocking pods present: {names}", None
    return None, None
