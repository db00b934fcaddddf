"""The equivalence check: no difference on correct translations, differences on planted mistranslations,
with the table naming the flow, both verdicts and the responsible policies."""

from __future__ import annotations

import copy
from typing import Any

from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.endpoints import endpoint_groups
from migrator.policy.verify import verify
from migrator.policy_command import render_differences
from tests.policy.fixtures import gnp, inventory, knp, np

DENY_FE = {"action": "Deny", "source": {"selector": "role == 'fe'"}}
ALLOW_ROLES = {"action": "Allow", "source": {"selector": "has(role)"}}


def mixed() -> model.Inventory:
    """Tenant isolation by an ordered GNP in a tier, a deny-before-allow pair, an allow-before-deny pair,
    network sets, a namespace default-deny Kubernetes policy with an allow."""
    return inventory(
        gnp("platform.tenant-isolation", tier="platform", order=10, selector="all()", types=["Ingress"], ingress=[
            {"action": "Pass", "source": {"namespaceSelector": "tenant == 'a'"}},
            {"action": "Deny"}], namespaceSelector="tenant == 'a'"),
        gnp("db-guard", order=100, selector="app == 'db'", ingress=[DENY_FE, ALLOW_ROLES]),
        np("web", order=50, selector="app == 'web'", ingress=[
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'lb'"}, "destination": {"ports": [80]}},
            {"action": "Deny", "source": {"selector": "has(role)"}}],
           egress=[{"action": "Allow", "destination": {"selector": "kind == 'partner'", "namespaceSelector": "global()"}},
                   {"action": "Allow", "destination": {"selector": "app == 'db'"}}]),
        knp("default-deny", namespace="other", podSelector={}, policyTypes=["Ingress"]),
        knp("allow-lb", namespace="other", podSelector={"matchLabels": {"app": "web"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "lb"}}}], "ports": [{"port": 80}]}]),
        tiers=(model.Tier("platform", 100.0),))


def test_correct_translation_has_no_difference() -> None:
    inv = mixed()
    t = translate(inv)
    assert t.classes == {"gnp/platform.tenant-isolation": "exact", "gnp/db-guard": "exact",
                         "np/shop/web": "approximate"}, [f.line() for f in t.findings]
    assert "other than TCP, UDP, SCTP, ICMP and ICMPv6" in t.findings[0].reason   # the deny's L4 complement
    result = verify(inv, t.objects)
    assert result.flows > 0 and result.differences == ()


