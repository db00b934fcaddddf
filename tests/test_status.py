"""``migrator status`` tells a live run from a dead one, says why each node waits and how much
canary soak is left — from the checkpoint and the Lease, with no clock of its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from migrator.cluster.port import LeaseRecord
from migrator.model.checkpoint import CanaryState, Checkpoint, Intent, NodeRecord
from migrator.model.plan import load_plan
from migrator.model.states import NodePhase, RunPhase
from migrator.status import LockView, render_status, waiting_reason
from tests.chaos.test_bad_inputs import EXAMPLE

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PLAN = load_plan(EXAMPLE)


def lease(renewed: datetime | None, holder: str | None = "host-a/4242/run1") -> LeaseRecord:
    return LeaseRecord(namespace="kube-system", name="cni-migration-lock", holder=holder, duration_seconds=30,
                       acquire_time=renewed, renew_time=renewed)


def view(record: LeaseRecord | None) -> LockView:
    return LockView.of(record, where="lease kube-system/cni-migration-lock", default_seconds=30, now=NOW)


def run(**changes: object) -> Checkpoint:
    nodes = (
        NodeRecord(name="node-1", phase=NodePhase.DONE, attempt=1),
        NodeRecord(name="node-2", phase=NodePhase.CORDONED, attempt=1, phase_started_at=NOW - timedelta(minutes=2),
                   intent=Intent(step="drain", blocked_since=NOW - timedelta(minutes=1),
                                 not_before=NOW + timedelta(seconds=5))),
        NodeRecord(name="node-3"),
        NodeRecord(name="node-4"),
    )
    base = Checkpoint(plan_name="example", plan_hash="h", run_id="r1", run_phase=RunPhase.MIGRATING,
                      started_at=NOW - timedelta(minutes=10), nodes=nodes)
    return base.model_copy(update=changes)


def test_a_lease_renewed_within_its_duration_is_live() -> None:
    lock = view(lease(NOW - timedelta(seconds=10)))
    assert lock.live and lock.stale_since is None
    assert lock.summary() == ("lease kube-system/cni-migration-lock held by host-a/4242/run1, renewed 10s ago "
                              "(live: within its 30s duration)")


def test_a_lease_past_its_duration_is_stale_since_its_expiry() -> None:
    lock = view(lease(NOW - timedelta(minutes=5)))
    assert not lock.live
    assert lock.stale_since == NOW - timedelta(minutes=5) + timedelta(seconds=30)
    assert "stale since 2026-01-01T11:55:30+00:00 (not renewed for 5m; that process is dead or hung)" \
        in lock.summary()


def test_no_lease_or_no_holder_is_free() -> None:
    for record in (None, lease(NOW, holder=None)):
        lock = view(record)
        assert not lock.live and lock.summary().endswith("is free: no process holds it")


def test_why_nodes_wait() -> None:
    cp = run()
    drained = waiting_reason(cp, cp.nodes[1], PLAN, NOW)
    assert "step drain" in drained
    assert "evictions refused by a PodDisruptionBudget since 2026-01-01T11:59:00+00:00" in drained
    assert "backing off until 2026-01-01T12:00:05+00:00" in drained
    assert waiting_reason(cp, cp.nodes[3], PLAN, NOW) == \
        "queued: 1 node(s) ahead; at most 1 at once, in flight: node-2"
    assert waiting_reason(cp, cp.nodes[0], PLAN, NOW) == ""
    halted = run(halted="probe gate failed on node-2")
    assert waiting_reason(halted, halted.nodes[2], PLAN, NOW).startswith("run halted")
    paused = run(run_phase=RunPhase.PAUSED)
    assert waiting_reason(paused, paused.nodes[2], PLAN, NOW).startswith("run paused")
    aborting = run(requested="abort")
    assert waiting_reason(aborting, aborting.nodes[2], PLAN, NOW) == "abort requested: this node will not start"
    preflight = run(run_phase=RunPhase.PREFLIGHT)
    assert waiting_reason(preflight, preflight.nodes[2], PLAN, NOW) == "waiting for preflight to pass"


def test_table_and_json_show_the_lock_the_reasons_and_the_soak_left() -> None:
    cp = run(canary=CanaryState(soak_until=NOW + timedelta(minutes=4)))
    lock = view(lease(NOW - timedelta(minutes=5)))
    table = render_status(cp, "table", lock=lock, plan=PLAN, now=NOW)
    assert "lock: lease kube-system/cni-migration-lock held by host-a/4242/run1, stale since" in table
    assert "canary: soaking, soak left 4m (until 2026-01-01T12:04:00+00:00)" in table
    assert "queued: 1 node(s) ahead" in table
    data = json.loads(render_status(cp, "json", lock=lock, plan=PLAN, now=NOW))
    assert data["lock"]["live"] is False and data["lock"]["holder"] == "host-a/4242/run1"
    assert data["canary_soak_left_seconds"] == 240
    assert data["waiting"]["node-3"].startswith("queued: 0 node(s) ahead")


def test_the_nodes_policy_gap_reports_are_listed_and_kept_in_json() -> None:
    gap = "2 flow(s) enforced differently from before the run during this node's window: a -> b 80/TCP"
    cp = run()
    cp = cp.with_nodes({"node-1": cp.by_name["node-1"].model_copy(update={"policy_gap": gap})})
    text = render_status(cp, lock=view(None), plan=PLAN, now=NOW)
    head, _, gaps = text.partition("POLICY GAP")
    assert gaps and f"node-1  {gap}" in gaps and "node-2" not in gaps
    data = json.loads(render_status(cp, "json", lock=view(None), plan=PLAN, now=NOW))
    assert [n.get("policy_gap") for n in data["nodes"]][:2] == [gap, None]
