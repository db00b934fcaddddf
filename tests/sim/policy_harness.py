"""A bare store holding namespaces, pods and policy objects, for the simulated policy engines' tests."""

from __future__ import annotations

from typing import Any

from migrator.sim.calico_policy import CalicoPolicies
from migrator.sim.store import ResourceType, Store

Obj = dict[str, Any]
CALICO = "crd.projectcalico.org"
TYPES = [
    ResourceType("", "namespaces", "Namespace", False, True),
    ResourceType("", "pods", "Pod", True, True),
    ResourceType("", "serviceaccounts", "ServiceAccount", True, False),
    ResourceType("", "endpoints", "Endpoints", True, False),
    ResourceType("networking.k8s.io", "networkpolicies", "NetworkPolicy", True, False),
    *(ResourceType(CALICO, plural, kind, namespaced, False, custom=True) for plural, kind, namespaced in (
        ("networkpolicies", "NetworkPolicy", True), ("globalnetworkpolicies", "GlobalNetworkPolicy", False),
        ("networksets", "NetworkSet", True), ("globalnetworksets", "GlobalNetworkSet", False),
        ("tiers", "Tier", False), ("ippools", "IPPool", False))),
    *(ResourceType("cilium.io", plural, kind, namespaced, False, custom=True) for plural, kind, namespaced in (
        ("ciliumnetworkpolicies", "CiliumNetworkPolicy", True),
        ("ciliumclusterwidenetworkpolicies", "CiliumClusterwideNetworkPolicy", False),
        ("ciliumcidrgroups", "CiliumCIDRGroup", False))),
]
RESOURCE = {"NetworkPolicy": f"{CALICO}/networkpolicies", "GlobalNetworkPolicy": f"{CALICO}/globalnetworkpolicies",
            "NetworkSet": f"{CALICO}/networksets", "GlobalNetworkSet": f"{CALICO}/globalnetworksets",
            "Tier": f"{CALICO}/tiers", "IPPool": f"{CALICO}/ippools",
            "KubernetesNetworkPolicy": "networking.k8s.io/networkpolicies",
            "CiliumNetworkPolicy": "cilium.io/ciliumnetworkpolicies",
            "CiliumClusterwideNetworkPolicy": "cilium.io/ciliumclusterwidenetworkpolicies",
            "CiliumCIDRGroup": "cilium.io/ciliumcidrgroups"}


def store_with(*objects: tuple[str, Obj]) -> Store:
    """A store with namespaces ``x`` (label ``team: red``) and ``y`` (``team: blue``), and the objects."""
    store = Store()
    for t in TYPES:
        store.register(t)
    for ns, team in (("x", "red"), ("y", "blue")):
        store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns, "labels": {"kubernetes.io/metadata.name": ns, "team": team}}})
    for kind, obj in objects:
        store.create(RESOURCE.get(kind, kind), obj)
    return store


def pod(ns: str, name: str, ip: str, labels: dict[str, str] | None = None,
        ports: list[tuple[str, int, str]] | None = None, sa: str = "default") -> tuple[str, Obj]:
    container: Obj = {"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    return "pods", {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
                    "spec": {"containers": [container], "serviceAccountName": sa, "nodeName": "node-1"},
                    "status": {"podIP": ip, "phase": "Running"}}


def policy(kind: str, name: str, spec: Obj, ns: str | None = None, labels: dict[str, str] | None = None) -> tuple[str, Obj]:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {}), **({"labels": labels} if labels else {})}
    api = {"KubernetesNetworkPolicy": "networking.k8s.io/v1"}.get(kind, "cilium.io/v2" if kind.startswith("Cilium")
                                                                   else f"{CALICO}/v1")
    return kind, {"apiVersion": api, "kind": "NetworkPolicy" if kind == "KubernetesNetworkPolicy" else kind,
                  "metadata": meta, "spec": spec}


def calico_flow(store: Store, src: str, dst: str, port: int, protocol: str = "tcp") -> tuple[bool, str]:
    """Felix at both ends: egress of ``src`` then ingress of ``dst`` (pod names or bare IPs)."""
    engine = CalicoPolicies(store)
    pods = {p["metadata"]["name"]: p for p in store.list("pods")}
    by_ip = {p["status"]["podIP"]: p for p in pods.values()}
    s, d = pods.get(src), pods.get(dst)
    s_ip = s["status"]["podIP"] if s else src
    d_ip = d["status"]["podIP"] if d else dst
    reasons = []
    for local, direction, peer_ip in ((s, "egress", d_ip), (d, "ingress", s_ip)):
        if local is not None:
            ok, why = engine.verdict(local, direction, peer_ip, by_ip.get(peer_ip), port, protocol)
            if not ok:
                return ok, why
            reasons.append(f"{direction}: {why}")
    return True, "; ".join(reasons)
