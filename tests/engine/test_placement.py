"""Steering taints: recorded before they are sent, removed once nothing wants them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from migrator.engine.placement import reconcile
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.observation import ClusterObservation, NodeFacts, Taint
from migrator.model.plan import STEER_TAINT
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
STEER = make_plan(placement={"strategy": "steer"})
TAINT = Taint(key=STEER_TAINT, effect="PreferNoSchedule")


def _cp(**phases: NodePhase) -> Checkpoint:
    return Checkpoint(plan_name="t", plan_hash="h", run_id="r", run_phase=RunPhase.MIGRATING, started_at=T0,
                      nodes=tuple(NodeRecord(name=n, phase=p, intent=Intent(step="drain") if p is NodePhase.CORDONED
                                             else None) for n, p in phases.items()))


def _obs(tainted: set[str], names: list[str]) -> ClusterObservation:
    return ClusterObservation(nodes=tuple(NodeFacts(name=n, taints=(TAINT,) if n in tainted else ()) for n in names))


def test_pending_nodes_are_recorded_then_tainted_and_started_ones_untainted():
    cp = _cp(**{"node-1": NodePhase.CORDONED, "node-2": NodePhase.PENDING, "node-3": NodePhase.PENDING})
    cp, actions = reconcile(STEER, cp, _obs({"node-1"}, ["node-1", "node-2", "node-3"]), T0, winding_down=False)
    assert set(cp.steered) == {"node-2", "node-3"}  # node-1 was never recorded: not ours to remove
    assert {(a.node, a.present) for a in actions} == {("node-2", True), ("node-3", True)}
    cp = cp.model_copy(update={"steered": (*cp.steered, "node-1")})
    cp, actions = reconcile(STEER, cp, _obs({"node-1", "node-2", "node-3"}, ["node-1", "node-2", "node-3"]),
                            T0 + timedelta(seconds=1), winding_down=False)
    assert [(a.node, a.present) for a in actions] == [("node-1", False)]


def test_winding_down_removes_every_recorded_taint_and_forgets_it_once_observed():
    cp = _cp(**{"node-2": NodePhase.PENDING}).model_copy(update={"steered": ("node-2",), "steer_sent_at": T0})
    later = T0 + timedelta(seconds=30)
    cp, actions = reconcile(STEER, cp, _obs({"node-2"}, ["node-2"]), later, winding_down=True)
    assert [(a.node, a.present) for a in actions] == [("node-2", False)] and cp.steered == ("node-2",)
    cp, actions = reconcile(STEER, cp, _obs(set(), ["node-2"]), later, winding_down=True)
    assert actions == [] and cp.steered == ()


def test_drain_strategy_never_taints():
    cp, actions = reconcile(make_plan(placement={"strategy": "drain"}), _cp(**{"node-2": NodePhase.PENDING}),
                            _obs(set(), ["node-2"]), T0, winding_down=False)
    assert actions == [] and cp.steered == ()


def test_in_place_keeps_the_taint_on_started_nodes_until_their_agent_is_ready():
    plan = make_plan(placement={"strategy": "in-place"})
    names = ["node-1", "node-2", "node-3", "node-4"]
    cp = _cp(**{"node-1": NodePhase.LABELED, "node-2": NodePhase.AGENT_RESTARTED,
                "node-3": NodePhase.PENDING, "node-4": NodePhase.DONE})
    cp = cp.model_copy(update={"nodes": tuple(
        r.model_copy(update={"intent": Intent(step="label")}) if r.name == "node-3" else r for r in cp.nodes)})
    cp, actions = reconcile(plan, cp, _obs({"node-2"}, names), T0, winding_down=False)
    assert set(cp.steered) == {"node-1", "node-3"}
    assert {(a.node, a.present) for a in actions} == {("node-1", True), ("node-3", True)}