def _drop(objects: Any, name: str, section: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(list(objects))
    for o in out:
        if o["metadata"]["name"] == name:
            for s in ([o["spec"]] if "spec" in o else o["specs"]):
                s.pop(section, None)
    return out


def test_a_dropped_ingress_deny_is_reported_with_the_responsible_policies() -> None:
    inv = mixed()
    planted = _drop(translate(inv).objects, "calico.db-guard", "ingressDeny")
    result = verify(inv, planted)
    assert result.differences
    d = next(d for d in result.differences if d.source.endswith("/role=fe") and "app=db" in d.destination
             and d.destination.startswith("shop/"))
    assert (d.calico, d.cilium) == (False, True)
    assert any(r.startswith("gnp/db-guard ingress[0]") for r in d.responsible)
    assert any("calico.db-guard" in r for r in d.responsible)
    table = render_differences(result)
    assert "SOURCE" in table and "deny" in table and "allow" in table and "gnp/db-guard" in table


def test_an_order_inversion_is_reported() -> None:
    """Translate the pair as if the allow came first: Calico (deny first) and the translation disagree."""
    inv = mixed()
    swapped = inventory(*[gnp("db-guard", order=100, selector="app == 'db'", ingress=[ALLOW_ROLES, DENY_FE])
                          if p.name == "db-guard" else p for p in inv.policies], tiers=inv.tiers)
    result = verify(inv, translate(swapped).objects)
    assert {(d.calico, d.cilium) for d in result.differences} == {(False, True)}
    assert all("app=db" in d.destination for d in result.differences)


def test_an_unnarrowed_deny_after_an_allow_is_reported() -> None:
    inv = mixed()
    objects = copy.deepcopy(list(translate(inv).objects))
    web = next(o for o in objects if o["metadata"]["name"] == "calico.web")
    spec = web["spec"] if "spec" in web else web["specs"][0]
    spec["ingressDeny"] = [{"fromEndpoints": [{"matchExpressions": [{"key": "k8s:role", "operator": "Exists"}]}]}]
    result = verify(inv, objects)
    assert result.differences
    assert {(d.calico, d.cilium, d.probe) for d in result.differences} == {(True, False, "80/TCP")}


def test_a_missing_end_of_tier_deny_is_reported() -> None:
    inv = inventory(
        gnp("security.only-web", tier="security", selector="app == 'db'",
            ingress=[{"action": "Allow", "source": {"selector": "app == 'web'"}}]),
        np("open", selector="app == 'db'", ingress=[{"action": "Allow"}]),
        tiers=(model.Tier("security", 100.0),))
    objects = translate(inv).objects
    assert verify(inv, objects).differences == ()
    planted = [o for o in objects if o["metadata"]["name"] != "calico-tier.security.end-of-tier"]
    result = verify(inv, planted)
    assert result.differences and all(d.calico is False and d.cilium is True for d in result.differences)


def test_cost_is_bounded_by_groups_not_pods() -> None:
    inv = mixed()
    many = model.Inventory(policies=inv.policies, network_sets=inv.network_sets, tiers=inv.tiers,
                           namespaces=inv.namespaces,
                           pods=tuple(model.Pod(p.namespace, f"{p.name}-{i}", {**p.labels, "pod-template-hash": str(i)},
                                                f"10.1.{i}.{n}", p.service_account, p.named_ports)
                                      for i in range(20) for n, p in enumerate(inv.pods)))
    assert len(endpoint_groups(many)) == len(endpoint_groups(inv))
    assert verify(many, translate(many).objects).flows == verify(inv, translate(inv).objects).flows


def test_an_untranslatable_policy_shows_as_the_flows_only_calico_enforces() -> None:
    inv = inventory(gnp("logged-deny", selector="app == 'db'", ingress=[
        {"action": "Log"}, {"action": "Deny", "source": {"selector": "role == 'fe'"}}]))
    t = translate(inv)
    assert t.classes["gnp/logged-deny"] == "untranslatable"
    result = verify(inv, t.objects)
    assert result.differences and all((d.calico, d.cilium) == (False, True) for d in result.differences)
    why = {d.responsible[0] for d in result.differences}
    assert why == {"gnp/logged-deny ingress[1]", "tier default: end of tier (gnp/logged-deny)"}


def test_do_not_track_and_pre_dnat_policies_leave_pod_verdicts_alone() -> None:
    """Felix renders doNotTrack and preDNAT policies for host endpoints only: a deny-all of either kind
    selecting every pod changes no pod's verdict, so verify finds nothing to report, while translate
    still names them (untranslatable for the host endpoints they are meant for)."""
    from migrator.policy.calico_eval import CalicoModel
    from migrator.policy.endpoints import Probe
    inv = inventory(
        gnp("no-track", order=1, selector="all()", doNotTrack=True, applyOnForward=True, types=["Ingress", "Egress"],
            ingress=[{"action": "Deny"}], egress=[{"action": "Deny"}]),
        gnp("pre-dnat", order=2, selector="all()", preDNAT=True, applyOnForward=True, ingress=[{"action": "Deny"}]),
        np("web", selector="app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "role == 'lb'"}}]))
    eps = {e.key: e for e in endpoint_groups(inv)}
    lb, web = eps["shop/role=lb"], next(e for k, e in eps.items() if k.startswith("shop/") and "app=web" in k)
    assert CalicoModel(inv).verdict(lb, web, Probe("TCP", 80))[0]
    assert not CalicoModel(inv).verdict(eps["shop/role=fe"], web, Probe("TCP", 80))[0]   # the NP still holds
    t = translate(inv)
    assert t.classes == {"gnp/no-track": "untranslatable", "gnp/pre-dnat": "untranslatable", "np/shop/web": "exact"}
    assert all("host endpoints only" in f.reason for f in t.findings if f.policy != "np/shop/web")
    result = verify(inv, t.objects)
    assert result.flows > 0 and result.differences == ()
