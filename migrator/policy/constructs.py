"""Constructs of a Calico policy that Cilium cannot express, or expresses only approximately.

Read from the reference's field-by-field mapping: policy flags (doNotTrack, preDNAT,
applyOnForward), per-rule constructs (Log, source ports, ICMP codes, arbitrary IP protocols,
notProtocol, notICMP, HTTP and service matches, service-account label selectors, selector
operators with no label-selector equivalent, selector keys Cilium leaves out of identities) and
the approximations (CIDRs covering pod addresses, SCTP, ICMP without a type, ipVersion,
notSelector, named ports at egress, host endpoints selected by a global policy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from migrator.policy import selector as sel
from migrator.policy.findings import APPROXIMATE, UNTRANSLATABLE, Finding
from migrator.policy.identity import excluded
from migrator.policy.model import EntityRule, Inventory, Policy, Rule

WELL_KNOWN_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ICMPv6")


def _selector_findings(p: Policy, text: str | None, where: str | None, *, pod_labels: bool) -> Iterator[Finding]:
    if not text:
        return
    try:
        node = sel.parse(text)
    except sel.SelectorError as exc:
        yield Finding(p.ident, UNTRANSLATABLE, "selector-syntax", str(exc), where)
        return
    for op in sorted(sel.ops(node) & {"contains", "starts with", "ends with"}):
        yield Finding(p.ident, UNTRANSLATABLE, f"selector-{op.replace(' ', '-')}",
                      f"selector {text!r} uses {op!r}, which Kubernetes label selectors lack", where)
    if pod_labels:
        for key in sorted(k for k in sel.keys(node) if excluded(k)):
            yield Finding(p.ident, UNTRANSLATABLE, "identity-excluded-label",
                          f"selector key {key!r} is left out of Cilium identities, so it would match nothing",
                          where)


def _entity_findings(p: Policy, e: EntityRule, where: str, pod_ips: list[ipaddress.IPv4Address
                                                                         | ipaddress.IPv6Address],
                     *, peer: bool, egress: bool) -> Iterator[Finding]:
    yield from _selector_findings(p, e.selector, where, pod_labels=True)
    yield from _selector_findings(p, e.not_selector, where, pod_labels=True)
    if e.namespace_selector and e.namespace_selector.strip() != "global()":
        yield from _selector_findings(p, e.namespace_selector, where, pod_labels=False)
    if e.services:
        yield Finding(p.ident, UNTRANSLATABLE, "services", "service matches are not translated", where)
    if e.sa_selector and any(k != "projectcalico.org/name" for k in _keys(e.sa_selector)):
        yield Finding(p.ident, UNTRANSLATABLE, "service-account-labels",
                      "service-account labels are not part of Cilium identities", where)
    if e.selects_by_labels(namespaced=p.namespace is not None) and (e.nets or e.not_nets):
        yield Finding(p.ident, UNTRANSLATABLE, "selector-and-nets",
                      "a peer matched by labels and addresses at once has no Cilium peer", where)
    if e.not_selector and p.namespace is not None and not e.namespace_selector:
        yield Finding(p.ident, APPROXIMATE, "notSelector",
                      f"translated as the endpoints of namespace {p.namespace} without the labels (Calico "
                      "confines a namespaced policy's peer to its namespace); network sets are excluded "
                      "by name, not by address", where)
    elif e.not_selector:
        yield Finding(p.ident, APPROXIMATE, "notSelector",
                      "translated as every endpoint without the labels plus the world; Calico also "
                      "excludes labelled network sets and host endpoints", where)
    for net in (*e.nets, *e.not_nets):
        try:
            block = ipaddress.ip_network(net, strict=False)
        except ValueError:
            yield Finding(p.ident, UNTRANSLATABLE, "bad-cidr", f"{net!r} is not a CIDR", where)
            continue
        if any(ip in block for ip in pod_ips):
            yield Finding(p.ident, APPROXIMATE, "cidr-covers-pods",
                          f"{net} covers pod addresses: Calico matches those pods by address, Cilium's "
                          "CIDR rules do not match in-cluster endpoints", where)
    if egress and peer and any(not _numeric(x) for x in e.ports):
        yield Finding(p.ident, APPROXIMATE, "named-port-egress",
                      "Cilium resolves named ports at egress per destination and ignores conflicting "
                      "definitions (cilium#30003)", where)
    for x in (*e.ports, *e.not_ports):
        if peer and _numeric(x) and ":" in x:
            lo, hi = (int(v) for v in x.split(":"))
            if hi < lo:
                yield Finding(p.ident, UNTRANSLATABLE, "bad-port-range", f"port range {x} is empty", where)


def _keys(text: str) -> set[str]:
    try:
        return sel.keys(sel.parse(text))
    except sel.SelectorError:
        return set()


def _numeric(port: str) -> bool:
    return all(part.isdigit() for part in port.split(":"))


def _rule_findings(p: Policy, r: Rule, where: str, pod_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
                   egress: bool) -> Iterator[Finding]:
    if r.action == "Log":
        yield Finding(p.ident, UNTRANSLATABLE, "Log", "Cilium has no per-rule log action", where)
    elif r.action not in ("Allow", "Deny", "Pass"):
        yield Finding(p.ident, UNTRANSLATABLE, "action", f"unknown action {r.action!r}", where)
    if r.protocol is not None and r.protocol not in WELL_KNOWN_PROTOCOLS:
        yield Finding(p.ident, UNTRANSLATABLE, "ip-protocol",
                      f"protocol {r.protocol}: Cilium pod policies match only TCP, UDP, SCTP and ICMP", where)
    if r.not_protocol is not None:
        yield Finding(p.ident, UNTRANSLATABLE, "notProtocol",
                      "the complement of a protocol includes IP protocols Cilium cannot match", where)
    if r.not_icmp:
        yield Finding(p.ident, UNTRANSLATABLE, "notICMP", "ICMP complements are not translated", where)
    if r.icmp_code is not None:
        yield Finding(p.ident, UNTRANSLATABLE, "icmp-code", "Cilium matches ICMP types, not codes", where)
    if r.http:
        yield Finding(p.ident, UNTRANSLATABLE, "http", "HTTP (L7) matches are not translated", where)
    if r.protocol == "SCTP":
        yield Finding(p.ident, APPROXIMATE, "sctp", "SCTP policy in Cilium is beta (sctp.enabled) and does "
                      "not cover pod-to-service traffic", where)
    if r.protocol in ("ICMP", "ICMPv6") and r.icmp_type is None:
        yield Finding(p.ident, APPROXIMATE, "icmp-any-type",
                      "Cilium needs an ICMP type: emitted for types 0, 3, 8 and 11 (ICMPv6: 1-4, 128, 129) only", where)
    if r.ip_version is not None:
        yield Finding(p.ident, APPROXIMATE, "ipVersion",
                      "selector-only rules carry no IP family in Cilium (exact in single-stack clusters)", where)
    if r.source.ports or r.source.not_ports:
        yield Finding(p.ident, UNTRANSLATABLE, "source-ports",
                      "Cilium matches destination ports only; this rule matches source ports", where)
    local, peer = (r.source, r.destination) if egress else (r.destination, r.source)
    yield from _entity_findings(p, peer, where, pod_ips, peer=True, egress=egress)
    yield from _local_findings(p, local, where)


def _local_findings(p: Policy, e: EntityRule, where: str) -> Iterator[Finding]:
    """The protected endpoint's side of a rule: selectors narrow the subject; no addresses, no source ports."""
    yield from _selector_findings(p, e.selector, where, pod_labels=True)
    if e.nets or e.not_nets or e.not_selector or e.namespace_selector or e.sa_names or e.sa_selector:
        yield Finding(p.ident, UNTRANSLATABLE, "local-entity-match",
                      "a match on the protected endpoint's own addresses, namespace or service account "
                      "has no Cilium rule field", where)


