"""Render a run's checkpoint for people (table, summary) and for tools (JSON, YAML).

Besides the journal, ``status`` answers what on-call asks first: is a process driving the run
(the Lease's holder, and whether it renewed within its duration: live, or stale since when), why
each node that is not moving is waiting (the run's halt, pause or abort; its place in the queue
behind the concurrency limit; the step in flight, a PDB blocking since when, a back-off, the last
error), and how much of a canary's soak is left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from migrator.cluster.port import LeaseRecord
from migrator.model.checkpoint import Checkpoint, NodeRecord, in_flight, render_summary
from migrator.model.plan import MigrationPlan
from migrator.model.states import NodePhase, RunPhase


@dataclass(frozen=True)
class LockView:
    """The run Lease as status shows it: who holds it and whether that holder is alive."""

    where: str
    holder: str | None
    renewed_at: datetime | None
    duration_seconds: int
    now: datetime

    @classmethod
    def of(cls, record: LeaseRecord | None, *, where: str, default_seconds: int,
           now: datetime | None = None) -> LockView:
        now = now or datetime.now(UTC)
        if record is None:
            return cls(where, None, None, default_seconds, now)
        return cls(where, record.holder, record.renew_time or record.acquire_time,
                   record.duration_seconds or default_seconds, now)

    @property
    def live(self) -> bool:
        """A holder renewed the Lease within its duration."""
        return bool(self.holder) and self.renewed_at is not None and \
            self.now <= self.renewed_at + timedelta(seconds=self.duration_seconds)

    @property
    def stale_since(self) -> datetime | None:
        if not self.holder or self.live or self.renewed_at is None:
            return None
        return self.renewed_at + timedelta(seconds=self.duration_seconds)

    @property
    def age_text(self) -> str:
        return _ago(self.renewed_at, self.now)

    def summary(self) -> str:
        if not self.holder:
            return f"{self.where} is free: no process holds it"
        if self.live:
            return (f"{self.where} held by {self.holder}, renewed {self.age_text} ago "
                    f"(live: within its {self.duration_seconds}s duration)")
        since = self.stale_since
        when = since.isoformat(timespec="seconds") if since else "never renewed"
        return (f"{self.where} held by {self.holder}, stale since {when} (not renewed for "
                f"{_ago(self.renewed_at, self.now)}; that process is dead or hung)")

    def data(self) -> dict[str, Any]:
        return {"where": self.where, "holder": self.holder, "live": self.live,
                "renewed_at": self.renewed_at.isoformat() if self.renewed_at else None,
                "duration_seconds": self.duration_seconds,
                "stale_since": self.stale_since.isoformat() if self.stale_since else None}


def status_data(cp: Checkpoint, lock: LockView | None = None, plan: MigrationPlan | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    data = cp.model_dump(mode="json", exclude_none=True)
    data["counts"] = {phase.value: n for phase, n in cp.counts().items()}
    if lock is not None:
        data["lock"] = lock.data()
    data["waiting"] = {r.name: why for r in cp.nodes if (why := waiting_reason(cp, r, plan, now))}
    left = soak_left(cp, now)
    if left is not None:
        data["canary_soak_left_seconds"] = int(left.total_seconds())
    return data


def soak_left(cp: Checkpoint, now: datetime) -> timedelta | None:
    """What is left of a soaking canary's soak (None when no canary soaks)."""
    if cp.canary is None or cp.canary.outcome != "soaking" or cp.canary.soak_until is None:
        return None
    return max(cp.canary.soak_until - now, timedelta(0))


def _queue(cp: Checkpoint, record: NodeRecord, plan: MigrationPlan | None) -> str:
    pending = [r.name for r in cp.nodes if r.phase is NodePhase.PENDING and not in_flight(r)]
    ahead = pending.index(record.name) if record.name in pending else 0
    flying = [r.name for r in cp.nodes if in_flight(r)]
    limit = f"at most {plan.concurrency.limit(len(cp.nodes))} at once, " if plan is not None else ""
    shown = ", ".join(flying[:5]) + (" …" if len(flying) > 5 else "")
    return (f"queued: {ahead} node(s) ahead; {limit}in flight: {shown or 'none'}"
            + ("" if flying else " (the next step boundary starts it, when its gates allow)"))


