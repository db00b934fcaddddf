"""The finite model the equivalence check evaluates: endpoint groups, external addresses, L4 probes.

Pods are grouped by what any policy can tell apart: namespace, the values of the label keys the
policies reference (pod and namespace labels), service account, named ports and which referenced
CIDRs hold the pod's address. One representative per group stands for all its pods, so the
check's cost grows with the number of groups, not pods. External endpoints are the boundary
addresses of every referenced CIDR (first and last address, and the addresses just outside).
Probes are the referenced (protocol, port) pairs plus one port no rule names, per protocol.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from migrator.policy import selector as sel
from migrator.policy.model import EntityRule, Inventory, Pod


@dataclass(frozen=True)
class Endpoint:
    key: str                 # what the difference table shows
    ip: str
    pod: Pod | None = None   # None: an address outside the cluster
    members: int = 1         # pods the group stands for


@dataclass(frozen=True)
class Probe:
    proto: str               # TCP | UDP | SCTP | ICMP
    port: int                # the ICMP type for ICMP

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}" if self.proto != "ICMP" else f"icmp-type-{self.port}"


def _entities(inv: Inventory) -> list[EntityRule]:
    return [e for p in inv.policies for d in ("Ingress", "Egress") for r in p.rules(d)
            for e in (r.source, r.destination)]


def referenced_keys(inv: Inventory) -> tuple[set[str], set[str]]:
    """(pod label keys, namespace label keys) any selector reads."""
    pod_keys: set[str] = set()
    ns_keys: set[str] = {"projectcalico.org/name"}
    for p in inv.policies:
        texts = [p.selector] + [t for e in _entities_of(p) for t in (e.selector, e.not_selector)]
        ns_texts = [p.namespace_selector] + [e.namespace_selector for e in _entities_of(p)]
        for t in texts:
            if t:
                pod_keys |= _keys(t)
        for t in ns_texts:
            if t:
                ns_keys |= _keys(t)
    return pod_keys, ns_keys


def _entities_of(p: object) -> list[EntityRule]:
    return [e for d in ("Ingress", "Egress") for r in p.rules(d) for e in (r.source, r.destination)]  # type: ignore[attr-defined]


def _keys(text: str) -> set[str]:
    try:
        return sel.keys(sel.parse(text))
    except sel.SelectorError:
        return set()


def cidrs(inv: Inventory) -> list[str]:
    out = {c for e in _entities(inv) for c in (*e.nets, *e.not_nets)}
    out |= {c for n in inv.network_sets for c in n.nets}
    return sorted(out)


def boundary_addresses(blocks: list[str]) -> list[str]:
    out: set[str] = set()
    for text in blocks:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for value in (first, last, first - 1, last + 1):
            if 0 <= value <= top:
                out.add(str(ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value)))
    return sorted(out, key=lambda a: (":" in a, ipaddress.ip_address(a)))


class Grouping:
    """What tells pods apart for the policies of ``inv``: ``key(pod)`` is equal for two pods exactly
    when no policy can tell them apart (``None`` for a pod without an address)."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.pod_keys, self.ns_keys = referenced_keys(inv)
        self.blocks = [ipaddress.ip_network(c, strict=False) for c in cidrs(inv)]

    def key(self, pod: Pod) -> tuple | None:
        if not pod.ip:
            return None
        ip = ipaddress.ip_address(pod.ip)
        ns_labels = self.inv.namespaces.get(pod.namespace, {})
        return (pod.namespace,
                tuple(sorted((k, v) for k, v in pod.labels.items() if k in self.pod_keys)),
                tuple(sorted((k, v) for k, v in ns_labels.items() if k in self.ns_keys)),
                pod.service_account, pod.named_ports,
                tuple(i for i, b in enumerate(self.blocks) if ip.version == b.version and ip in b))


def pod_groups(inv: Inventory, split: Callable[[Pod], str] | None = None) -> dict[tuple, Endpoint]:
    """The pod groups by their key (``Grouping.key`` plus ``split``'s value): one representative each.

    ``split`` refines the groups by something the policies do not read (e.g. which network plugin
    serves the pod); its value ends the key and is shown in brackets when not empty.
    """
    grouping = Grouping(inv)
    groups: dict[tuple, list[Pod]] = {}
    for pod in inv.pods:
        key = grouping.key(pod)
        if key is None:
            continue
        groups.setdefault((*key, split(pod) if split else ""), []).append(pod)
    out = {}
    seen: dict[str, int] = {}
    for key, pods in groups.items():
        rep = pods[0]
        shown = f"{rep.namespace}/" + (",".join(f"{k}={v}" for k, v in key[1]) or "*") + (
            f" [{key[-1]}]" if key[-1] else "")
        seen[shown] = seen.get(shown, 0) + 1   # groups the labels alone do not tell apart (SA, ports, CIDRs)
        shown += f" #{seen[shown]}" if seen[shown] > 1 else ""
        out[key] = Endpoint(key=shown + (f" ({len(pods)} pods)" if len(pods) > 1 else ""),
                            ip=rep.ip or "", pod=rep, members=len(pods))
    return out


def endpoint_groups(inv: Inventory, split: Callable[[Pod], str] | None = None) -> list[Endpoint]:
    """One representative per group of pods no policy can tell apart, then the external addresses."""
    out = list(pod_groups(inv, split).values())
    out.sort(key=lambda e: e.key)
    out += [Endpoint(key=a, ip=a) for a in boundary_addresses(cidrs(inv))]
    return out


def probes(inv: Inventory) -> list[Probe]:
    """Every referenced (protocol, port), named ports resolved against the pods, plus one unnamed port."""
    named = {(name, proto): port for pod in inv.pods for name, port, proto in pod.named_ports}
    out: set[Probe] = set()
    for p in inv.policies:
        for d in ("Ingress", "Egress"):
            for r in p.rules(d):
                protos = [r.protocol] if r.protocol in ("TCP", "UDP", "SCTP") else (
                    ["TCP", "UDP"] if r.protocol is None else [])
                if r.protocol in ("ICMP", "ICMPv6"):
                    out.add(Probe("ICMP", r.icmp_type if r.icmp_type is not None else 8))
                for proto in protos:
                    for x in (*r.destination.ports, *r.destination.not_ports):
                        for port in _ports(x, proto, named):
                            out.add(Probe(proto, port))
    for proto in ("TCP", "UDP"):
        out.add(Probe(proto, 65432))
    out.add(Probe("ICMP", 8))
    return sorted(out, key=lambda q: (q.proto, q.port))


def _ports(x: str, proto: str, named: dict[tuple[str, str], int]) -> list[int]:
    if ":" in x:
        lo, hi = (int(v) for v in x.split(":"))
        return sorted({lo, hi, lo - 1, hi + 1} - {0, 65536})
    if x.isdigit():
        return [int(x)]
    return [named[(x, proto)]] if (x, proto) in named else []
