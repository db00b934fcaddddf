"""Safety scenarios: a selection that misses, a node deleted mid-run, a rolled-back node retried,
finalize while something is left on Calico, and a rollback rebuilt from the cluster's state.

Engine scenarios against the toy cluster, no mocks: each drives ``decide`` the way the runner
does and asserts what the checkpoint records and what the process would say and exit with.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from migrator.engine.actions import ActionResult, RunProbes
from migrator.engine.decide import Inbox, Purpose, decide, new_checkpoint
from migrator.engine.finalize import finalize_blockers
from migrator.engine.node_steps import GONE
from migrator.engine.recover import cordoned_nodes, from_cluster, switched_nodes
from migrator.engine.retry import RetryRefused, retry_node
from migrator.model.checkpoint import Checkpoint, RollbackRequest, from_configmap_data, to_configmap_data
from migrator.model.observation import PodFacts
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import iterate, make_plan, run, start
from tests.engine.toy import T0, ToyCluster

N = NodePhase


def drive(plan: MigrationPlan, toy: ToyCluster, cp: Checkpoint | None, purpose: Purpose = "resume",
          now=T0, limit: int = 300):  # noqa: ANN001, ANN201
    """One process of ``purpose`` until the engine names its stop: (checkpoint, stop, now)."""
    results: list = []
    for turn in range(limit):
        decision = decide(plan, cp, toy.observe(), now, Inbox(purpose=purpose, results=tuple(results),
                                                              first=turn == 0, by="oncall@host/1"))
        cp = from_configmap_data(to_configmap_data(decision.checkpoint)) if decision.checkpoint else None
        results = [toy.apply(a) for a in decision.actions]
        toy.settle()
        if decision.stop is not None:
            return cp, decision.stop, now
        now += timedelta(seconds=1)
    raise AssertionError(f"no stop: {decision.reason}")


def delete_node(toy: ToyCluster, name: str) -> None:
    """The node object is deleted; the pod garbage collector removes its pods."""
    del toy.nodes[name]
    for key in [k for k, p in toy.pods.items() if p.node == name]:
        del toy.pods[key]


# ---------------------------------------------------------------- a selection that misses
@pytest.mark.parametrize(("nodes", "named"), [
    ({"selector": {"match_labels": {"pool": "gpu"}}}, "nodes.selector pool=gpu matches no node"),
    ({"names": ["node-1", "node-7"]}, "node-7"),
    ({"names": ["node-1"], "exclude": ["node-1"]}, "every node in nodes.names is listed in nodes.exclude"),
], ids=["selector-matches-nothing", "name-misspelt", "all-excluded"])
def test_a_selection_that_misses_is_invalid_before_anything_is_written(nodes, named) -> None:  # noqa: ANN001
    toy = ToyCluster(workers=3)
    plan = make_plan(nodes=nodes, order={"strategy": "name"})
    purposes: tuple[Purpose, ...] = ("run", "canary")
    for purpose in purposes:
        decision = decide(plan, None, toy.observe(), T0, Inbox(purpose=purpose, first=True))
        assert decision.stop is not None and decision.stop.code == "invalid", decision.reason
        assert named in decision.stop.message and "fix" in decision.stop.message
        assert decision.checkpoint is None and not decision.changed and decision.actions == ()


def test_a_new_canary_in_place_of_an_ended_one_checks_the_selection_and_writes_nothing() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(nodes={"names": ["node-1", "node-4"]}, order={"strategy": "explicit"},
                     canary={"soak": "1m"})
    ended = new_checkpoint(plan, toy.observe(), "run-0", T0).model_copy(update={"run_phase": RunPhase.ROLLED_BACK})
    decision = decide(plan, ended, toy.observe(), T0, Inbox(purpose="canary", first=True, by="cron"))
    assert decision.stop is not None and decision.stop.code == "invalid" and "node-4" in decision.stop.message
    assert decision.checkpoint is ended and not decision.changed


def test_a_selection_that_matches_starts_as_before() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(nodes={"names": ["node-1", "node-2"]}, order={"strategy": "explicit"})
    decision = decide(plan, None, toy.observe(), T0, Inbox(purpose="run", first=True))
    assert decision.stop is None and decision.checkpoint is not None
    assert decision.checkpoint.order == ("node-1", "node-2")


# ---------------------------------------------------------------- a node deleted mid-run
def _phase_reached(toy: ToyCluster, plan: MigrationPlan, node: str, phase: NodePhase):  # noqa: ANN202
    cp, now = start(plan, toy), T0
    for _ in range(200):
        if cp.by_name[node].phase is phase:
            return cp, now
        cp, _decision = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    raise AssertionError(f"{node} never reached {phase}")


@pytest.mark.parametrize("phase", [N.PENDING, N.CORDONED, N.LABELED],
                         ids=["while-pending", "while-draining", "while-waiting-for-its-agent"])
def test_a_node_deleted_mid_run_is_recorded_and_the_run_ends(phase: NodePhase) -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(order={"strategy": "name"})
    victim = "node-3" if phase is N.PENDING else "node-1"
    cp, now = _phase_reached(toy, plan, "node-1", N.PENDING if phase is N.PENDING else phase)
    if phase is N.LABELED:
        toy.agent_returns = False   # the agent pod never comes back: the node waits for it
    delete_node(toy, victim)
    toy.agent_returns = True
    cp, stop, now = drive(plan, toy, cp, "resume", now)
    record = cp.by_name[victim]
    assert record.phase is N.SKIPPED and record.last_error == GONE
    assert stop.code == "done" and cp.run_phase is RunPhase.NODES_DONE
    assert f"{victim} deleted from the cluster during the run" in stop.message
    assert "every node migrated" in stop.message and "finalize" in stop.message
    assert all(r.phase is N.DONE for r in cp.nodes if r.name != victim)
    assert finalize_blockers(cp, toy.observe(), plan) == []   # a node that is gone runs nothing
    cp, final, _ = drive(plan, toy, cp, "finalize", now)
    assert final.code == "done" and cp.run_phase is RunPhase.FINALIZED, final.message
    assert cp.finalize is not None and victim not in cp.finalize.cleaned


def test_a_node_deleted_while_rolling_back_ends_skipped() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(order={"strategy": "name"})
    cp, now = run(plan, toy, start(plan, toy))
    cp = cp.model_copy(update={"rollback": RollbackRequest(nodes=("node-1",), requested_at=now, by="oncall")})
    decision = decide(plan, cp, toy.observe(), now, Inbox(purpose="rollback", first=True))
    assert decision.checkpoint.by_name["node-1"].phase is N.ROLLING_BACK
    delete_node(toy, "node-1")
    cp, stop, _ = drive(plan, toy, decision.checkpoint, "rollback", now + timedelta(seconds=1))
    assert cp.by_name["node-1"].phase is N.SKIPPED and cp.by_name["node-1"].last_error == GONE
    assert stop.code == "done"


# ---------------------------------------------------------------- retry after a rollback
def _rolled_back_node_1(plan: MigrationPlan, toy: ToyCluster):  # noqa: ANN202
    cp, now = run(plan, toy, start(plan, toy))
    cp = cp.model_copy(update={"rollback": RollbackRequest(nodes=("node-1",), requested_at=now, by="oncall")})
    cp, stop, now = drive(plan, toy, cp, "rollback", now)
    assert stop.code == "done" and cp.by_name["node-1"].phase is N.ROLLED_BACK
    return cp, now


def test_resume_and_finalize_name_a_rolled_back_node_and_the_way_forward() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(order={"strategy": "name"})
    cp, now = _rolled_back_node_1(plan, toy)
    cp, stop, now = drive(plan, toy, cp, "resume", now)
    assert "every node migrated" not in stop.message
    assert "node-1 was rolled back; run `migrator retry --node NAME`" in stop.message
    assert "then `migrator resume`" in stop.message
    cp, refused, now = drive(plan, toy, cp, "finalize", now)
    assert refused.code == "halted" and refused.message.startswith("finalize refused")
    assert "node-1 rolled back or skipped: run `migrator retry --node NAME`" in refused.message
    assert cp.run_phase is RunPhase.NODES_DONE and cp.finalize is None


def test_retry_sends_a_rolled_back_node_through_the_migration_again() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(order={"strategy": "name"})
    cp, now = _rolled_back_node_1(plan, toy)
    assert cp.by_name["node-1"].attempt == 1 and MIGRATION_LABEL not in toy.nodes["node-1"].labels
    cp = retry_node(cp, "node-1", "oncall@host/7", now, "fixed the MTU")
    record = cp.by_name["node-1"]
    assert record.phase is N.PENDING and record.intent is None and record.last_error is None
    assert record.attempt == 1 and "retry by oncall@host/7 after ROLLED_BACK" in record.audit[-1]
    assert "fixed the MTU" in record.audit[-1] and any("node-1: " in a for a in cp.audit)
    assert cp.run_phase is RunPhase.MIGRATING
    cp, stop, now = drive(plan, toy, cp, "resume", now)
    assert stop.code == "done" and stop.message.startswith("every node migrated")
    record = cp.by_name["node-1"]
    assert record.phase is N.DONE and record.attempt == 2
    assert toy.nodes["node-1"].labels.get(MIGRATION_LABEL) == "true" and "node-1" in toy.cilium_nodes
    cp, done, _ = drive(plan, toy, cp, "finalize", now)
    assert done.code == "done" and cp.run_phase is RunPhase.FINALIZED


def test_retry_refuses_what_it_cannot_send_back() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(order={"strategy": "name"})
    cp, now = run(plan, toy, start(plan, toy))
    with pytest.raises(RetryRefused, match="node-1 is DONE"):
        retry_node(cp, "node-1", "x", now)
    failed = cp.with_nodes({"node-1": cp.by_name["node-1"].model_copy(update={"phase": N.FAILED})})
    with pytest.raises(RetryRefused, match="roll it back first"):
        retry_node(failed, "node-1", "x", now)
    with pytest.raises(RetryRefused, match="node-9 is not part of run"):
        retry_node(cp, "node-9", "x", now)
    finalized = cp.model_copy(update={"run_phase": RunPhase.FINALIZED})
    with pytest.raises(RetryRefused, match="the run is FINALIZED"):
        retry_node(finalized, "node-1", "x", now)


# ---------------------------------------------------------------- finalize looks at the whole cluster
def test_finalize_refuses_while_a_node_outside_the_selection_runs_calico() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(nodes={"names": ["node-1", "node-2"]}, order={"strategy": "explicit"})
    cp, now = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE and cp.order == ("node-1", "node-2")
    cp, stop, _ = drive(plan, toy, cp, "finalize", now)
    assert stop.code == "halted" and stop.message.startswith("finalize refused")
    assert "2 node(s) outside the run still on Calico: cp-1, node-3" in stop.message
    assert "pod(s) still on Calico addresses" in stop.message and "on node-3" in stop.message
    assert cp.finalize is None and toy.calico, "nothing removed"


def test_finalize_refuses_while_a_pod_keeps_a_calico_address() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(order={"strategy": "name"})
    cp, now = run(plan, toy, start(plan, toy))
    stale = PodFacts(namespace="shop", name="legacy", uid="uid-legacy", node="node-2", phase="Running",
                     ready=True, ip="192.168.9.9")
    toy.pods[stale.key] = stale
    cp, stop, _ = drive(plan, toy, cp, "finalize", now)
    assert stop.code == "halted" and "1 pod(s) still on Calico addresses: shop/legacy on node-2" in stop.message
    assert "delete the pods so they restart on Cilium" in stop.message


# ---------------------------------------------------------------- a rollback rebuilt from the cluster
def test_rollback_from_the_cluster_state_undoes_what_it_shows_and_leaves_cordons_alone() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(order={"strategy": "name"})
    cp, now = _phase_reached(toy, plan, "node-2", N.CORDONED)   # node-1 DONE, node-2 mid-drain
    assert cp.by_name["node-1"].phase is N.DONE
    toy.nodes["node-3"] = toy.nodes["node-3"].model_copy(update={"unschedulable": True})  # someone else's cordon
    obs = toy.observe()
    assert switched_nodes(plan, obs) == ["node-1"]
    assert cordoned_nodes(obs) == ["node-2", "node-3"]
    fresh = from_cluster(plan, obs, "run-9", now, "oncall@host/3", "checkpoint lost", "configmap x/y")
    assert fresh.by_name["node-1"].phase is N.DONE and fresh.rollback is not None and fresh.rollback.all
    assert "configmap x/y" in fresh.audit[0]
    fresh = from_configmap_data(to_configmap_data(fresh))
    cp, stop, _ = drive(plan, toy, fresh, "rollback", now)
    assert stop.code == "done" and cp.run_phase is RunPhase.ROLLED_BACK, stop.message
    assert cp.by_name["node-1"].phase is N.ROLLED_BACK
    assert not toy.cilium_nodes and toy.node_config is None
    assert all(MIGRATION_LABEL not in n.labels for n in toy.nodes.values())
    # cordons seen when the checkpoint was rebuilt stay: the cluster cannot say whose they are
    assert toy.nodes["node-2"].unschedulable and toy.nodes["node-3"].unschedulable
    assert not toy.nodes["node-1"].unschedulable


def test_a_sampled_pair_with_a_deleted_node_does_not_pause_the_run() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(order={"strategy": "name"})
    cp = start(plan, toy).model_copy(update={"run_phase": RunPhase.MIGRATING})
    cp = cp.model_copy(update={"sampling": cp.sampling.model_copy(update={"rounds": 1})})
    sample = RunProbes(purpose="sample", checks=(), threshold=0.66)
    result = ActionResult.success(sample, detail={"node-1->node-3": "failed: connection refused",
                                                  "node-2->node-1": "ok"})
    delete_node(toy, "node-3")
    decision = decide(plan, cp, toy.observe(), T0, Inbox(purpose="resume", results=(result,)))
    assert decision.checkpoint is not None and decision.checkpoint.requested is None
    assert decision.checkpoint.by_name["node-3"].last_error == GONE
    kept = decide(plan, cp, ToyCluster(workers=3).observe(), T0, Inbox(purpose="resume", results=(result,)))
    assert kept.checkpoint is not None and kept.checkpoint.requested == "pause"   # node-3 there: evidence
