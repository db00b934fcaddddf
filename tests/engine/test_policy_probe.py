"""The policy probe's truth table, judged: the baseline recorded from /dial answers, a gate's
checks expecting each flow's verdict before the run, changes the gap report explains left out,
an unexplained change failing the gate and naming the flow, both verdicts and the pods."""

from __future__ import annotations

import pytest
import yaml

from migrator.engine import policy_probe as pp
from migrator.engine.actions import ProbeCheck
from migrator.engine.decide import new_checkpoint
from migrator.engine.oncall import rollback_run_step
from migrator.engine.probes import Gate
from migrator.execute import _policy_outcome
from migrator.model.checkpoint import RollbackRequest
from migrator.model.observation import ClusterObservation, PodFacts
from migrator.model.plan import PlanError, PolicyProbeSection, parse_plan
from migrator.policy import model
from migrator.policy.transition import explained_by, gap
from tests.engine.test_probes import PLAN, cluster
from tests.engine.toy import T0
from tests.runner.helpers import EXAMPLE

SECTION = PolicyProbeSection(namespaces=("x", "y", "z"))
NODES = ("n1", "n2", "n3")


def pods(section: PolicyProbeSection = SECTION, ready: bool = True) -> tuple[PodFacts, ...]:
    where = pp.placement(section, NODES)
    return tuple(PodFacts(namespace=ns, name=f"{pp.NAME}-{name}-{i:03d}", uid=f"u{i}", node=where[(ns, name)],
                          phase="Running", ready=ready, ip=f"10.0.0.{i + 10}",
                          labels={pp.POD_LABEL: name, pp.NAME_LABEL: pp.NAME})
                 for i, (ns, name) in enumerate(pp.probe_ids(section)))


def observation(section: PolicyProbeSection = SECTION, ready: bool = True) -> ClusterObservation:
    return ClusterObservation(policy_probe_pods=pods(section, ready))


def dial(check: ProbeCheck, allowed: bool) -> str:
    """What the executor makes of a /dial answer (one try) for ``check``."""
    return _policy_outcome(check, 1 if allowed else 0, allowed, [] if allowed else ["i/o timeout"])


def baseline_of(allowed) -> pp.PolicyBaseline:
    """A complete baseline whose verdicts are ``allowed(src id, dst id, port, proto)``."""
    base = pp.new_baseline(SECTION)
    checks = pp.baseline_checks(observation(), SECTION, base)
    assert not isinstance(checks, str)
    keys = pp.flow_keys(SECTION)
    detail = {c.name: dial(c, allowed(*keys[int(c.name[len("policy#"):])])) for c in checks}
    return pp.fold_baseline(base, detail)


def test_the_table_has_the_e2e_shape_and_the_baseline_is_small() -> None:
    keys = pp.flow_keys(SECTION)
    assert len(keys) == 9 * 8 * 2 * 2       # pods x other pods x ports x TCP/UDP, loopback left out
    base = baseline_of(lambda s, d, port, proto: d[0] != "z")
    assert base.complete and len(base.table) == len(keys)
    assert base.table.count(pp.DENIED) == 3 * 8 * 2 * 2 and base.table.count(pp.ALLOWED) == len(keys) - 96


def test_each_probe_pod_is_a_daemonset_pinned_to_a_node_serving_tcp_and_udp() -> None:
    plan = parse_plan({**yaml.safe_load(EXAMPLE.read_text()), "probes": {"policy": {
        "namespaces": ["tenant-a", "tenant-b", "shared"], "create_namespaces": False,
        "pods": {"a": {"app": "web"}, "b": {}}}}})
    docs = pp.manifests(plan, ("node-1", "node-2", "node-3"))
    assert [d["kind"] for d in docs] == ["DaemonSet"] * 6             # existing namespaces are not created
    first = docs[0]
    assert (first["metadata"]["namespace"], first["metadata"]["name"]) == ("tenant-a", f"{pp.NAME}-a")
    template = first["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "web" and template["metadata"]["labels"]["pod"] == "a"
    terms = template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-1"]
    assert [c["args"] for c in template["spec"]["containers"]] == [
        ["netexec", "--http-port=80", "--udp-port=80"], ["netexec", "--http-port=81", "--udp-port=81"]]
    assert [d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0] for d in docs] == [
        "node-1", "node-2", "node-3", "node-1", "node-2", "node-3"]
    created = parse_plan({**yaml.safe_load(EXAMPLE.read_text()), "probes": {"policy": {}}})
    assert [d["kind"] for d in pp.manifests(created, ("node-1",))][:3] == ["Namespace"] * 3
    with pytest.raises(PlanError, match="probes.policy needs probes.enabled"):
        parse_plan({**yaml.safe_load(EXAMPLE.read_text()), "probes": {"enabled": False, "policy": {}}})


def test_baseline_waits_for_the_probe_pods_and_keeps_undialled_flows_unseen() -> None:
    base = pp.new_baseline(SECTION)
    assert pp.baseline_checks(observation(ready=False), SECTION, base) == (
        "waiting for the policy probe pods: x/a, x/b, x/c …")
    checks = pp.baseline_checks(observation(), SECTION, base)
    assert not isinstance(checks, str) and {c.expect for c in checks} == {"observe"}
    assert {c.protocol for c in checks} == {"http", "udp"}
    first = pp.fold_baseline(base, {checks[0].name: dial(checks[0], True),
                                    checks[1].name: "fail 0/1: proxy to x/pod: connection refused",
                                    checks[2].name: dial(checks[2], False)})
    assert first.table[:3] == "1?0" and not first.complete
    again = pp.baseline_checks(observation(), SECTION, first)
    assert not isinstance(again, str) and len(again) == len(checks) - 2


