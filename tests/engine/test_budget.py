"""Disruption room: nodes in flight share a PDB's room, spend it once, and use it during a back-off."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.actions import ActionResult, EvictPod
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.node_steps import StepContext
from migrator.engine.results import record_results
from migrator.engine.states import NodePhase
from migrator.engine.steps import step_node
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from tests.engine.loop import make_plan
from tests.engine.toy import T0, ToyCluster

NOW = T0 + timedelta(seconds=30)
PLAN = make_plan(concurrency={"max_unavailable": 2}, drain={"retry_interval": "2s"})


def _toy(allowed: int) -> ToyCluster:
    toy = ToyCluster(workers=2, control_plane=0)
    toy.add_pdb("web", allowed=allowed)
    for name, node in toy.nodes.items():
        toy.nodes[name] = node.model_copy(update={"unschedulable": True})
    return toy


def _draining(**intents: Intent) -> Checkpoint:
    return Checkpoint(
        plan_name="p",
        plan_hash="h",
        run_id="r",
        started_at=T0,
        nodes=tuple(
            NodeRecord(name=name, phase=NodePhase.CORDONED, attempt=1, phase_started_at=T0, intent=intent)
            for name, intent in intents.items()
        ),
    )


def _evicted(toy: ToyCluster, cp: Checkpoint) -> list[str]:
    """The pods each draining node evicts in one decision, in order."""
    ctx = StepContext.of(PLAN, cp, toy.observe(), NOW)
    return [a.name for r in cp.nodes for a in step_node(r, ctx).actions if isinstance(a, EvictPod)]


def test_two_nodes_sharing_a_budget_with_room_for_one_evict_one_pod() -> None:
    toy = _toy(allowed=1)
    cp = _draining(**{"node-1": Intent(step="drain"), "node-2": Intent(step="drain")})
    assert _evicted(toy, cp) == ["web-node-1-0"]


def test_an_eviction_sent_but_not_yet_observed_holds_its_room() -> None:
    toy = _toy(allowed=1)
    web1 = toy.pods["shop/web-node-1-0"].uid
    backing_off = Intent(step="drain", not_before=NOW + timedelta(seconds=3), blocked_since=T0)
    cp = _draining(**{"node-1": Intent(step="drain", pods=(web1,), sent_at=NOW), "node-2": backing_off})
    assert _evicted(toy, cp) == []
    toy.pods["shop/web-node-1-0"] = toy.pods["shop/web-node-1-0"].model_copy(update={"deleting": True})
    assert _evicted(toy, cp) == ["web-node-2-0"]  # deleting: the budget's status already counts it


def test_a_node_backing_off_after_a_pdb_refusal_evicts_as_soon_as_room_shows() -> None:
    backing_off = Intent(step="drain", not_before=NOW + timedelta(seconds=3), blocked_since=T0)
    assert _evicted(_toy(allowed=0), _draining(**{"node-1": backing_off})) == []
    assert _evicted(_toy(allowed=1), _draining(**{"node-1": backing_off})) == ["web-node-1-0"]


def test_a_throttling_back_off_is_waited_out_even_with_room() -> None:
    throttled = Intent(step="drain", not_before=NOW + timedelta(seconds=3))
    assert _evicted(_toy(allowed=5), _draining(**{"node-1": throttled})) == []


def test_without_room_the_server_is_still_asked_once_the_back_off_is_over() -> None:
    over = Intent(step="drain", not_before=NOW - timedelta(seconds=1), blocked_since=T0)
    assert _evicted(_toy(allowed=0), _draining(**{"node-1": over})) == ["web-node-1-0"]


def test_exempt_pods_need_no_room() -> None:
    toy = _toy(allowed=0)
    pod = toy.pods["shop/web-node-1-0"] = toy.pods["shop/web-node-1-0"].model_copy(
        update={"phase": "Pending"}
    )
    budgets = DisruptionBudgets(toy.observe())
    assert not budgets.guarded(pod) and budgets.take(pod)
    assert budgets.room(toy.pdbs[0]) == 0


def test_a_refusal_backs_off_for_the_plans_retry_interval_when_the_server_names_none() -> None:
    cp = _draining(**{"node-1": Intent(step="drain", pods=("u1",), sent_at=NOW)})
    refused = EvictPod(node="node-1", namespace="shop", name="web-node-1-0", uid="u1")
    after = record_results(
        cp, [ActionResult.failure(refused, "DisruptionBudgetBlocked", "PDB")], NOW, PLAN.drain.retry_interval
    ).node("node-1")
    assert after.intent.not_before == NOW + timedelta(seconds=2)
    assert after.intent.blocked_since == NOW and after.intent.pods == ()
