"""Finalize: refused until every node is DONE, then each step in order, each journaled."""

from __future__ import annotations

from datetime import timedelta

import yaml

from migrator.engine.actions import (
    CreatePod,
    RestartDaemonSet,
    WriteFile,
)
from migrator.engine.decide import Decision, Inbox, decide
from migrator.engine.finalize import FINAL_CONFIG, finalize_blockers, helm_values
from migrator.model.checkpoint import from_configmap_data, to_configmap_data
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan, run, start
from tests.engine.toy import T0, ToyCluster


def migrated(plan, toy):
    cp, now = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE
    return cp, now


def decide_finalize(plan, cp, obs, now, results=(), first: bool = False) -> Decision:
    """One turn of a `migrator finalize` process."""
    return decide(plan, cp, obs, now, Inbox(purpose="finalize", results=tuple(results), first=first))


def finalize(plan, toy, cp, now, crash_every: int = 0):
    kinds = []
    results = []
    for i in range(200):
        decision = decide_finalize(plan, cp, toy.observe(), now, results, first=i == 0)
        cp = from_configmap_data(to_configmap_data(decision.checkpoint))
        kinds += [a.kind for a in decision.actions]
        results = []
        if not (crash_every and i % crash_every == 0):   # a crash loses the actions and their results
            results = [toy.apply(a) for a in decision.actions]
        toy.settle()
        if cp.run_phase is RunPhase.FINALIZED or cp.halted:
            return cp, kinds
        now += timedelta(seconds=1)
    raise AssertionError(decision.reason)


def test_final_helm_values_follow_the_guide() -> None:
    values = yaml.safe_load(helm_values())
    assert values["operator"]["unmanagedPodWatcher"]["restart"] is True
    assert values["cni"]["customConf"] is False
    assert values["policyEnforcementMode"] == "default"
    assert values["bpf"]["hostLegacyRouting"] is False


def test_refused_until_every_node_is_done() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan()
    cp = start(plan, toy)
    decision = decide_finalize(plan, cp, toy.observe(), T0, first=True)
    assert decision.actions == () and decision.reason.startswith("finalize refused")
    assert decision.stop is not None and decision.stop.code == "halted"
    skipped = cp.with_nodes({"node-1": cp.node("node-1").model_copy(update={"phase": NodePhase.SKIPPED})},
                            run_phase=RunPhase.NODES_DONE)
    assert "node-1 is SKIPPED" in finalize_blockers(skipped)


def test_finalize_runs_every_step_in_order() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan(finalize={"apply_configmap": True})
    cp, now = migrated(plan, toy)
    cp, kinds = finalize(plan, toy, cp, now)
    assert cp.run_phase is RunPhase.FINALIZED and cp.halted is None
    order = [k for k in dict.fromkeys(kinds)]
    assert order == ["write-file", "patch-configmap", "restart-daemonset", "delete-node-config",
                     "delete-object", "create-pod", "delete-pod"]
    assert kinds.count("restart-daemonset") == 1 and kinds.count("create-pod") == 3
    assert toy.node_config is None and toy.calico == []
    assert all(toy.cilium_config[k] == v for k, v in FINAL_CONFIG.items())
    assert "values-final.yaml" in toy.files
    assert cp.finalize.step == "done" and len(cp.finalize.cleaned) == 3


def test_finalize_survives_lost_results_and_skips_configmap_by_default() -> None:
    toy = ToyCluster(workers=2)
    plan = make_plan()
    cp, now = migrated(plan, toy)
    cp, kinds = finalize(plan, toy, cp, now, crash_every=3)
    assert cp.run_phase is RunPhase.FINALIZED
    assert "patch-configmap" not in kinds
    stamps = {a for a in kinds if a == "restart-daemonset"}
    assert stamps and toy.restarted_at is not None


def test_cleanup_pods_are_pinned_and_annotated() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan(finalize={"remove_calico": []})
    cp, now = migrated(plan, toy)
    seen = []
    results = []
    for _ in range(50):
        decision = decide_finalize(plan, cp, toy.observe(), now, results)
        seen += [a for a in decision.actions if isinstance(a, CreatePod)]
        cp = decision.checkpoint
        results = [toy.apply(a) for a in decision.actions]
        toy.settle()
        now += timedelta(seconds=1)
        if cp.run_phase is RunPhase.FINALIZED:
            break
    assert {a.node for a in seen} == {"node-1", "cp-1"}
    action = seen[0]
    pod = action.pod
    assert pod.annotations["sim.migrator.io/node-action"] == "cleanup-calico"
    assert action.purpose == "node-action" and pod.privileged and pod.host_network
    assert pod.name == f"migrator-cleanup-{action.node}" and pod.node_name == action.node


def test_rollout_that_never_finishes_halts_finalize() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan(finalize={"timeout": "30s"})
    cp, now = migrated(plan, toy)
    toy.restarted_at = None
    original = toy.apply

    def no_restart(action):
        if isinstance(action, RestartDaemonSet):
            return original(WriteFile(path="ignored", content=""))
        return original(action)
    toy.apply = no_restart  # type: ignore[method-assign]
    cp, kinds = finalize(plan, toy, cp, now)
    assert cp.halted and "did not roll out within 30s" in cp.halted
    assert not any(k in ("delete-node-config", "delete-object") for k in kinds)
