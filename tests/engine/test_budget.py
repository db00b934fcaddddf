"""Disruption room: nodes in flight share a PDB's room, spend it once, and use it during a back-off."""

from __future__ import annotations

from datetime import timedelta

import pytest

from migrator.engine.actions import ActionResult, EvictPod, LabelNode
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.node_steps import UNSEEN_ROOM_RECHECK, StepContext
from migrator.engine.results import record_results
from migrator.engine.steps import step_node
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.observation import ClusterObservation, LabelSelector, PdbFacts, PodFacts
from migrator.model.states import NodePhase
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


def test_without_room_the_server_is_asked_first_then_only_as_a_recheck() -> None:
    assert _evicted(_toy(allowed=0), _draining(**{"node-1": Intent(step="drain")})) == ["web-node-1-0"]
    over = Intent(step="drain", not_before=NOW - timedelta(seconds=1), blocked_since=T0)
    assert _evicted(_toy(allowed=0), _draining(**{"node-1": over})) == []   # the watch shows the room
    cp = _draining(**{"node-1": over})
    out = step_node(cp.nodes[0], StepContext.of(PLAN, cp, _toy(allowed=0).observe(), NOW))
    assert out.wake_at == over.not_before + UNSEEN_ROOM_RECHECK    # the safety net is scheduled
    stale = Intent(step="drain", not_before=NOW - UNSEEN_ROOM_RECHECK, blocked_since=T0)
    assert _evicted(_toy(allowed=0), _draining(**{"node-1": stale})) == ["web-node-1-0"]


@pytest.mark.parametrize(("changed_ago", "asks"), [(timedelta(seconds=2), False), (UNSEEN_ROOM_RECHECK, True)])
def test_no_recheck_while_the_budget_keeps_giving_room_to_others(changed_ago, asks) -> None:
    """A node waiting its turn along a chain of evictions (the budget's DisruptionAllowed
    condition flipping as room is taken and given back) is woken by the room showing: asking
    the server again would only be refused. A budget quiet that long gets the safety net."""
    toy = _toy(allowed=0)
    toy.pdbs[0] = toy.pdbs[0].model_copy(update={"room_changed_at": NOW - changed_ago})
    stale = Intent(step="drain", not_before=NOW - UNSEEN_ROOM_RECHECK, blocked_since=T0)
    assert (_evicted(toy, _draining(**{"node-1": stale})) == ["web-node-1-0"]) is asks


def test_exempt_pods_need_no_room() -> None:
    toy = _toy(allowed=0)
    pod = toy.pods["shop/web-node-1-0"] = toy.pods["shop/web-node-1-0"].model_copy(
        update={"phase": "Pending"}
    )
    budgets = DisruptionBudgets(toy.observe())
    assert not budgets.guarded(pod) and budgets.take(pod)
    assert budgets.room(toy.pdbs[0]) == 0


@pytest.mark.parametrize(("policy", "healthy", "needs_room"), [
    ("IfHealthyBudget", 2, False),   # the application is not disrupted: an unready pod goes
    ("IfHealthyBudget", 1, True),    # disrupted: even an unready pod waits for room
    ("AlwaysAllow", 0, False),
])
def test_an_unready_pod_needs_room_only_as_its_budgets_unhealthy_pod_policy_says(policy, healthy, needs_room) -> None:
    toy = _toy(allowed=0)
    toy.pdbs[0] = toy.pdbs[0].model_copy(update={"unhealthy_pod_eviction_policy": policy,
                                                 "current_healthy": healthy, "desired_healthy": 2})
    key = "shop/web-node-1-0"
    toy.pods[key] = toy.pods[key].model_copy(update={"ready": False})
    budgets = DisruptionBudgets(toy.observe())
    assert budgets.guarded(toy.pods[key]) is needs_room
    assert budgets.guarded(toy.pods["shop/web-node-2-0"])      # a Ready pod always asks its budget
    over = Intent(step="drain", not_before=NOW - timedelta(seconds=1), blocked_since=T0)
    assert (_evicted(toy, _draining(**{"node-1": over})) == ["web-node-1-0"]) is not needs_room


