"""Node order and start selection: deterministic, canaries first, zones interleaved, control plane last."""

from __future__ import annotations

import pytest

from migrator.engine.decide import observe_scope
from migrator.engine.ordering import order_nodes, startable, starting_soon, unknown_nodes
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.observation import NodeFacts
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan
from tests.engine.toy import T0


def nodes() -> list[NodeFacts]:
    result = [NodeFacts(name="cp-1", zone="a", control_plane=True)]
    result += [NodeFacts(name=f"node-{i}", zone="abc"[i % 3]) for i in (10, 2, 1, 3, 4, 5)]
    return result


@pytest.mark.parametrize(("order", "nodes_section", "expected"), [
    ({"strategy": "name"}, {}, ("node-1", "node-2", "node-3", "node-4", "node-5", "node-10", "cp-1")),
    ({"strategy": "canaries-first", "canaries": ["node-4", "node-2"]}, {},
     ("node-4", "node-2", "node-1", "node-3", "node-5", "node-10", "cp-1")),
    ({"strategy": "zones-round-robin"}, {},
     ("node-3", "node-1", "node-2", "node-4", "node-5", "node-10", "cp-1")),
    ({"strategy": "explicit"}, {"names": ["cp-1", "node-5", "node-1"]}, ("node-5", "node-1", "cp-1")),
    ({"strategy": "name"}, {"exclude": ["node-2", "cp-1"]}, ("node-1", "node-3", "node-4", "node-5", "node-10")),
    ({"strategy": "name"}, {"selector": {"match_labels": {}}}, ("node-1", "node-2", "node-3", "node-4",
                                                               "node-5", "node-10", "cp-1")),
])
def test_order(order: dict, nodes_section: dict, expected: tuple[str, ...]) -> None:
    plan = make_plan(order=order, nodes=nodes_section)
    assert order_nodes(plan, nodes()) == expected
    assert order_nodes(plan, list(reversed(nodes()))) == expected


def test_unknown_nodes_are_reported() -> None:
    plan = make_plan(nodes={"names": ["node-1", "ghost"]}, order={"strategy": "canaries-first",
                                                                  "canaries": ["node-1"]})
    assert unknown_nodes(plan, nodes()) == ["ghost"]


def checkpoint(records: list[NodeRecord]) -> Checkpoint:
    return Checkpoint(plan_name="test", plan_hash="x", run_id="r", started_at=T0, nodes=tuple(records))


def test_concurrency_and_per_zone_limits() -> None:
    facts = {n.name: n for n in nodes()}
    plan = make_plan(order={"strategy": "name"}, concurrency={"max_unavailable": 3, "per_zone": 1})
    cp = checkpoint([NodeRecord(name=n) for n in order_nodes(plan, facts.values())])
    # zones: node-1 b, node-2 c, node-3 a, node-4 b, node-5 c, node-10 b
    assert startable(plan, cp, facts) == ["node-1", "node-2", "node-3"]
    busy = cp.with_nodes({"node-1": NodeRecord(name="node-1", phase=NodePhase.DRAINED, attempt=1)})
    assert startable(plan, busy, facts) == ["node-2", "node-3"]
    pending_intent = cp.with_nodes({"node-1": NodeRecord(name="node-1", intent=Intent(step="cordon"))})
    assert startable(plan, pending_intent, facts) == ["node-2", "node-3"]


def test_not_ready_nodes_are_passed_over_and_control_plane_waits() -> None:
    facts = {n.name: n for n in nodes()}
    facts["node-1"] = facts["node-1"].model_copy(update={"ready": False})
    plan = make_plan(order={"strategy": "name"}, concurrency={"max_unavailable": "100%"})
    cp = checkpoint([NodeRecord(name=n) for n in order_nodes(plan, facts.values())])
    assert startable(plan, cp, facts) == ["node-2", "node-3", "node-4", "node-5", "node-10"]
    done = {r.name: r.model_copy(update={"phase": NodePhase.DONE}) for r in cp.nodes if r.name != "cp-1"}
    assert startable(plan, cp.with_nodes(done), facts) == ["cp-1"]
    almost = dict(done)
    almost["node-3"] = almost["node-3"].model_copy(update={"phase": NodePhase.LABELED})
    assert startable(plan, cp.with_nodes(almost), facts) == []


def test_the_next_pending_nodes_are_observed_as_many_as_could_start_in_the_coming_decision() -> None:
    plan = make_plan(order={"strategy": "name"}, concurrency={"max_unavailable": 3})
    cp = checkpoint([NodeRecord(name=n) for n in order_nodes(plan, nodes())])
    assert starting_soon(plan, cp) == frozenset()      # still in preflight: no node can start next
    prepared = cp.model_copy(update={"run_phase": RunPhase.PREPARED})
    assert starting_soon(plan, prepared) == {"node-1", "node-2", "node-3"}   # the first three places are free
    flying = prepared.model_copy(update={"run_phase": RunPhase.MIGRATING}).with_nodes({
        "node-1": NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED, attempt=1, intent=Intent(step="probe")),
        "node-2": NodeRecord(name="node-2", phase=NodePhase.UNCORDONED, attempt=1),
        "node-3": NodeRecord(name="node-3", phase=NodePhase.LABELED, attempt=1, intent=Intent(step="restart-agent"))})
    assert starting_soon(plan, flying) == {"node-4", "node-5"}   # no place free; two could finish, node-3 not yet
    scope = observe_scope(plan, flying, "run")
    assert scope.pods_of == {"node-1", "node-2", "node-3", "node-4", "node-5"}
    done = flying.with_nodes({name: NodeRecord(name=name, phase=NodePhase.DONE, attempt=1) for name in ("node-2", "node-3")})
    assert starting_soon(plan, done) == {"node-4", "node-5", "node-10"}   # two places free, node-1 could finish
    started = done.with_nodes({"node-4": NodeRecord(name="node-4", intent=Intent(step="label"))})
    assert starting_soon(plan, started) == {"node-5", "node-10"}    # in run order, after those already started
    assert starting_soon(plan, started.model_copy(update={"run_phase": RunPhase.NODES_DONE})) == frozenset()
