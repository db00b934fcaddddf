"""policy.mode continuous through the engine: translation before the first switch, per-node
enforcement in the CiliumNodeConfig, the gap report before each switch, finalize's shim removal,
verification and Calico policy deletion, and what rollbacks and aborts remove."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.actions import ApplyObject, DeleteObject, EmitEvent, LabelNode
from migrator.engine.decide import Inbox, decide, observe_scope, request
from migrator.engine.forecast import forecast
from migrator.model.checkpoint import RollbackRequest, from_configmap_data, to_configmap_data
from migrator.model.findings import Finding, Severity
from migrator.model.observation import PolicyFacts
from migrator.model.states import NodePhase, RunPhase
from migrator.policy.shims import RUN_LABEL
from tests.engine.loop import iterate, make_plan, run, start
from tests.engine.policy_toy import PolicyToy
from tests.engine.test_finalize import finalize
from tests.engine.test_safety import drive
from tests.engine.toy import T0

CONTINUOUS = {"mode": "continuous"}


def _ours(toy: PolicyToy, role: str | None = None) -> set[tuple[str, str | None, str]]:
    return {ref for ref, o in toy.cilium_objects.items()
            if RUN_LABEL in o["metadata"]["labels"] and (role is None or o["metadata"]["labels"][RUN_LABEL] == role)}


def test_translation_and_shims_exist_before_the_first_node_switches() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS, order={"strategy": "name"})
    cp, now = start(plan, toy), T0
    wanted = toy.observe().policy.wanted_refs
    assert {kind for kind, _ns, _n in wanted} == {"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}
    for _ in range(100):
        cp, decision = iterate(plan, toy, cp, now, execute=False)
        labels = [a for a in decision.actions if isinstance(a, LabelNode)]
        if labels:
            assert wanted <= set(toy.cilium_objects), "a node switched before the translation was applied"
            assert toy.node_config is not None and toy.node_config.defaults["enable-policy"] == "default"
            break
        for a in decision.actions:
            toy.apply(a)
        toy.settle()
        now += timedelta(seconds=1)
    else:
        raise AssertionError("no node was switched")


def test_each_switch_is_preceded_by_the_nodes_gap_report() -> None:
    toy = PolicyToy(workers=2)   # in place: the node's pods are on it when it switches
    plan = make_plan(policy=CONTINUOUS, order={"strategy": "name"}, placement={"strategy": "in-place"})
    cp, now = start(plan, toy), T0
    seen: dict[str, str] = {}
    for _ in range(300):
        decision = decide(plan, cp, toy.observe(), now)
        cp = from_configmap_data(to_configmap_data(decision.checkpoint))
        actions = list(decision.actions)
        for label in (a for a in actions if isinstance(a, LabelNode)):
            event = next(a for a in actions if isinstance(a, EmitEvent) and a.node == label.node
                         and a.reason == "MigrationPolicyGap")
            assert actions.index(event) < actions.index(label)
            assert cp.by_name[label.node].policy_gap == event.message   # persisted with the label's intent
            seen[label.node] = event.message
        for a in decision.actions:
            toy.apply(a)
        toy.settle()
        if decision.finished:
            break
        now += timedelta(seconds=1)
    assert set(seen) == {"node-1", "node-2", "cp-1"}
    # web pods on Calico nodes reach a migrated web pod through the shim, which Calico denies
    assert seen["node-1"].startswith("1 flow(s)") and "migrator-shim.calico.web-from-agents" in seen["node-1"]
    assert seen["cp-1"] == "no flow enforced differently from before the run during this node's window"


def test_mode_off_applies_nothing_and_enforces_nothing_per_node() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan()
    cp, _now = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE
    assert toy.cilium_objects == {} and "enable-policy" not in toy.node_config.defaults
    assert all(r.policy_gap is None for r in cp.nodes)


def test_finalize_removes_shims_then_verifies_then_deletes_calico_policies() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS, finalize={"apply_configmap": True})
    cp, now = run(plan, toy, start(plan, toy))
    translations = _ours(toy, "translation")
    assert _ours(toy, "shim") and toy.calico_policies
    cp, _kinds = finalize(plan, toy, cp, now)
    assert cp.run_phase is RunPhase.FINALIZED and cp.halted is None
    assert _ours(toy, "shim") == set() and _ours(toy, "translation") == translations
    assert toy.calico_policies == {}
    assert toy.deleted == ["migrator-shim.calico.web-from-agents", "calico:web-from-agents"]
    assert toy.cilium_config["enable-policy"] == "default"   # enforcement global


def test_finalize_halts_and_keeps_calico_policies_when_a_translation_is_missing() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS)
    cp, now = run(plan, toy, start(plan, toy))
    toy.cilium_objects.pop(("CiliumNetworkPolicy", "shop", "calico.web-from-agents"))
    cp, _kinds = finalize(plan, toy, cp, now)
    assert cp.halted is not None and "translated policy object(s) missing" in cp.halted
    assert "CiliumNetworkPolicy shop/calico.web-from-agents" in cp.halted
    assert cp.finalize.step == "verify-policy" and "web-from-agents" in toy.calico_policies


def test_finalize_halts_on_a_live_mistranslation() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS)
    cp, now = run(plan, toy, start(plan, toy))
    planted = toy.cilium_objects[("CiliumNetworkPolicy", "shop", "calico.web-from-agents")]
    planted["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"] = "8081"   # the wrong port
    cp, _kinds = finalize(plan, toy, cp, now)
    assert cp.halted is not None and "policy verify finds" in cp.halted and "8080/TCP" in cp.halted
    assert "web-from-agents" in toy.calico_policies


def test_a_node_rollback_removes_no_policy_object() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS, order={"strategy": "name"})
    cp, now = run(plan, toy, start(plan, toy))
    before = {k: dict(v) for k, v in toy.cilium_objects.items()}
    cp = cp.model_copy(update={"rollback": RollbackRequest(nodes=("node-1",), requested_at=now, by="oncall")})
    cp, stop, _now = drive(plan, toy, cp, "rollback", now)
    assert stop.code == "done" and cp.by_name["node-1"].phase is NodePhase.ROLLED_BACK
    assert "io.cilium.migration/cilium-default" not in toy.nodes["node-1"].labels   # out of the node config
    assert toy.cilium_objects == before and "web-from-agents" in toy.calico_policies


def test_rollback_all_removes_only_what_the_run_applied() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS)
    foreign = ("CiliumClusterwideNetworkPolicy", None, "team-owned")
    toy.cilium_objects[foreign] = {"apiVersion": "cilium.io/v2", "kind": foreign[0],
                                   "metadata": {"name": foreign[2], "labels": {"team": "a"}}, "spec": {}}
    cp, now = run(plan, toy, start(plan, toy))
    assert _ours(toy)
    cp = cp.model_copy(update={"rollback": RollbackRequest(all=True, requested_at=now, by="oncall")})
    cp, stop, _now = drive(plan, toy, cp, "rollback", now)
    assert stop.code == "done" and cp.run_phase is RunPhase.ROLLED_BACK
    assert set(toy.cilium_objects) == {foreign} and "web-from-agents" in toy.calico_policies


def test_an_abort_after_prepare_removes_the_translation_before_the_run_ends() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS)
    cp, now = start(plan, toy), T0
    while cp.run_phase is RunPhase.PREFLIGHT:
        cp, _decision = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    assert _ours(toy)
    cp = request(cp, "abort")
    removed_before_end = False
    for _ in range(60):
        decision = decide(plan, cp, toy.observe(), now, Inbox())
        cp = decision.checkpoint
        if any(isinstance(a, DeleteObject) for a in decision.actions):
            removed_before_end = cp.run_phase is not RunPhase.ABORTED
        for a in decision.actions:
            toy.apply(a)
        if cp.run_phase is RunPhase.ABORTED:
            break
        now += timedelta(seconds=5)
    assert cp.run_phase is RunPhase.ABORTED and removed_before_end and not _ours(toy)
    assert not any(isinstance(a, ApplyObject) for a in decision.actions)


def test_an_accepted_approximation_is_audited_once_when_the_run_leaves_preflight() -> None:
    toy = PolicyToy(workers=1)
    toy.findings = (Finding(check="policy.accepted", severity=Severity.INFO,
                            message="accepted approximation np/shop/ping#icmp-any-type (types 0, 3, 8, 11): "
                                    "only echo crosses tenants"),)
    plan = make_plan(policy=CONTINUOUS)
    cp, now = start(plan, toy), T0
    for _ in range(5):
        cp, _decision = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    audited = [a for a in cp.audit if "np/shop/ping#icmp-any-type" in a]
    assert len(audited) == 1 and audited[0].startswith("policy approximation accepted by the plan")


def test_the_forecast_lists_what_prepare_applies_and_each_waves_gap() -> None:
    toy = PolicyToy(workers=2)
    plan = make_plan(policy=CONTINUOUS, order={"strategy": "name"}, placement={"strategy": "in-place"})
    obs = toy.observe()
    fc = forecast(plan, obs)
    text = fc.render()
    assert "policy: continuous" in text
    assert "applied before the first switch: 1 CiliumNetworkPolicy, 0 CiliumClusterwideNetworkPolicy, " \
           "0 CiliumCIDRGroup, 1 shim(s)" in text
    first = obs.policy.gaps[fc.waves[0][0]]
    assert f"gap during wave 1: {first.flows} flow(s)" in text and first.flows > 0
    off = forecast(make_plan(), obs).render()
    assert "policy: off" in off and "applied before the first switch" not in off


def test_a_policy_that_cannot_be_read_holds_prepare_and_says_why() -> None:
    class Unreadable(PolicyToy):
        def observe(self):  # noqa: ANN202
            obs = super().observe()
            error = "GlobalNetworkPolicy broken: spec.ingress[0].action: 'Maybe' is not an action"
            return obs.model_copy(update={"policy": PolicyFacts(error=error)})

    toy = Unreadable(workers=1)
    plan = make_plan(policy=CONTINUOUS)
    cp, now = start(plan, toy), T0
    for _ in range(30):
        cp, decision = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    assert cp.run_phase is RunPhase.PREFLIGHT and not toy.cilium_objects
    assert "cannot be translated (GlobalNetworkPolicy broken" in decision.reason and "fix that object" in decision.reason


def test_the_run_lists_its_policy_objects_only_when_it_may_apply_or_remove_them() -> None:
    toy = PolicyToy(workers=1)
    plan = make_plan(policy=CONTINUOUS)
    cp = start(plan, toy)
    assert observe_scope(plan, None, "run").policy_objects and observe_scope(plan, cp, "run").policy_objects   # prepare
    migrating = cp.model_copy(update={"run_phase": RunPhase.MIGRATING})
    assert not observe_scope(plan, migrating, "resume").policy_objects
    assert observe_scope(plan, request(migrating, "abort"), "resume").policy_objects
    assert observe_scope(plan, migrating, "rollback").policy_objects


def test_finalize_keeps_enforcement_on_without_apply_configmap() -> None:
    toy = PolicyToy(workers=1)
    plan = make_plan(policy=CONTINUOUS, finalize={"apply_configmap": False})
    cp, now = run(plan, toy, start(plan, toy))
    cp, _kinds = finalize(plan, toy, cp, now)
    assert cp.run_phase is RunPhase.FINALIZED
    assert toy.cilium_config == {"enable-policy": "default"}   # nothing else of the final settings
    off = PolicyToy(workers=1)
    plan = make_plan(finalize={"apply_configmap": False})
    cp, now = run(plan, off, start(plan, off))
    finalize(plan, off, cp, now)
    assert off.cilium_config == {}