def test_a_refusal_backs_off_for_the_plans_retry_interval_when_the_server_names_none() -> None:
    cp = _draining(**{"node-1": Intent(step="drain", pods=("u1",), sent_at=NOW)})
    refused = EvictPod(node="node-1", namespace="shop", name="web-node-1-0", uid="u1")
    after = record_results(
        cp, [ActionResult.failure(refused, "DisruptionBudgetBlocked", "PDB")], NOW, PLAN.drain.retry_interval
    ).node("node-1")
    assert after.intent.not_before == NOW + timedelta(seconds=2)
    assert after.intent.blocked_since == NOW and after.intent.pods == ()


IN_PLACE = make_plan(placement={"strategy": "in-place"})


def _in_place_toy(*, healthy: int, desired: int, unready_age: timedelta | None) -> ToyCluster:
    """web's budget at zero (``healthy`` Ready of ``desired`` needed), plus a web pod not Ready yet,
    created ``unready_age`` ago, on node-2."""
    toy = ToyCluster(workers=2, control_plane=0)
    toy.pdbs.append(PdbFacts(namespace="shop", name="web-pdb", selector=LabelSelector(match_labels={"app": "web"}),
                             disruptions_allowed=0, current_healthy=healthy, desired_healthy=desired,
                             expected_pods=desired + 1))
    if unready_age is not None:
        pod = toy._pod("shop", "web-new", "node-2", owner=("ReplicaSet", "web"), labels={"app": "web"})
        toy.pods[pod.key] = pod.model_copy(update={"ready": False, "created_at": NOW - unready_age})
    return toy


def _switch_decision(toy: ToyCluster, obs: ClusterObservation | None = None) -> str:
    """What node-1, about to be switched in place, does in one decision: "label" or its note."""
    record = NodeRecord(name="node-1", phase=NodePhase.PENDING, attempt=1, phase_started_at=NOW,
                        intent=Intent(step="label"))
    cp = Checkpoint(plan_name="p", plan_hash="h", run_id="r", started_at=T0, nodes=(record,))
    out = step_node(record, StepContext.of(IN_PLACE, cp, obs or toy.observe(), NOW))
    return "label" if any(isinstance(a, LabelNode) for a in out.actions) else out.note


def test_in_place_switch_goes_ahead_while_the_budget_waits_only_for_a_starting_replacement() -> None:
    toy = _in_place_toy(healthy=2, desired=2, unready_age=timedelta(seconds=2))
    assert _switch_decision(toy) == "label"


def test_in_place_switch_waits_for_a_budget_held_by_a_pod_that_stays_unready() -> None:
    toy = _in_place_toy(healthy=2, desired=2, unready_age=timedelta(minutes=5))   # crash-looping
    assert _switch_decision(toy).startswith("waiting before the switch: shop/web-node-1-0 is guarded")
    toy = _in_place_toy(healthy=2, desired=2, unready_age=None)
    assert _switch_decision(toy).startswith("waiting before the switch")


def test_in_place_switch_counts_a_starting_replacement_off_the_nodes_in_flight() -> None:
    """The replacement of a pod evicted on another node lands anywhere, or nowhere yet: only the
    pods of the nodes in flight are observed, and ``budget_pods`` brings the budget's pods that
    are not Ready from everywhere else."""
    toy = _in_place_toy(healthy=2, desired=2, unready_age=None)
    full = toy.observe()
    scoped = full.model_copy(update={"pod_nodes": frozenset({"node-1"}), "pods": full.pods_on("node-1")})
    assert _switch_decision(toy, scoped).startswith("waiting before the switch")
    unscheduled = PodFacts(namespace="shop", name="web-new", uid="u-new", phase="Pending", labels={"app": "web"},
                           owner_kind="ReplicaSet", owner_name="web", created_at=NOW - timedelta(seconds=1))
    assert _switch_decision(toy, scoped.model_copy(update={"budget_pods": (unscheduled,)})) == "label"
    stuck = unscheduled.model_copy(update={"created_at": NOW - timedelta(minutes=5)})
    assert _switch_decision(toy, scoped.model_copy(update={"budget_pods": (stuck,)})).startswith(
        "waiting before the switch")


def test_in_place_switch_waits_when_the_starting_pods_would_not_give_the_budget_room() -> None:
    toy = _in_place_toy(healthy=1, desired=2, unready_age=timedelta(seconds=2))   # one more is down
    assert _switch_decision(toy).startswith("waiting before the switch")
