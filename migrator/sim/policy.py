"""Kubernetes NetworkPolicy evaluation for one endpoint, as an enforcing CNI applies it.

A pod selected by no policy for a direction allows everything in that direction; once
selected, only what some rule allows passes. Peers: ``podSelector`` (same namespace unless a
``namespaceSelector`` is given), ``namespaceSelector``, ``ipBlock`` (cidr minus ``except``).
Ports: number or named container port, protocol, ``endPort`` ranges.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Store

if TYPE_CHECKING:
    from migrator.sim.network import Endpoint

Obj = dict[str, Any]


def _ns_labels(store: Store, ns: str) -> dict[str, str]:
    obj = store.try_get("namespaces", None, ns)
    return ((obj or {}).get("metadata") or {}).get("labels") or {"kubernetes.io/metadata.name": ns}


def _peer_matches(store: Store, policy_ns: str, peer_rule: Obj, peer: Endpoint) -> bool:
    block = peer_rule.get("ipBlock")
    if block:
        ip = ipaddress.ip_address(peer.ip)
        if ip not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
    if peer.pod is None:
        return False
    pod_ns = peer.pod["metadata"].get("namespace", "")
    ns_sel = peer_rule.get("namespaceSelector")
    if ns_sel is not None:
        if not label_selector_matches(ns_sel, _ns_labels(store, pod_ns)):
            return False
    elif pod_ns != policy_ns:
        return False
    pod_sel = peer_rule.get("podSelector")
    return pod_sel is None or label_selector_matches(pod_sel, peer.pod["metadata"].get("labels"))


def _port_matches(rule_ports: list[Obj] | None, port: int, protocol: str, target: Obj | None) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP").lower() != protocol.lower():
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str) and target is not None:
            want = next((cp.get("containerPort") for c in target["spec"].get("containers") or []
                         for cp in c.get("ports") or [] if cp.get("name") == want), None)
        if want is None:
            continue
        if int(want) <= port <= int(p.get("endPort") or want):
            return True
    return False


def allowed_by_policies(store: Store, pod: Obj, direction: str, peer: Endpoint, port: int,
                        protocol: str) -> tuple[bool, str]:
    """Whether ``pod``'s policies allow traffic with ``peer`` in ``direction`` (ingress/egress)."""
    ns = pod["metadata"].get("namespace", "")
    policy_type = "Ingress" if direction == "ingress" else "Egress"
    selecting = []
    for pol in store.list("networking.k8s.io/networkpolicies", ns):
        spec = pol.get("spec") or {}
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
        if policy_type in types and label_selector_matches(spec.get("podSelector") or {}, pod["metadata"].get("labels")):
            selecting.append(pol)
    if not selecting:
        return True, "not selected by any policy"
    target = pod if direction == "ingress" else peer.pod
    for pol in selecting:
        for rule in (pol["spec"].get(direction) or []):
            peers = rule.get("from" if direction == "ingress" else "to")
            if peers and not any(_peer_matches(store, ns, r, peer) for r in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol, target):
                return True, f"allowed by {pol['metadata']['name']}"
    names = ", ".join(p["metadata"]["name"] for p in selecting[:3])
    return False, f"{direction} to {ns}/{pod['metadata']['name']} not allowed by {names}"
