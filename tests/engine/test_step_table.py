"""Scenario table: one node at a given phase and intent + a fresh observation → next phase and actions.

Each row is one decision, no loop: it pins down what ``decide`` does at every step boundary,
including the re-entry cases (intent already recorded, effect already visible or not).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from migrator.engine.decide import decide
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord, PriorNodeState
from migrator.model.plan import MIGRATION_LABEL
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan, start
from tests.engine.toy import T0, ToyCluster

N = NodePhase
NOW = T0 + timedelta(minutes=1)


def _agent_uid(toy: ToyCluster) -> str:
    return next(p.uid for p in toy.pods.values() if p.node == "node-1" and p.labels.get("k8s-app") == "cilium")


def _cordoned(toy: ToyCluster) -> None:
    toy.nodes["node-1"] = toy.nodes["node-1"].model_copy(update={"unschedulable": True})


def _labelled(toy: ToyCluster) -> None:
    _cordoned(toy)
    node = toy.nodes["node-1"]
    toy.nodes["node-1"] = node.model_copy(update={"labels": {**node.labels, MIGRATION_LABEL: "true"}})


def _drained(toy: ToyCluster) -> None:
    for key in [k for k, p in toy.pods.items() if p.node == "node-1" and p.owner_kind == "ReplicaSet"]:
        del toy.pods[key]


def _agent_deleting(toy: ToyCluster) -> None:
    key = next(k for k, p in toy.pods.items() if p.node == "node-1" and p.labels.get("k8s-app") == "cilium")
    toy.pods[key] = toy.pods[key].model_copy(update={"deleting": True})


def _agent_replaced(toy: ToyCluster) -> None:
    _agent_deleting(toy)
    toy.settle()


# (id, phase, intent, prepare toy, expected phase, expected action kinds (events excluded))
ROWS = [
    ("cordon-sent-not-yet-visible", N.PENDING, Intent(step="cordon", sent_at=NOW - timedelta(seconds=5)),
     None, N.PENDING, []),
    ("cordon-lost-resend", N.PENDING, Intent(step="cordon", sent_at=NOW - timedelta(seconds=25)),
     None, N.PENDING, ["cordon"]),
    ("cordon-visible-start-drain", N.PENDING, Intent(step="cordon", sent_at=NOW), _cordoned,
     N.CORDONED, ["evict-pod"]),
    ("drain-evicted-pod-gone", N.CORDONED, Intent(step="drain", pods=("x",)), lambda t: (_cordoned(t), _drained(t)),
     N.DRAINED, ["label-node"]),
    ("label-visible-restart-agent", N.DRAINED, Intent(step="label", sent_at=NOW), lambda t: (_labelled(t), _drained(t)),
     N.LABELED, ["delete-pod"]),
    ("agent-delete-recorded-pod-deleting", N.LABELED, "agent", lambda t: (_labelled(t), _agent_deleting(t)),
     N.LABELED, []),
    ("agent-replaced-start-verify", N.LABELED, "agent", lambda t: (_labelled(t), _agent_replaced(t)),
     N.AGENT_RESTARTED, ["create-pod"]),
    ("verify-created-not-visible", N.AGENT_RESTARTED, Intent(step="verify", sent_at=NOW), _labelled,
     N.AGENT_RESTARTED, []),
    ("recycle-calico-daemonset-pod", N.CNI_VERIFIED, Intent(step="recycle"), lambda t: (_labelled(t), _drained(t)),
     N.CNI_VERIFIED, ["delete-pod"]),
    ("uncordon-then-done", N.PROBED, Intent(step="uncordon"), _labelled, N.PROBED, ["uncordon"]),
]


@pytest.mark.parametrize(("phase", "intent", "prepare", "expected", "kinds"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_step(phase: NodePhase, intent: Intent | str, prepare, expected: NodePhase, kinds: list[str]) -> None:
    toy = ToyCluster(workers=1, control_plane=0)
    plan = make_plan()
    if intent == "agent":
        intent = Intent(step="restart-agent", agent_uid=_agent_uid(toy), sent_at=NOW)
    if prepare is not None:
        prepare(toy)
    toy.node_config = None
    base: Checkpoint = start(plan, toy)
    record = NodeRecord(name="node-1", phase=phase, attempt=1, phase_started_at=T0 + timedelta(seconds=30),
                        intent=intent, prior=PriorNodeState(unschedulable=False))
    cp = base.with_nodes({"node-1": record}, run_phase=RunPhase.MIGRATING, node_config_version="cilium.io/v2")
    decision = decide(plan, cp, toy.observe(), NOW)
    after = decision.checkpoint.node("node-1")
    assert after.phase is expected, decision.reason
    assert [a.kind for a in decision.actions if a.kind != "emit-event"] == kinds, decision.reason
    if expected is not phase:
        assert after.phase_started_at == NOW and after.attempt == 1


def test_uncordoned_node_is_done_in_the_same_decision() -> None:
    toy = ToyCluster(workers=1, control_plane=0)
    _labelled(toy)
    toy.nodes["node-1"] = toy.nodes["node-1"].model_copy(update={"unschedulable": False})
    plan = make_plan()
    cp = start(plan, toy)
    record = NodeRecord(name="node-1", phase=N.PROBED, attempt=1, phase_started_at=T0,
                        intent=Intent(step="uncordon", sent_at=NOW), prior=PriorNodeState(unschedulable=False))
    cp = cp.with_nodes({"node-1": record}, run_phase=RunPhase.MIGRATING)
    decision = decide(plan, cp, toy.observe(), NOW)
    assert decision.checkpoint.node("node-1").phase is N.DONE
    assert decision.checkpoint.run_phase is RunPhase.NODES_DONE
    assert [a.reason for a in decision.actions] == ["MigrationCompleted"]