def test_a_change_inside_the_gap_passes_and_one_outside_fails_naming_the_flow() -> None:
    base = baseline_of(lambda s, d, port, proto: True)
    into_y = lambda flow: flow.dst.namespace == "y"                       # noqa: E731 — the gap report's say
    checks = pp.gate_checks(observation(), SECTION, base, into_y)
    assert not isinstance(checks, str)
    names = pp.flow_names(SECTION, checks)
    assert len(names) == len(checks) and all(c.name.startswith(pp.GATE_PREFIX) for c in checks)
    assert not any("->y/" in name for name in names.values()) and {c.expect for c in checks} == {"allow"}
    # now: every flow into y is denied (explained), and flows into z/a too (not explained)
    now = {c.name: dial(c, allowed=not names[c.name].split("->")[1].startswith("z/a")) for c in checks}
    gate = Gate(checks=checks, names=names)
    ok, blocking = gate.verdict({n for n, o in now.items() if o.startswith("ok")})
    assert not ok
    assert sorted(gate.shown(n) for n in blocking) == sorted(n for n in names.values() if "->z/a " in n)
    failure = now[next(c for c, n in names.items() if n == "policy x/b->z/a 81/UDP")]
    assert failure.startswith("fail 0/1: denied now, allowed before the run (pods ")
    assert f"{pp.NAME}-b-" in failure and f"{pp.NAME}-a-" in failure

    everything = pp.gate_checks(observation(), SECTION, base)              # no gap report: nothing explained
    assert not isinstance(everything, str) and len(everything) == len(pp.flow_keys(SECTION))


def test_a_flow_denied_before_must_stay_denied() -> None:
    base = baseline_of(lambda s, d, port, proto: port != 81)
    checks = pp.gate_checks(observation(), SECTION, base)
    assert not isinstance(checks, str)
    names = pp.flow_names(SECTION, checks)
    check = next(c for c in checks if names[c.name] == "policy y/c->x/a 81/TCP")
    assert check.expect == "deny"
    assert dial(check, False) == "ok 0/1: denied as before the run"
    assert dial(check, True).startswith("fail 1/1: allowed now, denied before the run (pods ")


def test_another_probe_is_not_judged_against_the_baseline() -> None:
    base = baseline_of(lambda s, d, port, proto: True)
    other = PolicyProbeSection(namespaces=("x", "y", "z"), ports=(80,))
    assert pp.gate_checks(observation(other), other, base) == ()


def test_the_gap_report_explains_flows_of_pods_on_switched_nodes() -> None:
    """The transition predictor wired in: a rule on y's pods that tells Calico-served peers apart
    is enforced only as ``unmanaged`` once y's pods are on Cilium, so flows into them are explained."""
    facts = pods()
    inv = model.Inventory(
        policies=(model.kubernetes_policy({"metadata": {"name": "from-x", "namespace": "y"}, "spec": {
            "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "x"}}}]}]}}),),
        pods=tuple(model.Pod(p.namespace, p.name, p.labels, p.ip, node=p.node) for p in facts),
        namespaces={ns: {"kubernetes.io/metadata.name": ns} for ns in SECTION.namespaces})
    y_nodes = {p.node for p in facts if p.namespace == "y"}
    assert y_nodes == set(NODES)
    report = gap(inv, [], set(), {"n2"})
    explained = explained_by(report)
    by_id = {(p.namespace, p.labels[pp.POD_LABEL]): p for p in facts}
    x_a, y_b, z_c = by_id[("x", "a")], by_id[("y", "b")], by_id[("z", "c")]
    assert y_b.node == "n2"
    assert x_a.node == "n1" and explained(pp.Flow(x_a, y_b, 80, "TCP"))   # Cilium sees x/a as unmanaged
    assert not explained(pp.Flow(z_c, y_b, 80, "TCP"))     # denied before and after: no change
    assert not explained(pp.Flow(y_b, x_a, 80, "TCP"))     # x selects nothing: allowed throughout


def test_rollback_all_removes_the_policy_probe_with_the_fleet() -> None:
    for create in (True, False):
        section = SECTION.model_copy(update={"create_namespaces": create})
        plan = PLAN.model_copy(update={"probes": PLAN.probes.model_copy(update={"policy": section})})
        obs = cluster(cilium=set(), nodes=3).model_copy(update={"probe_pods": (), "node_config": None,
                                                                "policy_probe_pods": pods()})
        cp = new_checkpoint(plan, obs, "run-1", T0).model_copy(update={"rollback": RollbackRequest(
            all=True, requested_at=T0, by="test", swept=True)})
        _cp, actions, notes, _wake = rollback_run_step(plan, cp, obs, T0)
        deleted = {(a.plural, a.namespace, a.name) for a in actions if a.kind == "delete-object"}
        wanted = ({("namespaces", None, ns) for ns in SECTION.namespaces} if create else
                  {("daemonsets", ns, f"{pp.NAME}-{name}") for ns, name in pp.probe_ids(SECTION)})
        assert wanted <= deleted, (deleted, notes)
        assert "removing the probe fleet" in notes[0]
