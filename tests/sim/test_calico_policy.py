"""The simulated Calico engine, table-driven from Calico's policy reference: tiers and their order,
policy and rule order, first terminal match, Pass, the end-of-tier deny (only for endpoints a policy
of that tier selects), Log, Kubernetes NetworkPolicy at order 1000 in the default tier, the selector
language and its scopes, network sets, nets/notNets, named ports, ranges, notPorts, protocols."""

from __future__ import annotations

import pytest

from migrator.sim.calico_policy import CalicoPolicies
from migrator.sim.calico_selector import SelectorSyntaxError, compile_selector
from tests.sim.policy_harness import calico_flow, pod, policy, store_with

PODS = [pod("x", "a", "192.168.1.1", {"app": "a"}),
        pod("x", "b", "192.168.1.2", {"app": "b"}, ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")]),
        pod("x", "c", "192.168.1.3", {"app": "c"}),
        pod("y", "ya", "192.168.2.1", {"app": "a"}, sa="robot"),
        pod("y", "yc", "192.168.2.3", {"app": "c"})]


def gnp(name: str, **spec) -> tuple[str, dict]:
    return policy("GlobalNetworkPolicy", name, spec)


def np(name: str, ns: str = "x", **spec) -> tuple[str, dict]:
    return policy("NetworkPolicy", name, spec, ns=ns)


def tier(name: str, order: float | None, default_action: str | None = None) -> tuple[str, dict]:
    spec: dict = {} if order is None else {"order": order}
    if default_action:
        spec["defaultAction"] = default_action
    return policy("Tier", name, spec)


ALLOW_ALL = [{"action": "Allow"}]
ENDPOINTS = ("endpoints", {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "db", "namespace": "y"},
                           "subsets": [{"addresses": [{"ip": "192.168.2.1"}], "ports": [{"port": 5432}]}]})
DENY_A = [{"action": "Deny", "source": {"selector": "app == 'a'"}}]