def pod_addresses(inv: Inventory) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for pod in inv.pods:
        if pod.ip:
            try:
                out.append(ipaddress.ip_address(pod.ip))
            except ValueError:
                continue
    return out


def constructs(p: Policy, inv: Inventory,
               pod_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None) -> list[Finding]:
    """Every construct finding of one policy (empty: nothing stands in the way of an exact translation).
    ``pod_ips``: the inventory's pod addresses, when the caller already parsed them."""
    out: list[Finding] = []
    for flag, name in ((p.do_not_track, "doNotTrack"), (p.pre_dnat, "preDNAT")):
        if flag:
            out.append(Finding(p.ident, UNTRANSLATABLE, name,
                               f"Felix applies {name} policies to host endpoints only (never to pods, whose "
                               f"verdicts it leaves alone); Cilium's host firewall has no {name} mode"))
    if p.apply_on_forward and not (p.do_not_track or p.pre_dnat):
        out.append(Finding(p.ident, UNTRANSLATABLE, "applyOnForward", "Cilium has no per-policy applyOnForward mode"))
    out += _selector_findings(p, p.selector, "selector", pod_labels=True)
    if p.namespace_selector:
        out += _selector_findings(p, p.namespace_selector, "namespaceSelector", pod_labels=False)
    if p.sa_selector and any(k != "projectcalico.org/name" for k in _keys(p.sa_selector)):
        out.append(Finding(p.ident, UNTRANSLATABLE, "service-account-labels",
                           "service-account labels are not part of Cilium identities", "serviceAccountSelector"))
    if p.kind == "GlobalNetworkPolicy" and inv.host_endpoints:
        try:
            node = sel.parse(p.selector)
            hit = [h.name for h in inv.host_endpoints if sel.matches(node, h.labels, is_global=True)]
        except sel.SelectorError:
            hit = []
        if hit:
            out.append(Finding(p.ident, APPROXIMATE, "host-endpoints",
                               f"also selects host endpoints ({', '.join(hit[:3])}): Cilium host policies need "
                               "the host firewall and are not emitted"))
    if pod_ips is None:
        pod_ips = pod_addresses(inv)
    for direction in ("Ingress", "Egress"):
        for i, r in enumerate(p.rules(direction)):
            out += _rule_findings(p, r, f"{direction.lower()}[{i}]", pod_ips, direction == "Egress")
    return list(dict.fromkeys(out))
