"""The ``calico-policies`` scenarios' workloads and policies: three tenants' namespaces under Calico policy.

Namespaces ``tenant-a`` (label ``tenant: a``), ``tenant-b`` (``tenant: b``) and ``shared``
(``tenant: shared``), each with an ``app: server`` Deployment of agnhost netexec pods serving
ports 80 and 81, TCP and UDP. ``tenant-b`` also holds one pod labelled ``quarantine: "true"``.
What the policies decide (a probe pod carrying only an ``app`` label behaves as a server does):

* tier ``security`` (order 100), ordered GlobalNetworkPolicies:
  - ``security.quarantine`` (order 5): pods labelled ``quarantine == 'true'`` get no ingress and
    no egress (Deny both ways);
  - ``security.isolate-tenant-a`` (order 10) / ``security.isolate-tenant-b`` (order 20): ingress
    into a tenant's namespace from its own namespace or ``shared`` is passed to the next tier,
    from another tenant's namespace (any namespace labelled ``tenant``) denied, from anywhere
    else passed;
* default tier: in ``tenant-a`` a deny-before-allow pair, ``deny-shared-81`` (order 100: Deny
  TCP 81 from ``shared``) then ``allow-shared`` (order 200: Allow from ``shared``); in ``shared``
  ``egress-control`` (order 300, Egress): allow DNS to kube-dns, anything to the tenants'
  namespaces, ``app == 'server'`` pods in any tenant namespace (``shared`` included), TCP 443 to
  the GlobalNetworkSet ``partners`` (label ``external: partners``, 203.0.113.0/24 and
  198.51.100.0/25), and the end of the tier denies the rest;
* Kubernetes NetworkPolicies: ``default-deny`` (ingress) and ``allow-same-namespace`` in both
  tenants, and in ``tenant-b`` ``allow-shared-80`` (TCP 80 from ``shared``).

So, per port/protocol: a→a and b→b allowed; a↔b denied; shared→a allowed except TCP 81;
shared→b TCP 80 only; a, b → shared allowed; shared → shared only to ``app: server``; shared →
other namespaces (``shop``) and outside addresses denied; nothing reaches or leaves a quarantined
pod. ``calico-policies-untranslatable`` adds ``security.no-track`` (doNotTrack, so it applies to
host endpoints only and changes no pod's verdict), which has no Cilium equivalent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from migrator.sim import workloads as w

Obj = dict[str, Any]
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
CALICO = "crd.projectcalico.org/v1"
TENANTS = {"tenant-a": "a", "tenant-b": "b", "shared": "shared"}
SERVER_REPLICAS = 2


def _namespace(name: str, tenant: str) -> Obj:
    ns = w.namespace(name)
    ns["metadata"]["labels"]["tenant"] = tenant
    return ns


def _netexec(port: int) -> Obj:
    return w.container(f"netexec-{port}", AGNHOST, args=["netexec", f"--http-port={port}", f"--udp-port={port}"],
                       ports=[(f"tcp-{port}", port, "TCP"), (f"udp-{port}", port, "UDP")])


def _server(ns: str, name: str, labels: dict[str, str], replicas: int) -> Obj:
    return w.deployment(ns, name, labels, replicas, [_netexec(80), _netexec(81)])


def _gnp(name: str, spec: Obj) -> Obj:
    return {"apiVersion": CALICO, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec}


def _np(ns: str, name: str, spec: Obj) -> Obj:
    return {"apiVersion": CALICO, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def _knp(ns: str, name: str, spec: Obj) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def _isolate(tenant: str, order: int) -> Obj:
    return _gnp(f"security.isolate-tenant-{tenant}", {
        "tier": "security", "order": order, "namespaceSelector": f"tenant == '{tenant}'", "selector": "all()",
        "types": ["Ingress"],
        "ingress": [
            {"action": "Pass", "source": {"namespaceSelector": f"tenant in {{'{tenant}', 'shared'}}"}},
            {"action": "Deny", "source": {"namespaceSelector": "has(tenant)"}},
            {"action": "Pass"},
        ]})


def objects(untranslatable: bool = False) -> Iterator[tuple[str, Obj]]:
    """``(resource, object)`` pairs for the builder, in creation order."""
    for ns, tenant in TENANTS.items():
        yield "namespaces", _namespace(ns, tenant)
        yield "apps/deployments", _server(ns, "server", {"app": "server"}, SERVER_REPLICAS)
    yield "apps/deployments", _server("tenant-b", "quarantined", {"app": "quarantined", "quarantine": "true"}, 1)

    yield "crd.projectcalico.org/tiers", {"apiVersion": CALICO, "kind": "Tier", "metadata": {"name": "security"},
                                          "spec": {"order": 100, "defaultAction": "Deny"}}
    yield "crd.projectcalico.org/globalnetworkpolicies", _gnp("security.quarantine", {
        "tier": "security", "order": 5, "selector": "quarantine == 'true'", "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]})
    yield "crd.projectcalico.org/globalnetworkpolicies", _isolate("a", 10)
    yield "crd.projectcalico.org/globalnetworkpolicies", _isolate("b", 20)
    yield "crd.projectcalico.org/globalnetworksets", {
        "apiVersion": CALICO, "kind": "GlobalNetworkSet",
        "metadata": {"name": "partners", "labels": {"external": "partners"}},
        "spec": {"nets": ["203.0.113.0/24", "198.51.100.0/25"]}}

    yield "crd.projectcalico.org/networkpolicies", _np("tenant-a", "default.deny-shared-81", {
        "tier": "default", "order": 100, "selector": "all()", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "protocol": "TCP",
                     "source": {"namespaceSelector": "tenant == 'shared'"}, "destination": {"ports": [81]}}]})
    yield "crd.projectcalico.org/networkpolicies", _np("tenant-a", "default.allow-shared", {
        "tier": "default", "order": 200, "selector": "all()", "types": ["Ingress"],
        "ingress": [{"action": "Allow", "source": {"namespaceSelector": "tenant == 'shared'"}}]})
    yield "crd.projectcalico.org/networkpolicies", _np("shared", "default.egress-control", {
        "tier": "default", "order": 300, "selector": "all()", "types": ["Egress"],
        "egress": [
            {"action": "Allow", "protocol": "UDP", "destination": {
                "namespaceSelector": "projectcalico.org/name == 'kube-system'",
                "selector": "k8s-app == 'kube-dns'", "ports": [53]}},
            {"action": "Allow", "destination": {"namespaceSelector": "tenant in {'a', 'b'}"}},
            {"action": "Allow", "destination": {"namespaceSelector": "has(tenant)", "selector": "app == 'server'"}},
            {"action": "Allow", "protocol": "TCP", "destination": {
                "namespaceSelector": "global()", "selector": "external == 'partners'", "ports": [443]}},
        ]})

    for ns in ("tenant-a", "tenant-b"):
        yield "networking.k8s.io/networkpolicies", _knp(ns, "default-deny", {
            "podSelector": {}, "policyTypes": ["Ingress"]})
        yield "networking.k8s.io/networkpolicies", _knp(ns, "allow-same-namespace", {
            "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]})
    yield "networking.k8s.io/networkpolicies", _knp("tenant-b", "allow-shared-80", {
        "podSelector": {}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"tenant": "shared"}}}],
                     "ports": [{"protocol": "TCP", "port": 80}]}]})

    if untranslatable:
        yield "crd.projectcalico.org/globalnetworkpolicies", _gnp("security.no-track", {
            "tier": "security", "order": 1, "selector": "app == 'server'", "doNotTrack": True,
            "applyOnForward": True, "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]})