CASES = {
    # tiers: the first tier that decides wins, whatever later tiers say
    "tier order: earlier tier's deny wins": (
        [tier("first", 10), tier("second", 20),
         gnp("first.deny", tier="first", selector="app == 'b'", ingress=DENY_A),
         gnp("second.allow", tier="second", selector="app == 'b'", ingress=ALLOW_ALL)],
        ("a", "b", 80), False, "GlobalNetworkPolicy first.deny ingress rule 0 (Deny)"),
    "tier order: reversed, the allow decides": (
        [tier("first", 30), tier("second", 20),
         gnp("first.deny", tier="first", selector="app == 'b'", ingress=DENY_A),
         gnp("second.allow", tier="second", selector="app == 'b'", ingress=ALLOW_ALL)],
        ("a", "b", 80), True, "second.allow"),
    "Pass skips to the next tier": (
        [tier("first", 10), tier("second", 20),
         gnp("first.pass", tier="first", selector="app == 'b'",
             ingress=[{"action": "Pass", "source": {"selector": "app == 'a'"}}, {"action": "Deny"}]),
         gnp("second.allow", tier="second", selector="app == 'b'", ingress=ALLOW_ALL)],
        ("a", "b", 80), True, "second.allow"),
    "Pass into a tier that decides nothing ends in its deny": (
        [tier("first", 10), tier("second", 20),
         gnp("first.pass", tier="first", selector="app == 'b'", ingress=[{"action": "Pass"}]),
         gnp("second.other", tier="second", selector="app == 'b'",
             ingress=[{"action": "Allow", "source": {"selector": "app == 'c'"}}])],
        ("a", "b", 80), False, "end of tier second"),
    "Pass beyond the last tier: the profile allows": (
        [tier("first", 10), gnp("first.pass", tier="first", selector="app == 'b'", ingress=[{"action": "Pass"}])],
        ("a", "b", 80), True, "passed by every tier"),
    "end-of-tier deny for a selected endpoint": (
        [tier("first", 10), gnp("first.only-c", tier="first", selector="app == 'b'",
                                ingress=[{"action": "Allow", "source": {"selector": "app == 'c'"}}])],
        ("a", "b", 80), False, "end of tier first (no rule of first.only-c matched)"),
    "no end-of-tier deny for an endpoint the tier does not select": (
        [tier("first", 10), gnp("first.only-c", tier="first", selector="app == 'b'",
                                ingress=[{"action": "Allow", "source": {"selector": "app == 'c'"}}])],
        ("a", "c", 80), True, "no Calico policy applies"),
    "a tier with defaultAction Pass hands on": (
        [tier("first", 10, "Pass"), tier("second", 20),
         gnp("first.nothing", tier="first", selector="app == 'b'",
             ingress=[{"action": "Allow", "source": {"selector": "app == 'c'"}}]),
         gnp("second.allow", tier="second", selector="app == 'b'", ingress=ALLOW_ALL)],
        ("a", "b", 80), True, "second.allow"),
    "a tier without order comes after ordered ones": (
        [tier("last", None), tier("second", 20),
         gnp("last.deny", tier="last", selector="app == 'b'", ingress=DENY_A),
         gnp("second.allow", tier="second", selector="app == 'b'", ingress=ALLOW_ALL)],
        ("a", "b", 80), True, "second.allow"),
    # policies within a tier, rules within a policy
    "policy order: lower order first": (
        [np("allow", order=10, selector="app == 'b'", ingress=ALLOW_ALL),
         np("deny", order=20, selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), True, "x/allow"),
    "policy order: a deny ordered first wins": (
        [np("allow", order=30, selector="app == 'b'", ingress=ALLOW_ALL),
         np("deny", order=20, selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), False, "x/deny ingress rule 0 (Deny)"),
    "no order sorts after every order": (
        [np("allow", selector="app == 'b'", ingress=ALLOW_ALL),
         np("deny", order=5000, selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), False, "x/deny"),
    "equal orders: by name": (
        [np("b-allow", order=10, selector="app == 'b'", ingress=ALLOW_ALL),
         np("a-deny", order=10, selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), False, "x/a-deny"),
    "deny before allow: the denied port": (
        [np("pair", order=10, selector="app == 'b'", ingress=[
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [81]}}, {"action": "Allow"}])],
        ("a", "b", 81), False, "rule 0 (Deny)"),
    "deny before allow: another port": (
        [np("pair", order=10, selector="app == 'b'", ingress=[
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [81]}}, {"action": "Allow"}])],
        ("a", "b", 80), True, "rule 1"),
    "Log goes on to the next rule": (
        [np("log", order=10, selector="app == 'b'", ingress=[{"action": "Log"}, *DENY_A, {"action": "Allow"}])],
        ("a", "b", 80), False, "rule 1 (Deny)"),
    # Kubernetes NetworkPolicy: default tier, order 1000
    "a Kubernetes NetworkPolicy allow comes before an unordered Calico deny": (
        [policy("KubernetesNetworkPolicy", "kallow", {"podSelector": {"matchLabels": {"app": "b"}},
                                                      "ingress": [{"from": [{"podSelector": {}}]}]}, ns="x"),
         np("deny", selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), True, "x/knp.default.kallow"),
    "a Calico deny ordered below 1000 beats the Kubernetes allow": (
        [policy("KubernetesNetworkPolicy", "kallow", {"podSelector": {"matchLabels": {"app": "b"}},
                                                      "ingress": [{"from": [{"podSelector": {}}]}]}, ns="x"),
         np("deny", order=500, selector="app == 'b'", ingress=DENY_A)],
        ("a", "b", 80), False, "x/deny"),
    "Kubernetes default-deny: from another namespace": (
        [policy("KubernetesNetworkPolicy", "same-ns", {"podSelector": {},
                                                       "ingress": [{"from": [{"podSelector": {}}]}]}, ns="x")],
        ("ya", "b", 80), False, "end of tier default"),
    "Kubernetes namespaceSelector and endPort": (
        [policy("KubernetesNetworkPolicy", "blue", {"podSelector": {}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}],
            "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}]}]}, ns="x")],
        ("ya", "b", 8050), True, "knp.default.blue"),
    # selectors and their scopes
    "a namespaced policy's rule selector stays in its namespace": (
        [np("from-a", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"selector": "app == 'a'"}}])],
        ("ya", "b", 80), False, "end of tier default"),
    "namespaceSelector opens it to the selected namespaces": (
        [np("from-blue", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"selector": "app == 'a'", "namespaceSelector": "team == 'blue'"}}])],
        ("ya", "b", 80), True, "x/from-blue"),
    "projectcalico.org/name selects a namespace by name": (
        [np("from-y", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"namespaceSelector": "projectcalico.org/name == 'y'"}}])],
        ("ya", "b", 80), True, "x/from-y"),
    "a global policy's rule selector spans namespaces": (
        [gnp("g", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "source": {"selector": "app == 'a'"}}])],
        ("ya", "b", 80), True, "GlobalNetworkPolicy g"),
    "GlobalNetworkPolicy namespaceSelector picks the endpoints": (
        [gnp("g", order=1, namespaceSelector="team == 'blue'", selector="all()", ingress=[{"action": "Deny"}])],
        ("a", "b", 80), True, "no Calico policy applies"),
    "notSelector is not scoped to the namespace": (
        [np("not-a", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}])],
        ("c", "b", 80), True, "x/not-a"),
    "notSelector in a namespaced policy still confines the peer to its namespace": (
        [np("not-a", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}])],
        ("yc", "b", 80), False, "end of tier"),
    "notSelector in a global policy does not": (
        [gnp("not-a", order=1, selector="app == 'b'",
             ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}])],
        ("yc", "b", 80), True, "GlobalNetworkPolicy not-a"),
    "notSelector excludes a matching pod": (
        [np("not-a", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "source": {"notSelector": "app == 'a'"}}])],
        ("a", "b", 80), False, "end of tier"),
    "serviceAccounts names": (
        [gnp("robots", order=1, selector="app == 'b'",
             ingress=[{"action": "Allow", "source": {"serviceAccounts": {"names": ["robot"]}}}])],
        ("ya", "b", 80), True, "robots"),
    "serviceAccounts names: another account": (
        [gnp("robots", order=1, selector="app == 'b'",
             ingress=[{"action": "Allow", "source": {"serviceAccounts": {"names": ["robot"]}}}])],
        ("a", "b", 80), False, "end of tier"),
    # network sets, nets, ports, protocols
    "egress to a GlobalNetworkSet selected through global()": (
        [policy("GlobalNetworkSet", "partners", {"nets": ["203.0.113.0/24"]}, labels={"kind": "partner"}),
         np("out", order=1, selector="app == 'a'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"namespaceSelector": "global()", "selector": "kind == 'partner'"}}])],
        ("a", "203.0.113.9", 443), True, "x/out egress rule 0"),
    "a GlobalNetworkSet holds only its nets": (
        [policy("GlobalNetworkSet", "partners", {"nets": ["203.0.113.0/24"]}, labels={"kind": "partner"}),
         np("out", order=1, selector="app == 'a'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"namespaceSelector": "global()", "selector": "kind == 'partner'"}}])],
        ("a", "198.51.100.9", 443), False, "egress of x/a denied at the end of tier default"),
    "a namespaced NetworkSet matches in its namespace": (
        [policy("NetworkSet", "office", {"nets": ["198.51.100.0/24"]}, ns="x", labels={"kind": "office"}),
         np("out", order=1, selector="app == 'a'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"selector": "kind == 'office'"}}])],
        ("a", "198.51.100.9", 443), True, "x/out"),
    "a NetworkSet of another namespace does not": (
        [policy("NetworkSet", "office", {"nets": ["198.51.100.0/24"]}, ns="y", labels={"kind": "office"}),
         np("out", order=1, selector="app == 'a'", types=["Egress"], egress=[
             {"action": "Allow", "destination": {"selector": "kind == 'office'"}}])],
        ("a", "198.51.100.9", 443), False, "end of tier"),
    "nets also match pods": (
        [np("net", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "source": {"nets": ["192.168.1.0/24"]}}])],
        ("a", "b", 80), True, "x/net"),
    "notNets": (
        [np("out", order=1, selector="app == 'a'", types=["Egress"],
            egress=[{"action": "Allow", "destination": {"notNets": ["10.0.0.0/8"]}}])],
        ("a", "10.1.2.3", 80), False, "end of tier"),
    "notNets lets the rest out": (
        [np("out", order=1, selector="app == 'a'", types=["Egress"],
            egress=[{"action": "Allow", "destination": {"notNets": ["10.0.0.0/8"]}}])],
        ("a", "203.0.113.9", 80), True, "x/out"),
    "a named port is the destination pod's": (
        [np("http", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}])],
        ("a", "b", 8080), True, "x/http"),
    "a named port does not match another number": (
        [np("http", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}])],
        ("a", "b", 80), False, "end of tier"),
    "a named port needs its protocol": (
        [np("dns", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["dns"]}}])],
        ("a", "b", 53), False, "end of tier"),
    "a port range": (
        [np("range", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["80:90"]}}])],
        ("a", "b", 90), True, "x/range"),
    "past a port range": (
        [np("range", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["80:90"]}}])],
        ("a", "b", 91), False, "end of tier"),
    "notPorts": (
        [np("not81", order=1, selector="app == 'b'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"notPorts": [81]}}])],
        ("a", "b", 81), False, "end of tier"),
    "a protocol rule does not match another protocol": (
        [np("udp", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "protocol": "UDP"}])],
        ("a", "b", 80), False, "end of tier"),
    "notProtocol": (
        [np("not-udp", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "notProtocol": "UDP"}])],
        ("a", "b", 80), True, "x/not-udp"),
    "protocol by number": (
        [np("six", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "protocol": 6}])],
        ("a", "b", 80), True, "x/six"),
    "ICMP rules do not match TCP": (
        [np("icmp", order=1, selector="app == 'b'", ingress=[{"action": "Allow", "protocol": "ICMP"}])],
        ("a", "b", 80), False, "end of tier"),
    "a doNotTrack policy applies to host endpoints only": (
        [gnp("untracked", order=1, selector="app == 'b'", doNotTrack=True, applyOnForward=True,
             ingress=[{"action": "Deny"}])],
        ("a", "b", 80), True, "no Calico policy applies"),
    "egress to a Service's endpoint on its port": (
        [ENDPOINTS, np("to-db", order=1, selector="app == 'a'", types=["Egress"],
                       egress=[{"action": "Allow", "destination": {"services": {"name": "db", "namespace": "y"}}}])],
        ("a", "ya", 5432), True, "x/to-db"),
    "a Service's endpoint on another port": (
        [ENDPOINTS, np("to-db", order=1, selector="app == 'a'", types=["Egress"],
                       egress=[{"action": "Allow", "destination": {"services": {"name": "db", "namespace": "y"}}}])],
        ("a", "ya", 80), False, "end of tier"),
    "a pod outside the Service": (
        [ENDPOINTS, np("to-db", order=1, selector="app == 'a'", types=["Egress"],
                       egress=[{"action": "Allow", "destination": {"services": {"name": "db", "namespace": "y"}}}])],
        ("a", "c", 5432), False, "end of tier"),
    "ingress from a Service's endpoints": (
        [ENDPOINTS, np("from-db", order=1, selector="app == 'b'",
                       ingress=[{"action": "Allow", "source": {"services": {"name": "db", "namespace": "y"}}}])],
        ("ya", "b", 80), True, "x/from-db"),
    "egress is checked at the source": (
        [np("no-out", order=1, selector="app == 'a'", types=["Egress"], egress=[{"action": "Deny"}])],
        ("a", "c", 80), False, "egress of x/a denied by NetworkPolicy x/no-out egress rule 0 (Deny)"),
    "types default to Ingress": (
        [np("only-ingress-rules", order=1, selector="app == 'a'", ingress=[{"action": "Deny"}])],
        ("a", "c", 80), True, "egress: no Calico policy applies"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_calico_semantics(case: str) -> None:
    objects, (src, dst, port), allowed, reason = CASES[case]
    store = store_with(*PODS, *objects)
    ok, why = calico_flow(store, src, dst, port)
    assert ok is allowed and reason in why, why


SELECTORS = [
    ("all()", True), ("", True), ("app == 'web'", True), ('app == "web"', True), ("app == 'db'", False),
    ("app != 'db'", True), ("missing != 'x'", True), ("app in {'db', 'web'}", True), ("app in {}", False),
    ("app not in {'web'}", False), ("missing not in {'x'}", True), ("has(tier)", True), ("!has(tier)", False),
    ("has(missing)", False), ("!has(missing)", True), ("app == 'web' && tier == 'fe'", True),
    ("app == 'db' || tier == 'fe'", True), ("app == 'db' && tier == 'fe' || env == 'prod'", True),
    ("app == 'db' && (tier == 'fe' || env == 'prod')", False), ("!(app == 'web')", False),
    ("!app == 'db'", True), ("app contains 'eb'", True), ("app starts with 'we'", True),
    ("app ends with 'db'", False), ("missing contains ''", False), ("global()", False),
    ("k8s-app == 'dns-1' && example.com/role == 'x.y'", True),
]


@pytest.mark.parametrize(("text", "expected"), SELECTORS, ids=[s or "empty" for s, _ in SELECTORS])
def test_selector_language(text: str, expected: bool) -> None:
    labels = {"app": "web", "tier": "fe", "env": "prod", "k8s-app": "dns-1", "example.com/role": "x.y"}
    assert compile_selector(text)(labels, True) is expected


def test_namespace_scope_of_all_and_global() -> None:
    assert compile_selector("all()", "namespace")({}, True) and not compile_selector("all()", "namespace")({}, False)
    assert compile_selector("global()", "namespace")({}, False) and not compile_selector("global()", "namespace")({}, True)


@pytest.mark.parametrize("text", ["app ==", "app = 'x'", "has(", "app in {'a'", "&& x == 'y'"])
def test_a_bad_selector_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(SelectorSyntaxError, match="column"):
        compile_selector(text)


def test_a_policy_with_an_invalid_selector_is_ignored() -> None:
    store = store_with(*PODS, np("broken", order=1, selector="app ==", ingress=[{"action": "Deny"}]))
    assert calico_flow(store, "a", "b", 80) == (True, "egress: no Calico policy applies; ingress: no Calico policy applies")


def test_a_policy_change_is_seen_by_the_next_verdict() -> None:
    store = store_with(*PODS)
    engine = CalicoPolicies(store)
    a, b = store.get("pods", "x", "a"), store.get("pods", "x", "b")
    assert engine.verdict(b, "ingress", "192.168.1.1", a, 80, "tcp")[0]
    kind, obj = np("deny", order=1, selector="app == 'b'", ingress=DENY_A)
    store.create("crd.projectcalico.org/networkpolicies", obj)
    assert not engine.verdict(b, "ingress", "192.168.1.1", a, 80, "tcp")[0]
    store.delete("crd.projectcalico.org/networkpolicies", "x", "deny")
    assert engine.verdict(b, "ingress", "192.168.1.1", a, 80, "tcp")[0]


@pytest.mark.parametrize(("pools", "dst", "masqueraded"), [
    ([("192.168.0.0/16", True, False)], "10.245.1.5", True),          # the Cilium pool is no Calico pool
    ([("192.168.0.0/16", True, False)], "192.168.7.7", False),        # inside the pool
    ([("192.168.0.0/16", True, False), ("10.245.0.0/16", False, True)], "10.245.1.5", False),  # disabled pool
    ([("192.168.0.0/16", False, False)], "10.245.1.5", False),        # natOutgoing off
])
def test_nat_outgoing_follows_the_ip_pools(pools, dst, masqueraded) -> None:
    objs = [policy("IPPool", f"pool-{i}", {"cidr": cidr, "natOutgoing": nat, "disabled": disabled})
            for i, (cidr, nat, disabled) in enumerate(pools)]
    assert CalicoPolicies(store_with(*objs)).nat_outgoing("192.168.1.1", dst) is masqueraded
