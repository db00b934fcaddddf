"""The simulated Cilium engine, table-driven from Cilium's policy documentation: deny wins over any
allow (CNP, CCNP or Kubernetes NetworkPolicy), default-deny only for selected endpoints (and
``enableDefaultDeny``), label identities for managed pods only (``unmanaged`` Calico pods, filtered
labels), the CNP namespace default, entities, CIDR rules for ``world`` only, CIDR groups, ports."""

from __future__ import annotations

import pytest

from migrator.sim.cilium_identity import Identity, relevant, reserved
from migrator.sim.cilium_policy import CiliumPolicies
from tests.sim.policy_harness import pod, policy, store_with

PODS = [pod("x", "a", "10.245.1.1", {"app": "a", "pod-template-hash": "abc",
                                      "statefulset.kubernetes.io/pod-name": "a-0"}),
        pod("x", "b", "10.245.1.2", {"app": "b"}, ports=[("http", 8080, "TCP")]),
        pod("y", "ya", "10.245.2.1", {"app": "a"})]


def cnp(name: str, ns: str = "x", **spec) -> tuple[str, dict]:
    return policy("CiliumNetworkPolicy", name, spec, ns=ns)


def ccnp(name: str, **spec) -> tuple[str, dict]:
    return policy("CiliumClusterwideNetworkPolicy", name, spec)


B = {"matchLabels": {"app": "b"}}
FROM_A = [{"fromEndpoints": [{"matchLabels": {"app": "a"}}]}]
WORLD = reserved("203.0.113.9", "world")
UNMANAGED = reserved("192.168.7.7", "unmanaged")
REMOTE = reserved("172.18.0.12", "remote-node")

