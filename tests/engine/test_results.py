"""record_results: refused evictions back off and are retried, failures clear sent_at, harmless errors are ignored."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.actions import ActionResult, Cordon, DeletePod, EmitEvent, EnsureNodeConfig, EvictPod
from migrator.engine.results import record_results
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.states import NodePhase
from tests.engine.toy import T0


def checkpoint(intent: Intent, phase: NodePhase = NodePhase.CORDONED) -> Checkpoint:
    return Checkpoint(plan_name="p", plan_hash="h", run_id="r", started_at=T0,
                      nodes=(NodeRecord(name="n1", phase=phase, attempt=1, phase_started_at=T0, intent=intent),))


EVICT = EvictPod(node="n1", namespace="shop", name="web-1", uid="u1")


def test_pdb_refusal_forgets_the_uid_and_backs_off() -> None:
    cp = checkpoint(Intent(step="drain", pods=("u1", "u2"), sent_at=T0))
    now = T0 + timedelta(seconds=3)
    result = ActionResult.failure(EVICT, "DisruptionBudgetBlocked", "Cannot evict pod", retry_after=7)
    after = record_results(cp, [result], now).node("n1")
    assert after.intent.pods == ("u2",)
    assert after.intent.not_before == now + timedelta(seconds=7)
    assert after.intent.blocked_since == now
    assert "DisruptionBudgetBlocked" in after.last_error
    later = record_results(checkpoint(after.intent), [result], now + timedelta(seconds=10)).node("n1")
    assert later.intent.blocked_since == now


def test_harmless_and_event_outcomes_change_nothing() -> None:
    cp = checkpoint(Intent(step="drain", pods=("u1",), sent_at=T0))
    gone = ActionResult.failure(EVICT, "NotFound", "gone")
    event = ActionResult.failure(EmitEvent(node="n1", reason="R", message="m"), "Forbidden", "no")
    assert record_results(cp, [gone, event, ActionResult.success(EVICT)], T0) == cp


def test_failed_single_action_is_resent() -> None:
    cp = checkpoint(Intent(step="cordon", sent_at=T0), phase=NodePhase.PENDING)
    after = record_results(cp, [ActionResult.failure(Cordon(node="n1"), "Unavailable", "503")], T0).node("n1")
    assert after.intent.sent_at is None and after.intent.not_before == T0 + timedelta(seconds=5)
    agent = DeletePod(node="n1", namespace="kube-system", name="cilium-x", uid="a1", reason="agent-restart")
    cp = checkpoint(Intent(step="restart-agent", agent_uid="a1", sent_at=T0), phase=NodePhase.LABELED)
    after = record_results(cp, [ActionResult.failure(agent, "Forbidden", "rbac")], T0).node("n1")
    assert after.intent.sent_at is None and after.intent.agent_uid == "a1"


def test_run_level_failure_is_recorded() -> None:
    cp = checkpoint(Intent(step="cordon"), phase=NodePhase.PENDING).model_copy(update={"prepare_sent_at": T0})
    action = EnsureNodeConfig(namespace="kube-system", name="cilium-default", api_version="cilium.io/v2",
                              node_selector={}, defaults={})
    after = record_results(cp, [ActionResult.failure(action, "Invalid", "schema")], T0)
    assert after.prepare_sent_at is None and "Invalid" in after.last_error
