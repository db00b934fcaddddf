"""Table-driven translation tests: one row per construct of the reference's semantic mapping, each
asserting the policy's class, the construct named when it is not exact, and the Cilium output.
Every exact row is also checked by the equivalence check over the fixture inventory (no difference)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.emit import ISOLATE
from migrator.policy.findings import blocking
from migrator.policy.verify import verify
from tests.policy.fixtures import gnp, inventory, knp, np

TCP80 = {"protocol": "TCP", "destination": {"ports": [80]}}


def by_name(objects: Any, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["metadata"]["name"] == name)


def specs(o: dict[str, Any]) -> list[dict[str, Any]]:
    return [o["spec"]] if "spec" in o else o["specs"]


def only(o: dict[str, Any]) -> dict[str, Any]:
    (s,) = specs(o)
    return s


def _namespaced_peers(o: dict[str, Any], namespace: str) -> bool:
    """A CNP in ``namespace`` whose every ingress peer is an endpoint of that namespace or a CIDR group."""
    rules = only(o)["ingress"]
    pinned = [sel for r in rules for sel in r.get("fromEndpoints", [])]
    return (o["kind"] == "CiliumNetworkPolicy" and o["metadata"]["namespace"] == namespace and bool(pinned)
            and all(sel["matchLabels"].get("k8s:io.kubernetes.pod.namespace") == namespace for sel in pinned)
            and all("fromEndpoints" in r or "fromCIDRSet" in r for r in rules)
            and not any(c.get("cidr") for r in rules for c in r.get("fromCIDRSet", [])))


@dataclass
class Case:
    id: str
    policies: tuple[model.Policy, ...]
    subject: str                      # the policy whose class is asserted
    klass: str
    output: Callable[[Any], bool]     # objects -> the construct is carried as expected
    construct: str | None = None      # named in a finding when not exact
    tiers: tuple[model.Tier, ...] = ()
    hosts: tuple[model.HostEndpoint, ...] = ()


CASES = [
    Case("np-to-cnp-same-namespace-peer",
         (np("web", selector="app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "role == 'lb'"},
                                                       **TCP80}]),),
         "np/shop/web", "exact",
         lambda objs: by_name(objs, "calico.web")["kind"] == "CiliumNetworkPolicy"
         and only(by_name(objs, "calico.web"))["ingress"] == [{
             "fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop", "k8s:role": "lb"}}],
             "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]),
    Case("gnp-to-ccnp-all-namespaces",
         (gnp("db", selector="app == 'db'", ingress=[{"action": "Allow", "source": {"selector": "role == 'fe'"}}]),),
         "gnp/db", "exact",
         lambda objs: by_name(objs, "calico.db")["kind"] == "CiliumClusterwideNetworkPolicy"
         and only(by_name(objs, "calico.db"))["ingress"] == [{"fromEndpoints": [{"matchLabels": {"k8s:role": "fe"}}]}]),
    Case("selector-or-becomes-several-subjects",
         (gnp("either", selector="app == 'web' || role == 'lb'", ingress=[{"action": "Allow", **TCP80}]),),
         "gnp/either", "exact",
         lambda objs: [s["endpointSelector"] for s in specs(by_name(objs, "calico.either"))]
         == [{"matchLabels": {"k8s:app": "web"}}, {"matchLabels": {"k8s:role": "lb"}}]),
    Case("selector-not-over-compound-de-morgan",
         (gnp("notboth", selector="!(app == 'db' && role == 'fe')", types=["Ingress"]),),
         "gnp/notboth", "exact",
         lambda objs: [s["endpointSelector"] for s in specs(by_name(objs, "calico.notboth"))] == [
             {"matchExpressions": [{"key": "k8s:app", "operator": "NotIn", "values": ["db"]}]},
             {"matchExpressions": [{"key": "k8s:role", "operator": "NotIn", "values": ["fe"]}]}]),
    Case("gnp-namespace-selector-to-namespace-labels",
         (gnp("tenant-a", namespaceSelector="tenant == 'a'", selector="all()",
              ingress=[{"action": "Allow", "source": {"namespaceSelector": "tenant == 'a'"}}]),),
         "gnp/tenant-a", "exact",
         lambda objs: only(by_name(objs, "calico.tenant-a"))["endpointSelector"]
         == {"matchLabels": {"k8s:io.cilium.k8s.namespace.labels.tenant": "a"}}),
    Case("np-peer-in-other-namespaces-becomes-pinned-ccnp",
         (np("from-ops", selector="app == 'web'",
             ingress=[{"action": "Allow", "source": {"namespaceSelector": "team == 'ops'"}}]),),
         "np/shop/from-ops", "exact",
         lambda objs: by_name(objs, "calico.shop.from-ops")["kind"] == "CiliumClusterwideNetworkPolicy"
         and only(by_name(objs, "calico.shop.from-ops"))["endpointSelector"]["matchLabels"]
         == {"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}),
    Case("types-without-rules-isolate",
         (np("isolate", selector="app == 'db'", types=["Ingress", "Egress"]),),
         "np/shop/isolate", "exact",
         lambda objs: only(by_name(objs, "calico.isolate"))["ingress"] == [{"fromEndpoints": [ISOLATE]}]
         and only(by_name(objs, "calico.isolate"))["egress"] == [{"toEndpoints": [ISOLATE]}]),
    Case("deny-before-allow-is-a-plain-ingress-deny",
         (gnp("dba", selector="app == 'db'", ingress=[
             {"action": "Deny", "source": {"selector": "role == 'fe'"}},
             {"action": "Allow", "source": {"selector": "has(role)"}}]),),
         "gnp/dba", "exact",
         lambda objs: only(by_name(objs, "calico.dba"))["ingressDeny"]
         == [{"fromEndpoints": [{"matchLabels": {"k8s:role": "fe"}}]}]),
    Case("allow-before-deny-narrows-the-deny",
         (gnp("abd", selector="app == 'db'", ingress=[
             {"action": "Allow", "source": {"selector": "role == 'lb'"}},
             {"action": "Deny", "source": {"selector": "has(role)"}}]),),
         "gnp/abd", "exact",
         lambda objs: only(by_name(objs, "calico.abd"))["ingressDeny"] == [{"fromEndpoints": [{
             "matchExpressions": [{"key": "k8s:role", "operator": "Exists"},
                                  {"key": "k8s:role", "operator": "NotIn", "values": ["lb"]}]}]}]),
    Case("allow-before-deny-on-other-protocols-is-approximate",
         (gnp("abd-l4", selector="app == 'db'", ingress=[
             {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'fe'"},
              "destination": {"ports": [5432]}},
             {"action": "Deny", "source": {"selector": "role == 'fe'"}}]),),
         "gnp/abd-l4", "approximate",
         lambda objs: {"port": "1", "endPort": 5431, "protocol": "TCP"} in [
             p for e in only(by_name(objs, "calico.abd-l4"))["ingressDeny"] for tp in e.get("toPorts", [])
             for p in tp["ports"]], construct="narrowing"),
    Case("policy-order-across-policies",
         (gnp("late-deny", order=200, selector="app == 'db'", ingress=[{"action": "Deny"}]),
          gnp("early-allow", order=100, selector="app == 'db'",
              ingress=[{"action": "Allow", "source": {"selector": "role == 'fe'"}}])),
         "gnp/late-deny", "exact",
         lambda objs: only(by_name(objs, "calico.late-deny"))["ingressDeny"][0]
         == {"fromEndpoints": [{"matchExpressions": [{"key": "k8s:role", "operator": "NotIn", "values": ["fe"]}]}]}),
    Case("kubernetes-policy-at-order-1000-beats-an-unordered-deny",
         (knp("allow-fe", podSelector={"matchLabels": {"app": "db"}},
              ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "fe"}}}]}]),
          np("deny-fe", selector="app == 'db'", ingress=[{"action": "Deny", "source": {"selector": "role == 'fe'"}}])),
         "np/shop/deny-fe", "exact",
         lambda objs: "ingressDeny" not in only(by_name(objs, "calico.deny-fe"))),
    Case("tier-end-deny-is-explicit-before-a-later-tier",
         (gnp("security.only-web", tier="security", selector="app == 'db'",
              ingress=[{"action": "Allow", "source": {"selector": "app == 'web'"}}]),
          np("open", selector="app == 'db'", ingress=[{"action": "Allow"}])),
         "gnp/security.only-web", "exact",
         lambda objs: by_name(objs, "calico-tier.security.end-of-tier")["kind"] == "CiliumClusterwideNetworkPolicy",
         tiers=(model.Tier("security", 100.0),)),
    Case("pass-to-next-tier",
         (gnp("security.pass-fe", tier="security", selector="app == 'db'", ingress=[
             {"action": "Pass", "source": {"selector": "role == 'fe'"}},
             {"action": "Deny"}]),
          np("allow-fe", selector="app == 'db'", ingress=[{"action": "Allow", "source": {"selector": "role == 'fe'"}}])),
         "gnp/security.pass-fe", "exact",
         lambda objs: "ingressDeny" in specs(by_name(objs, "calico.security.pass-fe"))[0]
         and specs(by_name(objs, "calico.security.pass-fe"))[1]["endpointSelector"]["matchExpressions"] == [
             {"key": "k8s:io.kubernetes.pod.namespace", "operator": "NotIn", "values": ["shop"]}],
         tiers=(model.Tier("security", 100.0),)),
    Case("pass-beyond-the-last-tier-is-allowed",
         (gnp("security.pass-all", tier="security", selector="app == 'db'", ingress=[{"action": "Pass"}]),),
         "gnp/security.pass-all", "exact",
         lambda objs: only(by_name(objs, "calico.security.pass-all"))["ingress"] == [{"fromEntities": ["all"]}],
         tiers=(model.Tier("security", 100.0),)),
    Case("global-network-set-to-cidr-group",
         (gnp("partners", selector="app == 'web'", ingress=[
             {"action": "Allow", "source": {"selector": "kind == 'partner'", "namespaceSelector": "global()"}}]),),
         "gnp/partners", "exact",
         lambda objs: only(by_name(objs, "calico.partners"))["ingress"]
         == [{"fromCIDRSet": [{"cidrGroupRef": "calico-globalnetset.partners"}]}]
         and by_name(objs, "calico-globalnetset.partners")["spec"] == {"externalCIDRs": ["203.0.113.0/24"]}),
    Case("namespaced-network-set-matched-by-selector",
         (np("backup", selector="app == 'db'", egress=[
             {"action": "Allow", "destination": {"selector": "kind == 'backup'"}}], types=["Egress"]),),
         "np/shop/backup", "exact",
         lambda objs: {"toCIDRSet": [{"cidrGroupRef": "calico-netset.shop.backup"}]}
         in only(by_name(objs, "calico.backup"))["egress"]),
    Case("nets-to-cidr-set",
         (np("out", selector="app == 'web'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"nets": ["192.0.2.0/24"], "notNets": ["192.0.2.128/25"]}}]),),
         "np/shop/out", "exact",
         lambda objs: only(by_name(objs, "calico.out"))["egress"]
         == [{"toCIDRSet": [{"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}]}]),
    Case("nets-covering-pods",
         (np("pods-by-cidr", selector="app == 'web'", ingress=[
             {"action": "Allow", "source": {"nets": ["10.0.0.0/16"]}}]),),
         "np/shop/pods-by-cidr", "approximate",
         lambda objs: only(by_name(objs, "calico.pods-by-cidr"))["ingress"] == [{"fromCIDRSet": [{"cidr": "10.0.0.0/16"}]}],
         construct="cidr-covers-pods"),
    Case("not-nets-is-world-minus",
         (np("not-nets", selector="app == 'web'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"notNets": ["192.0.2.0/24"]}}]),),
         "np/shop/not-nets", "exact",
         lambda objs: {"toCIDRSet": [{"cidr": "0.0.0.0/0", "except": ["192.0.2.0/24"]}]}
         in only(by_name(objs, "calico.shop.not-nets"))["egress"]),
    Case("port-range-and-named-port",
         (np("ports", selector="app == 'web'", ingress=[
             {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["8000:8100", "http"]}}]),),
         "np/shop/ports", "exact",
         lambda objs: only(by_name(objs, "calico.ports"))["ingress"] == [
             {"fromEntities": ["all"], "toPorts": [{"ports": [{"port": "8000", "endPort": 8100, "protocol": "TCP"}]}]},
             {"fromEntities": ["all"], "toPorts": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}]),
    Case("not-ports-become-complement-ranges",
         (np("not-ports", selector="app == 'web'", ingress=[
             {"action": "Allow", "protocol": "UDP", "destination": {"notPorts": [53]}}]),),
         "np/shop/not-ports", "exact",
         lambda objs: [p for e in only(by_name(objs, "calico.not-ports"))["ingress"] for tp in e["toPorts"]
                       for p in tp["ports"]] == [{"port": "1", "endPort": 52, "protocol": "UDP"},
                                                 {"port": "54", "endPort": 65535, "protocol": "UDP"}]),
    Case("service-account-names",
         (gnp("sa", selector="app == 'db'", ingress=[
             {"action": "Allow", "source": {"serviceAccounts": {"names": ["db-sa"]}}}]),),
         "gnp/sa", "exact",
         lambda objs: only(by_name(objs, "calico.sa"))["ingress"] == [{"fromEndpoints": [
             {"matchLabels": {"k8s:io.cilium.k8s.policy.serviceaccount": "db-sa"}}]}]),
    Case("icmp-type",
         (np("ping", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}]),),
         "np/shop/ping", "exact",
         lambda objs: only(by_name(objs, "calico.ping"))["ingress"][0]["icmps"]
         == [{"fields": [{"type": 8, "family": "IPv4"}]}]),
    Case("icmpv6-type",
         (np("ping6", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 128}}]),),
         "np/shop/ping6", "exact",
         lambda objs: only(by_name(objs, "calico.ping6"))["ingress"][0]["icmps"]
         == [{"fields": [{"type": 128, "family": "IPv6"}]}]),
    Case("not-selector",   # namespaced: Calico keeps the peer in the policy's namespace, so a CNP
         (np("not-sel", selector="app == 'web'", ingress=[{"action": "Allow", "source": {"notSelector": "role == 'fe'"}}]),),
         "np/shop/not-sel", "approximate", lambda objs: _namespaced_peers(by_name(objs, "calico.not-sel"), "shop"),
         construct="notSelector"),
    Case("not-selector-global",
         (gnp("not-sel", selector="app == 'web'", ingress=[{"action": "Allow", "source": {"notSelector": "role == 'fe'"}}]),),
         "gnp/not-sel", "approximate", lambda objs: {"0.0.0.0/0", "::/0"} <= {
             c.get("cidr") for r in only(by_name(objs, "calico.not-sel"))["ingress"] for c in r.get("fromCIDRSet", [])},
         construct="notSelector"),
    Case("sctp", (np("sctp", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "SCTP"}]),),
         "np/shop/sctp", "approximate", lambda objs: True, construct="sctp"),
    Case("icmp-without-type", (np("icmp-any", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "ICMP"}]),),
         "np/shop/icmp-any", "approximate",
         lambda objs: only(by_name(objs, "calico.icmp-any"))["ingress"][0]["icmps"][0]["fields"][0]["type"] == 0,
         construct="icmp-any-type"),
    Case("ip-version", (np("v4", selector="app == 'web'", ingress=[{"action": "Allow", "ipVersion": 4}]),),
         "np/shop/v4", "approximate", lambda objs: True, construct="ipVersion"),
    Case("named-port-at-egress",
         (np("eg-named", selector="role == 'lb'", types=["Egress"], egress=[
             {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}]),),
         "np/shop/eg-named", "approximate", lambda objs: True, construct="named-port-egress"),
    Case("host-endpoints-selected",
         (gnp("hosts", selector="has(role)", ingress=[{"action": "Allow"}]),),
         "gnp/hosts", "approximate", lambda objs: True, construct="host-endpoints",
         hosts=(model.HostEndpoint("node-1-eth0", "node-1", {"role": "ingress"}),)),
]

UNTRANSLATABLE_CASES = [
    ("doNotTrack", gnp("u", selector="all()", doNotTrack=True, applyOnForward=True, ingress=[{"action": "Allow"}])),
    ("preDNAT", gnp("u", selector="all()", preDNAT=True, applyOnForward=True, ingress=[{"action": "Deny"}])),
    ("applyOnForward", gnp("u", selector="all()", applyOnForward=True, ingress=[{"action": "Allow"}])),
    ("Log", gnp("u", selector="all()", ingress=[{"action": "Log"}, {"action": "Allow"}])),
    ("source-ports", gnp("u", selector="all()", ingress=[{"action": "Allow", "protocol": "TCP",
                                                          "source": {"ports": [1024]}}])),
    ("icmp-code", gnp("u", selector="all()", ingress=[{"action": "Allow", "protocol": "ICMP",
                                                       "icmp": {"type": 3, "code": 4}}])),
    ("ip-protocol", gnp("u", selector="all()", ingress=[{"action": "Allow", "protocol": 47}])),
    ("notProtocol", gnp("u", selector="all()", ingress=[{"action": "Allow", "notProtocol": "TCP"}])),
    ("http", gnp("u", selector="all()", ingress=[{"action": "Allow", "http": {"methods": ["GET"]}}])),
    ("services", gnp("u", selector="all()", types=["Egress"], egress=[
        {"action": "Allow", "destination": {"services": {"name": "db", "namespace": "shop"}}}])),
    ("service-account-labels", gnp("u", selector="all()", ingress=[
        {"action": "Allow", "source": {"serviceAccounts": {"selector": "team == 'x'"}}}])),
    ("identity-excluded-label", gnp("u", selector="statefulset.kubernetes.io/pod-name == 'db-0'",
                                    ingress=[{"action": "Allow"}])),
    ("selector-contains", gnp("u", selector="app contains 'we'", ingress=[{"action": "Allow"}])),
    ("selector-and-nets", gnp("u", selector="all()", ingress=[
        {"action": "Allow", "source": {"selector": "app == 'web'", "nets": ["10.0.0.0/8"]}}])),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_construct_translates_with_its_class(case: Case) -> None:
    inv = inventory(*case.policies, tiers=case.tiers, host_endpoints=case.hosts)
    t = translate(inv)
    assert t.classes[case.subject] == case.klass, [f.line() for f in t.findings]
    assert case.output(t.objects), t.objects
    named = [f.construct for f in t.findings if f.policy == case.subject]
    if case.construct is None:
        assert named == []
    else:
        assert case.construct in named
    if case.klass == "exact" or case.id.startswith("not-selector"):   # notSelector: exact on these pods
        result = verify(inv, t.objects)
        assert result.differences == (), result.differences[:3]


@pytest.mark.parametrize(("construct", "policy"), UNTRANSLATABLE_CASES, ids=[c for c, _ in UNTRANSLATABLE_CASES])
def test_untranslatable_construct_is_named_with_its_rule(construct: str, policy: model.Policy) -> None:
    t = translate(inventory(policy))
    assert t.classes["gnp/u"] == "untranslatable"
    found = [f for f in t.findings if f.construct == construct]
    assert found, [f.line() for f in t.findings]
    if construct not in ("doNotTrack", "preDNAT", "applyOnForward", "identity-excluded-label",
                         "selector-contains"):
        assert found[0].rule == "ingress[0]" or found[0].rule == "egress[0]"
    assert not any(o["metadata"]["name"] == "calico.u" for o in t.objects)   # nothing emitted for it
    assert blocking(t.findings, accepted=[f.name for f in t.findings]) != []


def test_approximations_block_until_accepted_by_name() -> None:
    t = translate(inventory(np("sctp", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "SCTP"}])))
    (f,) = t.findings
    assert blocking(t.findings) == [f]
    assert blocking(t.findings, accepted=["np/shop/sctp#sctp"]) == []
    assert blocking(t.findings, accepted=["sctp"]) == []
    assert blocking(t.findings, accepted=["np/shop/other#sctp"]) == [f]


def test_kubernetes_policies_stay_native() -> None:
    t = translate(inventory(knp("k", podSelector={}, ingress=[{}])))
    assert t.classes == {}
    assert [o["kind"] for o in t.objects] == ["CiliumCIDRGroup", "CiliumCIDRGroup"]


def test_served_versions_pick_what_the_cluster_serves() -> None:
    from migrator.policy.emit import served
    chosen = served({"ciliumnetworkpolicies.cilium.io": ["v2"], "ciliumclusterwidenetworkpolicies.cilium.io": ["v2"],
                     "ciliumcidrgroups.cilium.io": ["v2alpha1"]})
    assert (chosen.policy, chosen.cidr_group) == ("v2", "v2alpha1")
    t = translate(inventory(), chosen)
    assert {o["apiVersion"] for o in t.objects} == {"cilium.io/v2alpha1"}
    with pytest.raises(ValueError, match="ciliumnetworkpolicies.cilium.io serves v3; install Cilium's CRDs"):
        served({"ciliumnetworkpolicies.cilium.io": ["v3"], "ciliumclusterwidenetworkpolicies.cilium.io": ["v2"],
                "ciliumcidrgroups.cilium.io": ["v2"]})


def test_a_selector_syntax_error_is_untranslatable_naming_the_column() -> None:
    t = translate(inventory(gnp("bad", selector="app == 'web' &&", ingress=[{"action": "Allow"}])))
    (f,) = t.findings
    assert (t.classes["gnp/bad"], f.construct, f.rule) == ("untranslatable", "selector-syntax", "selector")
    assert "unexpected end at column 16" in f.reason


def test_without_end_port_short_ranges_are_listed_and_wide_ones_refused() -> None:
    from migrator.policy.emit import CiliumVersions
    old = CiliumVersions(end_port=False)
    t = translate(inventory(np("short", selector="app == 'web'", ingress=[
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["8000:8002"]}}])), old)
    assert t.classes["np/shop/short"] == "exact"
    assert only(by_name(t.objects, "calico.short"))["ingress"][0]["toPorts"] == [{"ports": [
        {"port": "8000", "protocol": "TCP"}, {"port": "8001", "protocol": "TCP"}, {"port": "8002", "protocol": "TCP"}]}]
    t = translate(inventory(np("wide", selector="app == 'web'", ingress=[
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["8000:9000"]}}])), old)
    assert t.classes["np/shop/wide"] == "untranslatable"
    assert [f.construct for f in t.findings] == ["port-range"]
    assert not any(o["metadata"]["name"] == "calico.wide" for o in t.objects)