CASES = {
    "an allow from a label": ([cnp("p", endpointSelector=B, ingress=FROM_A)], "a", True, "CiliumNetworkPolicy x/p ingress[0]"),
    "default deny once selected": ([cnp("p", endpointSelector=B, ingress=FROM_A)], "ya", False, "not allowed by CiliumNetworkPolicy x/p"),
    "an unselected endpoint allows": ([cnp("p", endpointSelector={"matchLabels": {"app": "z"}}, ingress=FROM_A)], "ya", True, "no Cilium policy selects it"),
    "a CNP's peers are in its namespace": ([cnp("p", endpointSelector=B, ingress=FROM_A)], "ya", False, "not allowed"),
    "unless the selector names the namespace": (
        [cnp("p", endpointSelector=B, ingress=[{"fromEndpoints": [
            {"matchLabels": {"app": "a", "k8s:io.kubernetes.pod.namespace": "y"}}]}])], "ya", True, "x/p ingress[0]"),
    "a CCNP's peers are anywhere": ([ccnp("c", endpointSelector=B, ingress=FROM_A)], "ya", True, "CiliumClusterwideNetworkPolicy c"),
    "namespace labels in a CCNP": (
        [ccnp("c", endpointSelector=B, ingress=[{"fromEndpoints": [
            {"matchLabels": {"k8s:io.cilium.k8s.namespace.labels.team": "blue"}}]}])], "ya", True, "CiliumClusterwideNetworkPolicy c"),
    "deny wins over an allow of another policy": (
        [cnp("allow", endpointSelector=B, ingress=FROM_A), ccnp("deny", endpointSelector=B, ingressDeny=FROM_A)],
        "a", False, "denied by CiliumClusterwideNetworkPolicy deny ingressDeny[0]"),
    "deny wins over a Kubernetes NetworkPolicy allow": (
        [policy("KubernetesNetworkPolicy", "k", {"podSelector": {}, "ingress": [{}]}, ns="x"),
         cnp("deny", endpointSelector={}, ingressDeny=FROM_A)], "a", False, "CiliumNetworkPolicy x/deny ingressDeny[0]"),
    "a deny alone puts the endpoint in default deny": (
        [cnp("deny", endpointSelector=B, ingressDeny=[{"fromEntities": ["world"]}])], "a", False, "not allowed by"),
    "enableDefaultDeny false keeps the rest open": (
        [cnp("deny", endpointSelector=B, ingressDeny=[{"fromEntities": ["world"]}],
             enableDefaultDeny={"ingress": False})], "a", True, "no Cilium policy selects it"),
    "a Kubernetes NetworkPolicy allow in the union": (
        [policy("KubernetesNetworkPolicy", "k", {"podSelector": {"matchLabels": {"app": "b"}},
                                                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]},
                ns="x"), cnp("other", endpointSelector=B, ingress=[{"fromEntities": ["world"]}])],
        "a", True, "NetworkPolicy x/k ingress[0]"),
    "labels left out of identities match nothing": (
        [cnp("p", endpointSelector=B, ingress=[{"fromEndpoints": [{"matchLabels": {"pod-template-hash": "abc"}}]},
                                               {"fromEndpoints": [{"matchLabels": {
                                                   "statefulset.kubernetes.io/pod-name": "a-0"}}]}])],
        "a", False, "not allowed"),
    "an empty fromEndpoints list selects nobody": (
        [cnp("p", endpointSelector=B, ingress=[{"fromEndpoints": []}])], "a", False, "not allowed"),
    "a rule without peers selects everybody": ([cnp("p", endpointSelector=B, ingress=[{}])], "a", True, "x/p ingress[0]"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_cilium_semantics(case: str) -> None:
    objects, src, allowed, reason = CASES[case]
    store = store_with(*PODS, *objects)
    engine = CiliumPolicies(store)
    dst = engine.identity(store.get("pods", "x", "b"))
    peer = engine.identity(next(p for p in store.list("pods") if p["metadata"]["name"] == src))
    ok, why = engine.verdict(dst, "ingress", peer, 80, "tcp")
    assert ok is allowed and reason in why, why


PEER_CASES = {
    # a Calico pod is unmanaged: no label selector matches it
    "unmanaged is no label match": ([{"fromEndpoints": [{"matchLabels": {"app": "a"}}]}], UNMANAGED, False),
    "unmanaged entity": ([{"fromEntities": ["unmanaged"]}], UNMANAGED, True),
    "cluster holds unmanaged": ([{"fromEntities": ["cluster"]}], UNMANAGED, True),
    "world is not unmanaged": ([{"fromEntities": ["world"]}], UNMANAGED, False),
    "all holds world": ([{"fromEntities": ["all"]}], WORLD, True),
    "cluster does not hold world": ([{"fromEntities": ["cluster"]}], WORLD, False),
    "remote-node": ([{"fromEntities": ["remote-node"]}], REMOTE, True),
    "a CCNP wildcard is the cluster's pods, not unmanaged": ([{"fromEndpoints": [{}]}], UNMANAGED, False),
    "fromCIDR matches world": ([{"fromCIDR": ["203.0.113.0/24"]}], WORLD, True),
    "fromCIDR does not match an unmanaged pod inside it": ([{"fromCIDR": ["192.168.0.0/16"]}], UNMANAGED, False),
    "fromCIDR does not match a node by default": ([{"fromCIDR": ["172.18.0.0/16"]}], REMOTE, False),
    "fromCIDRSet except": ([{"fromCIDRSet": [{"cidr": "203.0.113.0/24", "except": ["203.0.113.8/29"]}]}], WORLD, False),
    "cidrGroupRef": ([{"fromCIDRSet": [{"cidrGroupRef": "partners"}]}], WORLD, True),
    "cidrGroupSelector": ([{"fromCIDRSet": [{"cidrGroupSelector": {"matchLabels": {"kind": "partner"}}}]}], WORLD, True),
    "a CIDR group's other nets": ([{"fromCIDRSet": [{"cidrGroupRef": "partners"}]}],
                                  reserved("198.51.100.1", "world"), False),
}


@pytest.mark.parametrize("case", list(PEER_CASES), ids=list(PEER_CASES))
def test_cilium_peers(case: str) -> None:
    ingress, peer, allowed = PEER_CASES[case]
    group = policy("CiliumCIDRGroup", "partners", {"externalCIDRs": ["203.0.113.0/24"]}, labels={"kind": "partner"})
    store = store_with(*PODS, group, ccnp("c", endpointSelector=B, ingress=ingress))
    engine = CiliumPolicies(store)
    ok, why = engine.verdict(engine.identity(store.get("pods", "x", "b")), "ingress", peer, 80, "tcp")
    assert ok is allowed, why


def test_policy_cidr_match_mode_nodes_lets_cidr_rules_match_nodes() -> None:
    store = store_with(*PODS, ccnp("c", endpointSelector=B, ingress=[{"fromCIDR": ["172.18.0.0/16"]}]))
    engine = CiliumPolicies(store)
    b = engine.identity(store.get("pods", "x", "b"))
    assert not engine.verdict(b, "ingress", REMOTE, 80, "tcp")[0]
    assert engine.verdict(b, "ingress", REMOTE, 80, "tcp", cidr_nodes=True)[0]


@pytest.mark.parametrize(("ports", "port", "protocol", "allowed"), [
    ([{"port": "80", "protocol": "TCP"}], 80, "tcp", True),
    ([{"port": "80", "protocol": "TCP"}], 80, "udp", False),
    ([{"port": "80"}], 80, "udp", True),                                   # protocol defaults to ANY
    ([{"port": "8000", "endPort": 8100, "protocol": "TCP"}], 8100, "tcp", True),
    ([{"port": "8000", "endPort": 8100, "protocol": "TCP"}], 8101, "tcp", False),
    ([{"port": "http", "protocol": "TCP"}], 8080, "tcp", True),            # the destination pod's named port
    ([{"port": "http", "protocol": "TCP"}], 80, "tcp", False),
    ([{"port": "0", "protocol": "UDP"}], 4242, "udp", True),               # port 0: any port
])
def test_to_ports(ports, port, protocol, allowed) -> None:
    store = store_with(*PODS, cnp("p", endpointSelector=B, ingress=[{"toPorts": [{"ports": ports}]}]))
    engine = CiliumPolicies(store)
    ok, why = engine.verdict(engine.identity(store.get("pods", "x", "b")), "ingress", WORLD, port, protocol)
    assert ok is allowed, why


def test_egress_rules_check_the_destination() -> None:
    store = store_with(*PODS, cnp("out", endpointSelector={"matchLabels": {"app": "a"}},
                                  egress=[{"toEndpoints": [B], "toPorts": [{"ports": [{"port": "http"}]}]},
                                          {"toCIDRSet": [{"cidr": "203.0.113.0/24"}]}],
                                  egressDeny=[{"toEntities": ["unmanaged"]}]))
    engine = CiliumPolicies(store)
    a, b = (engine.identity(store.get("pods", "x", n)) for n in ("a", "b"))
    assert engine.verdict(a, "egress", b, 8080, "tcp")[0]
    assert not engine.verdict(a, "egress", b, 80, "tcp")[0]
    assert engine.verdict(a, "egress", WORLD, 443, "tcp")[0]
    assert "egressDeny[0]" in engine.verdict(a, "egress", UNMANAGED, 80, "tcp")[1]


def test_modes_and_the_local_host() -> None:
    store = store_with(*PODS)
    engine = CiliumPolicies(store)
    b = engine.identity(store.get("pods", "x", "b"))
    assert engine.verdict(b, "ingress", WORLD, 80, "tcp", mode="default")[0]
    assert not engine.verdict(b, "ingress", WORLD, 80, "tcp", mode="always")[0]
    assert not engine.verdict(b, "egress", WORLD, 80, "tcp", mode="always")[0]
    assert engine.verdict(b, "ingress", reserved("172.18.0.11", "host"), 80, "tcp", mode="always")[0]


def test_identity_relevant_labels() -> None:
    assert relevant("app") and relevant("app.kubernetes.io/name") and relevant("io.kubernetes.pod.namespace")
    assert not any(relevant(k) for k in ("pod-template-hash", "controller-revision-hash", "kubernetes.io/hostname",
                                         "statefulset.kubernetes.io/pod-name", "io.kubernetes.container.name",
                                         "beta.kubernetes.io/arch", "k8s.io/x", "annotation.x"))
    assert relevant("tenant") and not relevant("tenant", "k8s:app")     # an inclusive pattern: an allow-list
    assert relevant("io.cilium.k8s.namespace.labels.tenant", "k8s:app")
    assert not relevant("app", "!app")


def test_a_pod_identity_carries_namespace_and_its_labels() -> None:
    store = store_with(*PODS)
    ident: Identity = CiliumPolicies(store).identity(store.get("pods", "x", "a"))
    assert ident.labels["io.kubernetes.pod.namespace"] == "x"
    assert ident.labels["io.cilium.k8s.namespace.labels.team"] == "red"
    assert ident.labels["io.cilium.k8s.policy.serviceaccount"] == "default"
    assert "pod-template-hash" not in ident.labels and ident.labels["app"] == "a"
