"""One Calico rule as a predicate over a flow, and Kubernetes NetworkPolicy rules as Calico sees them.

A rule holds when its protocol matches and both its ``source`` and ``destination`` entity rules
match their end of the flow. An entity rule (Calico's EntityRule):

* ``selector`` / ``namespaceSelector`` / ``serviceAccounts``: the address belongs to a selected
  workload endpoint or network set. In a namespaced policy the selection is limited to the
  policy's namespace unless a ``namespaceSelector`` is given, as soon as any selector field is
  used; ``namespaceSelector: global()`` selects the objects outside namespaces (GlobalNetworkSets);
* ``notSelector``: the address belongs to no endpoint or set the selector matches, in any
  namespace (Felix does not scope it);
* ``nets`` / ``notNets``: the address is inside one of / none of the CIDRs (pods and nodes too);
* ``ports`` / ``notPorts``: numbers, ranges ``"80:90"`` and named ports (a container port of the
  pod at that address, of the flow's protocol);
* ``services``: the address is one of the Service's endpoints (its Endpoints object), and as a
  destination without ``ports`` the port is that endpoint's port.

A probe's source port is an ephemeral one, taken here as ``EPHEMERAL_PORT``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from migrator.sim.calico_selector import compile_selector
from migrator.sim.selectors import label_selector_matches

Obj = dict[str, Any]
EPHEMERAL_PORT = 40000
PROTOCOL_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmpv6", "132": "sctp", "136": "udplite"}


@dataclass(frozen=True)
class Candidate:
    """Something Calico's selectors match: a workload endpoint or a network set."""

    labels: Mapping[str, str]
    namespace: str | None      # None: a global object
    service_account: str | None
    pod: Obj | None            # the pod, for a workload endpoint


@dataclass(frozen=True)
class Address:
    """One end of a flow: its IP, what selectors see there, and the pod holding it (if any)."""

    ip: str
    candidates: tuple[Candidate, ...]
    pod: Obj | None


RuleMatch = Callable[[Address, Address, int, str], bool]     # (source, destination, dst port, protocol)


class Labels(Protocol):
    def namespace_labels(self, ns: str) -> dict[str, str]: ...
    def sa_labels(self, ns: str, sa: str) -> dict[str, str]: ...
    def service_endpoints(self, ns: str, name: str) -> set[tuple[str, int]]: ...


def _protocol(value: Any) -> str:
    text = str(value).lower()
    return PROTOCOL_NUMBERS.get(text, text)