def waiting_reason(cp: Checkpoint, record: NodeRecord, plan: MigrationPlan | None, now: datetime) -> str:
    """Why ``record`` is not moving on, from what the checkpoint holds ("" for a finished node)."""
    if record.phase.terminal:
        return record.rollback_reason or record.last_error or ""
    why: list[str] = []
    intent = record.intent
    if record.last_error:
        why.append(f"last error: {record.last_error}")
    if intent is not None:
        step = intent.step + (f" ({intent.stage})" if intent.stage else "")
        why.append(f"step {step}")
        if intent.blocked_since is not None:
            why.append(f"evictions refused by a PodDisruptionBudget since {intent.blocked_since.isoformat(timespec='seconds')}")
        if intent.not_before is not None and intent.not_before > now:
            why.append(f"backing off until {intent.not_before.isoformat(timespec='seconds')}")
        if intent.owners:
            why.append(f"waiting for replacement pods of {', '.join(intent.owners[:3])}")
    run = cp.run_phase
    if cp.halted:
        why.insert(0, "run halted (see halted: above; fix it, then `migrator resume`)")
    elif cp.rollback is not None:
        why.insert(0, "on-call rollback in progress")
    elif run is RunPhase.PAUSED or cp.requested == "pause":
        why.insert(0, "run paused (`migrator resume` continues)" if run is RunPhase.PAUSED else "pause requested")
    elif cp.requested == "abort" and not in_flight(record):
        why.insert(0, "abort requested: this node will not start")
    elif run is RunPhase.PREFLIGHT:
        why.insert(0, "waiting for preflight to pass")
    elif run is RunPhase.PREPARED and not in_flight(record):
        why.insert(0, "waiting for the run to be prepared")
    elif record.phase is NodePhase.PENDING and not in_flight(record):
        why.append(_queue(cp, record, plan))
    return "; ".join(why)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    secs = int((now - moment).total_seconds())
    return f"{secs}s" if secs < 120 else (f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h")


def render_status(cp: Checkpoint, fmt: str = "table", *, lock: LockView | None = None,
                  plan: MigrationPlan | None = None, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    if fmt == "json":
        return json.dumps(status_data(cp, lock, plan, now), indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(status_data(cp, lock, plan, now), sort_keys=False)
    head = render_summary(cp).rsplit("\nnode lines:", 1)[0].rstrip()
    if fmt == "summary":
        return head
    if lock is not None:
        head += f"\nlock: {lock.summary()}"
    width = max([len(r.name) for r in cp.nodes] + [4])
    if cp.rollback is not None:
        head += f"\nrollback: {'--all' if cp.rollback.all else ', '.join(cp.rollback.nodes)} by {cp.rollback.by}"
    if cp.canary is not None:
        head += f"\ncanary: {cp.canary.outcome}" + (f" ({cp.canary.reason})" if cp.canary.reason else "")
        left = soak_left(cp, now)
        if left is not None and cp.canary.soak_until is not None:
            head += f", soak left {_ago(now - left, now)} (until {cp.canary.soak_until.isoformat(timespec='seconds')})"
    if cp.skipped_checks:
        head += "\nskipped checks: " + ", ".join(f"{s.check} (by {s.by})" for s in cp.skipped_checks)
    if cp.sampling.failures:
        head += "\nsample failures: " + "; ".join(cp.sampling.failures[:3])
    lines = [head, "", f"{'NODE':{width}}  {'PHASE':15} {'ATTEMPT':7} {'SINCE':6} {'PROBES':12} WHY / STEP / LAST ERROR"]
    for r in cp.nodes:
        note = waiting_reason(cp, r, plan, now)
        probes = (r.probes or "-").split(":", 1)[0][:12]
        lines.append(f"{r.name:{width}}  {r.phase.value:15} {r.attempt:<7} {_ago(r.phase_started_at, now):6} "
                     f"{probes:12} {note}")
    gaps = [r for r in cp.nodes if r.policy_gap]
    if gaps:
        lines += ["", "POLICY GAP (written before each switch: flows enforced on one side only in the node's window)"]
        lines += [f"{r.name:{width}}  {r.policy_gap}" for r in gaps]
    return "\n".join(lines)
