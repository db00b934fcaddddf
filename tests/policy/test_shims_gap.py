"""Shims (what lets un-migrated pods in while a rule names peers by label), and the gap they leave
as the node's gap report computes it (``policy.transition`` over the translation and the shims)."""

from __future__ import annotations

from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.shims import RUN_LABEL, SHIM_LABEL, run_objects, shim_rules
from migrator.policy.transition import gap
from tests.policy.fixtures import NAMESPACES, knp, np

WEB_FROM_LB = np("web-from-lb", selector="app == 'web'", ingress=[
    {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'lb'"}, "destination": {"ports": [80]}}])
FROM_PARTNERS = np("from-net", selector="app == 'web'", ingress=[
    {"action": "Allow", "protocol": "TCP", "source": {"nets": ["203.0.113.0/24"]}, "destination": {"ports": [443]}}])


def _inv(*policies: model.Policy, pods: tuple[model.Pod, ...]) -> model.Inventory:
    return model.Inventory(policies=policies, pods=pods, namespaces=NAMESPACES)


def _pods(**where: str) -> tuple[model.Pod, ...]:
    """shop's web, lb and a plain pod, each on the node named for it (node-a unless told)."""
    labels = {"web": {"app": "web"}, "lb": {"role": "lb"}, "plain": {"app": "batch"}}
    return tuple(model.Pod("shop", name, labels[name], f"10.0.0.{i + 10}", node=where.get(name, "node-a"))
                 for i, name in enumerate(labels))


def test_a_label_rule_gets_a_shim_for_unmanaged_on_its_ports_and_a_cidr_rule_none() -> None:
    inv = _inv(WEB_FROM_LB, FROM_PARTNERS, pods=_pods())
    objs = run_objects(translate(inv).objects, inv.policies)
    shims = [o for o in objs if o["metadata"]["labels"].get(SHIM_LABEL) == "true"]
    assert [o["metadata"]["name"] for o in shims] == ["migrator-shim.calico.web-from-lb"]
    spec = shims[0]["spec"]
    assert spec["endpointSelector"]["matchLabels"] == {"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}
    assert spec["ingress"] == [{"fromEntities": ["unmanaged"],
                                "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]
    assert spec["enableDefaultDeny"] == {"ingress": False, "egress": False}
    assert shims[0]["kind"] == "CiliumClusterwideNetworkPolicy"
    assert {o["metadata"]["labels"][RUN_LABEL] for o in objs if o not in shims} == {"translation"}


def test_a_kubernetes_networkpolicy_peer_gets_a_shim_too() -> None:
    allow = knp("api-from-web", podSelector={"matchLabels": {"app": "db"}}, policyTypes=["Ingress"],
                ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}])
    [rule] = shim_rules([], [allow])
    assert rule.shim == "migrator-shim.knp.shop.api-from-web" and rule.source == "knp/shop/api-from-web"
    assert rule.entry == {"toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}]}


def _gap(inv: model.Inventory, before: set[str], after: set[str]) -> list[str]:
    return [f.line() for f in gap(inv, run_objects(translate(inv).objects, inv.policies), before, after).flows]


def test_the_gap_names_calico_pods_the_shim_lets_in_that_calico_denies() -> None:
    # web switches to Cilium (node-b); lb and the plain pod stay on Calico (node-a)
    inv = _inv(WEB_FROM_LB, pods=_pods(web="node-b"))
    [line] = _gap(inv, set(), {"node-b"})
    assert line.startswith("shop/app=batch -> shop/app=web [calico→cilium] 80/TCP: deny before the run")
    assert "migrator-shim.calico.web-from-lb" in line   # lb is what the rule names: it is no gap


def test_without_the_shim_the_named_calico_peer_would_be_cut_off() -> None:
    inv = _inv(WEB_FROM_LB, pods=_pods(web="node-b"))
    translation = [dict(o) for o in translate(inv).objects]
    lines = [f.line() for f in gap(inv, translation, set(), {"node-b"}).flows]
    assert any(line.startswith("shop/role=lb -> shop/app=web [calico→cilium] 80/TCP: allow before the run")
               for line in lines), lines


def test_no_gap_where_the_calico_side_already_enforces_it() -> None:
    plain_egress = np("batch-out", selector="app == 'batch'", types=["Egress"], egress=[
        {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}])   # no TCP 80 out of batch
    inv = _inv(WEB_FROM_LB, plain_egress, pods=_pods(web="node-b"))
    assert _gap(inv, set(), {"node-b"}) == []


def test_no_gap_once_every_pod_is_on_cilium_or_while_none_is() -> None:
    inv = _inv(WEB_FROM_LB, pods=_pods(web="node-b"))
    assert _gap(inv, {"node-a", "node-b"}, {"node-a", "node-b"}) == [] and _gap(inv, set(), set()) == []
    # the last switch's window still holds the flow the previous one opened, until it closes
    [line] = _gap(inv, {"node-b"}, {"node-a", "node-b"})
    assert "deny before the run, allow before the step, deny after" in line