def _named_port(pod: Obj | None, name: str, protocol: str) -> int | None:
    for c in ((pod or {}).get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name and str(p.get("protocol") or "TCP").lower() == protocol:
                return int(p["containerPort"])
    return None


def port_matches(spec: Any, port: int, protocol: str, pod: Obj | None) -> bool:
    """One entry of ``ports``: a number, ``"a:b"``, or a named port of ``pod``."""
    text = str(spec)
    if text.isdigit():
        return int(text) == port
    if ":" in text:
        low, high = text.split(":", 1)
        return int(low) <= port <= int(high)
    return _named_port(pod, text, protocol) == port


def compile_entity(er: Obj, policy_ns: str | None, ctx: Labels, side: str) -> Callable[[Address, int, str], bool]:
    """The predicate of one EntityRule (``side``: source or destination) over (address, port at that
    end, protocol)."""
    sel_text, ns_text, not_text = er.get("selector"), er.get("namespaceSelector"), er.get("notSelector")
    sa = er.get("serviceAccounts") or {}
    selector = compile_selector(sel_text) if sel_text else None
    ns_selector = compile_selector(ns_text, "namespace") if ns_text else None
    not_selector = compile_selector(not_text) if not_text else None
    sa_names = set(sa.get("names") or [])
    sa_selector = compile_selector(sa["selector"]) if sa.get("selector") else None
    positive = bool(sel_text or sa) or bool((ns_text or policy_ns) and (not_text or ns_text))
    nets = [ipaddress.ip_network(n, strict=False) for n in er.get("nets") or []]
    not_nets = [ipaddress.ip_network(n, strict=False) for n in er.get("notNets") or []]
    ports, not_ports = er.get("ports") or [], er.get("notPorts") or []
    service = er.get("services") or {}
    service_ns = service.get("namespace") or policy_ns or ""

    def selected(c: Candidate) -> bool:
        if ns_selector is not None:
            labels = ctx.namespace_labels(c.namespace) if c.namespace else {}
            if not ns_selector(labels, c.namespace is not None):
                return False
        elif policy_ns is not None and c.namespace != policy_ns:
            return False
        if selector is not None and not selector(c.labels, c.namespace is not None):
            return False
        if sa:
            if c.pod is None or c.namespace is None:
                return False
            if sa_names and c.service_account not in sa_names:
                return False
            if sa_selector is not None and not sa_selector(ctx.sa_labels(c.namespace, c.service_account or ""), True):
                return False
        return True

    def match(addr: Address, port: int, protocol: str) -> bool:
        if service:
            endpoints = ctx.service_endpoints(service_ns, service.get("name") or "")
            if side == "destination" and not ports and (addr.ip, port) not in endpoints:
                return False
            if not any(ip == addr.ip for ip, _ in endpoints):
                return False
        if positive and not any(selected(c) for c in addr.candidates):
            return False
        if not_selector is not None and any(not_selector(c.labels, c.namespace is not None)
                                            for c in addr.candidates):
            return False
        if nets or not_nets:
            ip = ipaddress.ip_address(addr.ip)
            if nets and not any(ip in n for n in nets):
                return False
            if any(ip in n for n in not_nets):
                return False
        if ports and not any(port_matches(p, port, protocol, addr.pod) for p in ports):
            return False
        return not any(port_matches(p, port, protocol, addr.pod) for p in not_ports)

    return match


def compile_rule(rule: Obj, policy_ns: str | None, ctx: Labels) -> RuleMatch:
    """The predicate of one Calico rule."""
    proto = _protocol(rule["protocol"]) if rule.get("protocol") is not None else None
    not_proto = _protocol(rule["notProtocol"]) if rule.get("notProtocol") is not None else None
    ipv6_only = rule.get("ipVersion") == 6
    source = compile_entity(rule.get("source") or {}, policy_ns, ctx, "source")
    destination = compile_entity(rule.get("destination") or {}, policy_ns, ctx, "destination")

    def match(src: Address, dst: Address, port: int, protocol: str) -> bool:
        if ipv6_only or (proto is not None and proto != protocol) or (not_proto is not None and not_proto == protocol):
            return False
        return source(src, EPHEMERAL_PORT, protocol) and destination(dst, port, protocol)

    return match


def compile_knp_rule(rule: Obj, direction: str, ns: str, ctx: Labels) -> RuleMatch:
    """A Kubernetes NetworkPolicy rule as Calico converts it: Allow when some peer (none listed:
    any) and some port (none listed: any) match. podSelector peers are pods only (not network
    sets), in the policy's namespace unless a namespaceSelector is given; ipBlock is nets/notNets."""
    peers = rule.get("from" if direction == "ingress" else "to") or []
    ports = rule.get("ports") or []

    def peer_ok(p: Obj, addr: Address) -> bool:
        block = p.get("ipBlock")
        if block:
            ip = ipaddress.ip_address(addr.ip)
            return ip in ipaddress.ip_network(block["cidr"], strict=False) and \
                not any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
        for c in addr.candidates:
            if c.pod is None or c.namespace is None:
                continue
            if "namespaceSelector" in p:
                if not label_selector_matches(p["namespaceSelector"] or {}, ctx.namespace_labels(c.namespace)):
                    continue
            elif c.namespace != ns:
                continue
            if label_selector_matches(p.get("podSelector") or {}, c.pod["metadata"].get("labels")):
                return True
        return False

    def port_ok(p: Obj, port: int, protocol: str, pod: Obj | None) -> bool:
        if str(p.get("protocol") or "TCP").lower() != protocol:
            return False
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str) and not want.isdigit():
            return _named_port(pod, want, protocol) == port
        return int(want) <= port <= int(p.get("endPort") or want)

    def match(src: Address, dst: Address, port: int, protocol: str) -> bool:
        peer = src if direction == "ingress" else dst
        if peers and not any(peer_ok(p, peer) for p in peers):
            return False
        return not ports or any(port_ok(p, port, protocol, dst.pod) for p in ports)

    return match
