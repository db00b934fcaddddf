"""decide() scenarios: whole runs on the toy cluster, crash re-entry, PDBs, limits, gates, pause/abort."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from migrator.engine.actions import DeletePod, EmitEvent, EnsureNodeConfig, EvictPod
from migrator.engine.decide import PlanMismatch, decide, node_config_version, request, resume_checkpoint
from migrator.engine.results import record_results
from migrator.model.checkpoint import (
    Intent,
    PriorNodeState,
    from_configmap_data,
    in_flight,
    to_configmap_data,
)
from migrator.model.plan import MIGRATION_LABEL
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import iterate, make_plan, run, start
from tests.engine.toy import T0, ToyCluster


def assert_migrated(toy: ToyCluster) -> None:
    for node in toy.nodes.values():
        assert node.labels.get(MIGRATION_LABEL) == "true", node.name
        assert not node.unschedulable, node.name
    for pod in toy.pods.values():
        if not pod.host_network:
            assert pod.ip and pod.ip.startswith("10.245."), pod.key
    assert not [k for k in toy.pods if "migrator-verify" in k]


def test_whole_run_migrates_every_node_once() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan()
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE and cp.halted is None
    assert [r.phase for r in cp.nodes] == [NodePhase.DONE] * 4
    assert cp.order[-1] == "cp-1"
    assert_migrated(toy)
    agent_deletes = [k for k, n in toy.counts.items() if k[0] == "delete-pod" and n]
    assert all(n == 1 for k, n in toy.counts.items() if k[0] in ("evict-pod", "delete-pod", "cordon",
                                                                  "uncordon", "label-node"))
    assert len(agent_deletes) >= 4


def test_prepare_writes_the_guides_node_config_with_v2() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan()
    decision = decide(plan, start(plan, toy), toy.observe(), T0)
    (action,) = decision.actions
    assert isinstance(action, EnsureNodeConfig)
    assert action.api_version == "cilium.io/v2" and action.name == "cilium-default"
    assert action.node_selector == {MIGRATION_LABEL: "true"}
    assert action.defaults == {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                               "custom-cni-conf": "false", "cni-chaining-mode": "none",
                               "cni-exclusive": "true"}
    assert decision.checkpoint.run_phase is RunPhase.PREFLIGHT
    again = decide(plan, decision.checkpoint, toy.observe(), T0 + timedelta(seconds=1))
    assert again.actions == () and "waiting" in again.reason


@pytest.mark.parametrize(("served", "wanted", "expected"), [
    (("v2", "v2alpha1"), "auto", "cilium.io/v2"), (("v2alpha1",), "auto", "cilium.io/v2alpha1"),
    ((), "auto", None), (("v2",), "cilium.io/v2alpha1", None)])
def test_node_config_version(served: tuple, wanted: str, expected: str | None) -> None:
    plan = make_plan(cilium={"pod_cidr": "10.245.0.0/16", "node_config": {"api_version": wanted}})
    assert node_config_version(plan, served) == expected


def test_unserved_node_config_halts() -> None:
    toy = ToyCluster(workers=1)
    toy.served = ()
    plan = make_plan()
    decision = decide(plan, start(plan, toy), toy.observe(), T0)
    assert decision.halted and "not served" in decision.halted and decision.actions == ()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_crash_at_any_moment_never_repeats_a_non_idempotent_step(seed: int) -> None:
    """Each iteration persists the intent, then a crash loses all, some or none of the execution."""
    rng = random.Random(seed)
    toy = ToyCluster(workers=3, apps_per_node=2)
    plan = make_plan(concurrency={"max_unavailable": 2})
    cp = start(plan, toy)
    now = T0
    for _ in range(600):
        decision = decide(plan, cp, toy.observe(), now)
        cp = from_configmap_data(to_configmap_data(decision.checkpoint))   # persisted before acting
        fate = rng.choices(["all", "none", "some"], weights=[6, 2, 2])[0]
        actions = list(decision.actions)
        if fate == "none":
            actions = []
        elif fate == "some":
            actions = actions[: rng.randrange(len(actions) + 1)]
        results = [toy.apply(a) for a in actions]
        if fate == "all":
            cp = record_results(cp, results, now)           # a crash also loses the results
        toy.settle()
        if decision.finished:
            break
        now += timedelta(seconds=rng.choice([1, 5, 25]))
    assert cp.run_phase is RunPhase.NODES_DONE, decision.reason
    assert_migrated(toy)
    repeated = {k: n for k, n in toy.counts.items()
                if k[0] in ("evict-pod", "delete-pod") and n > 1}
    assert repeated == {}


def _blocked_toy() -> ToyCluster:
    toy = ToyCluster(workers=2)
    toy.add_pdb("web", allowed=0)
    toy.blocked.add("shop/web-node-1-0")
    return toy


def test_pdb_blocked_drain_backs_off_then_halts_at_the_deadline() -> None:
    toy = _blocked_toy()
    plan = make_plan(drain={"timeout": "60s", "on_pdb_blocked": "halt"})
    cp, now = run(plan, toy, start(plan, toy), limit=200)
    assert cp.halted and "drain timed out" in cp.halted and "shop/web-node-1-0" in cp.halted
    record = cp.node("node-1")
    assert record.phase is NodePhase.CORDONED and "drain timed out" in (record.last_error or "")
    assert now - T0 >= timedelta(seconds=60)
    attempts = toy.counts[("evict-pod", toy.pods["shop/web-node-1-0"].uid)]
    # asked once, then again only 30 s after each back-off while the budget shows no room
    assert attempts == 2, attempts
    assert toy.nodes["node-1"].unschedulable      # a halt leaves the node for a human
    halted_again = decide(plan, cp, toy.observe(), now + timedelta(hours=1))
    assert halted_again.actions == () and halted_again.reason.startswith("halted")


def test_pdb_blocked_drain_skips_node_and_restores_it() -> None:
    toy = _blocked_toy()
    plan = make_plan(drain={"timeout": "30s", "on_pdb_blocked": "skip"})
    cp, _ = run(plan, toy, start(plan, toy), limit=300)
    assert cp.run_phase is RunPhase.NODES_DONE
    assert cp.node("node-1").phase is NodePhase.SKIPPED and "drain timed out" in cp.node("node-1").last_error
    assert not toy.nodes["node-1"].unschedulable
    assert MIGRATION_LABEL not in toy.nodes["node-1"].labels
    assert cp.node("node-2").phase is NodePhase.DONE


def test_pdb_override_deletes_blocked_pod_with_audit() -> None:
    toy = _blocked_toy()
    plan = make_plan(drain={"timeout": "5m", "pdb_override": {
        "reason": "web is being replaced anyway", "approved_by": "alice", "after": "20s"}})
    blocked_uid = toy.pods["shop/web-node-1-0"].uid
    cp, _ = run(plan, toy, start(plan, toy), limit=300)
    assert cp.node("node-1").phase is NodePhase.DONE
    assert toy.counts[("delete-pod", blocked_uid)] == 1
    assert any("pdb-override delete shop/web-node-1-0 approved_by=alice" in note
               for note in cp.node("node-1").audit)


def test_bare_pod_blocks_or_is_evicted_per_plan() -> None:
    toy = ToyCluster(workers=2)
    toy.add_bare_pod("node-1")
    plan = make_plan()
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.halted and "shop/debug-shell" in cp.halted and "unmanaged_pods" in cp.halted
    toy = ToyCluster(workers=2)
    bare = toy.add_bare_pod("node-1")
    plan = make_plan(drain={"unmanaged_pods": "delete"})
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE and toy.counts[("evict-pod", bare.uid)] == 1


def test_concurrency_limit_and_control_plane_last() -> None:
    toy = ToyCluster(workers=5, control_plane=1, zones=2)
    plan = make_plan(concurrency={"max_unavailable": 3, "per_zone": 2})
    cp = start(plan, toy)
    now, peak = T0, 0
    for _ in range(300):
        cp, decision = iterate(plan, toy, cp, now)
        flying = [r for r in cp.nodes if in_flight(r)]
        peak = max(peak, len(flying))
        assert len(flying) <= 3
        zones = [toy.nodes[r.name].zone for r in flying]
        assert all(zones.count(z) <= 2 for z in zones)
        if any(r.name == "cp-1" for r in flying):
            assert all(r.phase is NodePhase.DONE for r in cp.nodes if r.name != "cp-1")
        if decision.finished:
            break
        now += timedelta(seconds=1)
    assert peak == 3 and cp.run_phase is RunPhase.NODES_DONE


def test_pause_finishes_nodes_in_flight_then_resume_continues() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan()
    cp = start(plan, toy)
    now = T0
    while not any(r.phase is NodePhase.LABELED for r in cp.nodes):
        cp, _ = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    cp = request(cp, "pause")
    cp, now = run(plan, toy, cp, now)
    assert cp.run_phase is RunPhase.PAUSED
    assert [r.phase for r in cp.nodes] == [NodePhase.DONE] + [NodePhase.PENDING] * 3
    cp = resume_checkpoint(cp, now)
    cp, _ = run(plan, toy, cp, now)
    assert cp.run_phase is RunPhase.NODES_DONE
    assert_migrated(toy)


def test_abort_restores_nodes_not_yet_switched() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(concurrency={"max_unavailable": 2}, drain={"timeout": "10m"})
    toy.add_pdb("web", allowed=0)
    toy.blocked.add("shop/web-node-2-0")
    cp = start(plan, toy)
    now = T0
    while cp.node("node-1").phase is not NodePhase.DONE:
        cp, _ = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    assert cp.node("node-2").phase is NodePhase.CORDONED
    cp, now = run(plan, toy, request(cp, "abort"), now)
    assert cp.run_phase is RunPhase.ABORTED
    assert cp.node("node-2").phase is NodePhase.SKIPPED and not toy.nodes["node-2"].unschedulable
    assert cp.node("node-3").phase in (NodePhase.PENDING, NodePhase.SKIPPED, NodePhase.DONE)


def test_verification_with_a_calico_ip_fails_the_node_and_halts() -> None:
    toy = ToyCluster(workers=2)
    toy.agent_switches = False
    plan = make_plan()
    cp, _ = run(plan, toy, start(plan, toy))
    record = cp.node("node-1")
    assert record.phase is NodePhase.FAILED and "outside 10.245.0.0/16" in record.last_error
    assert cp.halted and "max_failures=0" in cp.halted
    assert cp.node("node-2").phase is NodePhase.PENDING
    assert not [k for k, p in toy.pods.items() if "migrator-verify" in k and not p.deleting]


def test_agent_that_never_returns_fails_at_the_deadline() -> None:
    toy = ToyCluster(workers=1)
    toy.agent_returns = False
    plan = make_plan(cilium={"pod_cidr": "10.245.0.0/16", "agent": {"restart_timeout": "30s"}},
                     max_failures=5)
    cp, now = run(plan, toy, start(plan, toy), tick=timedelta(seconds=5))
    assert cp.node("node-1").phase is NodePhase.FAILED
    assert "within 30s" in cp.node("node-1").last_error
    failed_events = [k for k in toy.counts if k == ("emit-event", "node-1")]
    assert failed_events


def test_node_cordoned_before_the_run_stays_cordoned() -> None:
    toy = ToyCluster(workers=2)
    toy.nodes["node-2"] = toy.nodes["node-2"].model_copy(update={"unschedulable": True})
    plan = make_plan()
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.node("node-2").phase is NodePhase.DONE and cp.node("node-2").prior.unschedulable
    assert toy.nodes["node-2"].unschedulable and not toy.nodes["node-1"].unschedulable
    assert toy.counts[("uncordon", "node-2")] == 0


def test_gates_hold_back_starts() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan(gates={"window": {"start": "22:00", "end": "02:00", "timezone": "Europe/Berlin"}})
    cp = start(plan, toy)
    cp, _ = iterate(plan, toy, cp, T0)                       # prepare
    cp, decision = iterate(plan, toy, cp, T0 + timedelta(seconds=1))
    assert decision.actions == () and "maintenance window" in decision.reason
    assert decision.wake_at == T0.replace(hour=21)             # 22:00 in Berlin (UTC+1)
    cp, decision = iterate(plan, toy, cp, T0.replace(hour=21, minute=30))
    assert any(a.kind == "cordon" for a in decision.actions)


def test_blocking_pods_gate() -> None:
    from migrator.model.observation import PodFacts
    toy = ToyCluster(workers=1)
    plan = make_plan(gates={"blocking_pods": {"selector": {"match_labels": {"job": "backup"}}}})
    cp = start(plan, toy)
    cp, _ = iterate(plan, toy, cp, T0)
    obs = toy.observe().model_copy(update={"blocking_pods": (
        PodFacts(namespace="db", name="backup-1", uid="b"),)})
    decision = decide(plan, cp, obs, T0 + timedelta(seconds=1))
    assert decision.actions == () and "db/backup-1" in decision.reason


def test_events_on_transitions_and_unchanged_checkpoint_when_idle() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan()
    cp = start(plan, toy)
    reasons = []
    now = T0
    for _ in range(40):
        cp, decision = iterate(plan, toy, cp, now)
        reasons += [a.reason for a in decision.actions if isinstance(a, EmitEvent) and a.node == "node-1"]
        if decision.finished:
            break
        now += timedelta(seconds=1)
    assert reasons == ["MigrationCordoned", "MigrationDrained", "MigrationLabeled", "MigrationAgentRestarted",
                       "MigrationVerified", "MigrationPodsRecycled", "MigrationProbed", "MigrationCompleted"]
    idle = decide(plan, cp, toy.observe(), now + timedelta(seconds=5))
    assert not idle.changed and idle.checkpoint is cp


def test_checkpoint_of_another_plan_is_refused() -> None:
    toy = ToyCluster(workers=1)
    cp = start(make_plan(), toy)
    with pytest.raises(PlanMismatch):
        decide(make_plan(nodes={"exclude": ["node-9"]}), cp, toy.observe(), T0)
    decide(make_plan(max_failures=3), cp, toy.observe(), T0)  # tuning: the run's identity is unchanged


def test_agent_pod_recorded_before_delete_is_not_deleted_twice_after_restart() -> None:
    toy = ToyCluster(workers=1, control_plane=0)
    plan = make_plan()
    cp = start(plan, toy)
    now = T0
    while True:
        decision = decide(plan, cp, toy.observe(), now)
        deletes = [a for a in decision.actions if isinstance(a, DeletePod) and a.reason == "agent-restart"]
        if deletes:
            break
        cp = decision.checkpoint
        for action in decision.actions:
            toy.apply(action)
        toy.settle()
        now += timedelta(seconds=1)
    persisted = from_configmap_data(to_configmap_data(decision.checkpoint))
    assert persisted.node("node-1").intent.agent_uid == deletes[0].uid
    toy.apply(deletes[0])                                    # executed, then the process dies
    for later in (now, now + timedelta(seconds=30)):
        again = decide(plan, persisted, toy.observe(), later)
        assert not [a for a in again.actions if isinstance(a, (DeletePod, EvictPod))]


def test_decide_keeps_50_nodes_in_flight_at_5000_nodes() -> None:
    """Correctness at scale; how long a turn takes is a benchmark figure (``make bench``)."""
    toy = ToyCluster(workers=5000, control_plane=3, zones=3)
    plan = make_plan(concurrency={"max_unavailable": 50})
    cp = start(plan, toy)
    now = T0
    for _ in range(8):
        decision = decide(plan, cp, toy.observe(), now)
        cp = record_results(decision.checkpoint, [toy.apply(a) for a in decision.actions], now)
        toy.settle()
        now += timedelta(seconds=1)
    assert sum(1 for r in cp.nodes if in_flight(r) or r.phase is NodePhase.DONE) >= 50


def test_in_place_switches_first_then_evicts_and_never_cordons() -> None:
    toy = ToyCluster(workers=3)
    plan = make_plan(placement={"strategy": "in-place"})
    sent: list[tuple[str, str]] = []
    apply = toy.apply

    def recording(action):
        sent.append((action.kind, action.node or ""))
        return apply(action)
    toy.apply = recording  # type: ignore[method-assign]
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE and [r.phase for r in cp.nodes] == [NodePhase.DONE] * 4
    assert_migrated(toy)
    assert not [k for k in sent if k[0] in ("cordon", "uncordon")]
    for node in (n for n, facts in toy.nodes.items() if not facts.control_plane):
        kinds = [kind for kind, n in sent if n == node]
        evictions = [i for i, kind in enumerate(kinds) if kind == "evict-pod"]
        assert evictions and kinds.index("label-node") < evictions[0], (node, kinds)
    assert all(n == 1 for k, n in toy.counts.items() if k[0] in ("evict-pod", "delete-pod", "label-node"))


def test_in_place_bare_pod_blocks_before_anything_changes() -> None:
    toy = ToyCluster(workers=2)
    toy.add_bare_pod("node-1")
    plan = make_plan(placement={"strategy": "in-place"}, order={"strategy": "name"})
    cp, _ = run(plan, toy, start(plan, toy))
    assert cp.halted and "in-place recycle blocked: shop/debug-shell" in cp.halted
    assert MIGRATION_LABEL not in toy.nodes["node-1"].labels and not toy.nodes["node-1"].unschedulable
    assert ("label-node", "node-1") not in toy.counts


@pytest.mark.parametrize("on_blocked", ["halt", "skip"])
def test_in_place_waits_for_a_pdb_before_the_switch_then_halts_or_skips(on_blocked: str) -> None:
    toy = _blocked_toy()
    plan = make_plan(placement={"strategy": "in-place"}, drain={"timeout": "30s", "on_pdb_blocked": on_blocked})
    cp, now = run(plan, toy, start(plan, toy), limit=300)
    assert now - T0 >= timedelta(seconds=30)
    record = cp.node("node-1")
    assert "PodDisruptionBudget shop/web-pdb allowing no disruption" in (record.last_error or "")
    assert MIGRATION_LABEL not in toy.nodes["node-1"].labels and not toy.nodes["node-1"].unschedulable
    assert not [k for k in toy.counts if k[0] == "evict-pod" and k[1] == toy.pods["shop/web-node-1-0"].uid]
    if on_blocked == "halt":
        assert cp.halted and "in-place recycle blocked" in cp.halted and record.phase is NodePhase.PENDING
    else:
        assert cp.run_phase is RunPhase.NODES_DONE and record.phase is NodePhase.SKIPPED


def test_a_node_started_in_place_is_cordoned_when_the_plan_changes_to_drain() -> None:
    """A node held before its switch in place, resumed with ``placement.strategy: drain``, takes
    the drain's first step instead of waiting on its old label step."""
    toy = ToyCluster(workers=1)
    in_place = make_plan(placement={"strategy": "in-place"})
    cp = start(in_place, toy)
    record = cp.node("node-1").model_copy(update={
        "attempt": 1, "phase_started_at": T0, "intent": Intent(step="label"),
        "prior": PriorNodeState(unschedulable=False)})
    cp = cp.with_nodes({"node-1": record}, run_phase=RunPhase.MIGRATING)
    drain = make_plan(placement={"strategy": "drain"})
    decision = decide(drain, cp, toy.observe(), T0)   # placement is tuning: the identity is the same
    node = decision.checkpoint.node("node-1")
    assert node.intent is not None and node.intent.step == "cordon"
    assert [a.kind for a in decision.actions if a.node == "node-1" and a.kind != "emit-event"] == ["cordon"]
