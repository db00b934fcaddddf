"""Calico's verdict for a flow, evaluated directly from the Calico policies (not from the translation).

Written from Calico's policy documentation (tier.mdx, _rule.mdx, _entityrule.mdx, _selectors.mdx)
and Felix's ordering (``calc/policy_sorter.go``): per endpoint and direction, the tiers that hold a
policy selecting the endpoint, by tier order (none last, ties by name); in each, its selecting
policies by order (none last, ties by name), their rules in order: Allow/Deny final, Pass leaves
the tier, Log continues; no match ends the tier with its default action (Deny unless Pass); an
endpoint no tier selects, or one passed beyond the last tier, is allowed (KDD profiles). A flow is
allowed when the source's egress and the destination's ingress both allow it; addresses outside
the cluster enforce nothing. Workload endpoints carry Calico's special labels
(``projectcalico.org/namespace``, ``/orchestrator``, ``/serviceaccount``); a rule's label selector
also matches network sets holding the address.

doNotTrack and preDNAT policies never apply to a pod: Felix renders them for host endpoints only
(its policy resolver and the raw/mangle chains it programs), so they select no workload here.

A rule peer follows libcalico-go's conversion (``updateprocessors/rules.go``): in a namespaced
policy, as soon as any selector field is used (``notSelector`` included), the peer is limited to
the policy's namespace unless a ``namespaceSelector`` is given; ``notSelector`` itself is matched
in every namespace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache

from migrator.policy import selector as sel
from migrator.policy.endpoints import Endpoint, Probe
from migrator.policy.model import DEFAULT_TIER, EntityRule, Inventory, NetworkSet, Policy, Rule

NOTHING = sel.Not(sel.All())


def _parse(text: str) -> sel.Node:
    """A selector's AST; one that does not parse selects nothing (it is reported by the translation)."""
    try:
        return sel.parse(text)
    except sel.SelectorError:
        return NOTHING


PROTOCOL_NUMBERS = {"TCP": "6", "UDP": "17", "ICMP": "1", "SCTP": "132"}
EPHEMERAL_SOURCE_PORT = 40000


@lru_cache(maxsize=65536)
def _in(ip: str, nets: tuple[str, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    for n in nets:
        net = ipaddress.ip_network(n, strict=False)
        if net.version == addr.version and addr in net:
            return True
    return False


class CalicoModel:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.tier_order = {t.name: t.order for t in inv.tiers}
        self.tier_default = {t.name: t.default_action for t in inv.tiers}
        self._applying: dict[tuple[str, str], list[tuple[str, list[Policy]]]] = {}
        self._peer_cache: dict[tuple[int, str | None, str, bool], bool] = {}

    # -- labels -------------------------------------------------------------------------------
    @staticmethod
    def pod_labels(ep: Endpoint) -> dict[str, str]:
        assert ep.pod is not None
        return {**ep.pod.labels, "projectcalico.org/namespace": ep.pod.namespace,
                "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": ep.pod.service_account}

    def namespace_labels(self, name: str) -> dict[str, str]:
        return {**self.inv.namespaces.get(name, {}), "projectcalico.org/name": name}

    # -- selection ----------------------------------------------------------------------------
    def selects(self, p: Policy, ep: Endpoint) -> bool:
        if ep.pod is None or p.do_not_track or p.pre_dnat:
            return False    # doNotTrack / preDNAT: host endpoints only
        if p.namespace is not None and ep.pod.namespace != p.namespace:
            return False
        if p.namespace_selector and not sel.matches(_parse(p.namespace_selector),
                                                    self.namespace_labels(ep.pod.namespace)):
            return False
        if p.sa_selector and not sel.matches(_parse(p.sa_selector),
                                             {"projectcalico.org/name": ep.pod.service_account}):
            return False
        return sel.matches(_parse(p.selector), self.pod_labels(ep))

    def applying(self, ep: Endpoint, direction: str) -> list[tuple[str, list[Policy]]]:
        key = (ep.key, direction)
        if key not in self._applying:
            tiers: dict[str, list[Policy]] = {}
            for p in self.inv.policies:
                if direction in p.types and self.selects(p, ep):
                    tiers.setdefault(p.tier, []).append(p)

            def tier_sort(name: str) -> tuple[bool, float, str]:
                order = self.tier_order.get(name, 1_000_000.0 if name == DEFAULT_TIER else None)
                return (order is None, order or 0.0, name)

            def policy_sort(p: Policy) -> tuple[bool, float, str]:
                return (p.order is None, p.order or 0.0, f"knp.default.{p.name}" if p.native else p.name)

            self._applying[key] = [(t, sorted(tiers[t], key=policy_sort)) for t in sorted(tiers, key=tier_sort)]
        return self._applying[key]

    # -- matching -----------------------------------------------------------------------------
    def _netsets_holding(self, ip: str) -> list[NetworkSet]:
        return [n for n in self.inv.network_sets if _in(ip, n.nets)]

    def _label_match(self, p: Policy, e: EntityRule, text: str | None, ep: Endpoint) -> bool:
        node = _parse(text or "")
        ns_node = _parse(e.namespace_selector) if e.namespace_selector is not None else None
        if ep.pod is not None:
            if ns_node is not None:
                if not sel.matches(ns_node, self.namespace_labels(ep.pod.namespace)):
                    return False
            elif p.namespace is not None and ep.pod.namespace != p.namespace:
                return False
            if e.sa_names and ep.pod.service_account not in e.sa_names:
                return False
            if e.sa_selector and not sel.matches(_parse(e.sa_selector),
                                                 {"projectcalico.org/name": ep.pod.service_account}):
                return False
            return sel.matches(node, self.pod_labels(ep))
        if e.sa_names or e.sa_selector:
            return False
        for n in self._netsets_holding(ep.ip):
            if ns_node is not None:
                scope = (sel.matches(ns_node, {}, is_global=True, namespaces=True) if n.namespace is None
                         else sel.matches(ns_node, self.namespace_labels(n.namespace)))
            else:
                scope = p.namespace is None or n.namespace == p.namespace
            if scope and sel.matches(node, n.labels, is_global=n.namespace is None):
                return True
        return False

    def entity_matches(self, p: Policy, e: EntityRule, ep: Endpoint, port: int | None, proto: str,
                       *, destination: bool) -> bool:
        key = (id(e), p.namespace, ep.key, destination)
        found = self._peer_cache.get(key)
        if found is None:
            found = self._peer_cache[key] = self._addresses_match(p, e, ep)
        if not found:
            return False
        actual = port if destination else EPHEMERAL_SOURCE_PORT
        if e.ports and not any(self._port_matches(x, actual, proto, ep) for x in e.ports):
            return False
        if e.not_ports and any(self._port_matches(x, actual, proto, ep) for x in e.not_ports):
            return False
        return True

    def _anything_matches(self, text: str, ep: Endpoint) -> bool:
        """Whether ``text`` selects the endpoint or a network set holding its address, in any namespace."""
        node = _parse(text)
        if ep.pod is not None and sel.matches(node, self.pod_labels(ep)):
            return True
        return any(sel.matches(node, n.labels, is_global=n.namespace is None) for n in self._netsets_holding(ep.ip))

    def _addresses_match(self, p: Policy, e: EntityRule, ep: Endpoint) -> bool:
        """The entity's label, namespace, service-account and address tests (ports aside)."""
        if e.selects_by_labels(namespaced=p.namespace is not None) and not self._label_match(p, e, e.selector, ep):
            return False
        if e.not_selector is not None and self._anything_matches(e.not_selector, ep):
            return False
        if e.nets and not _in(ep.ip, e.nets):
            return False
        if e.not_nets and _in(ep.ip, e.not_nets):
            return False
        return not e.services

    @staticmethod
    def _port_matches(x: str, port: int | None, proto: str, ep: Endpoint) -> bool:
        if port is None:
            return False
        if ":" in x:
            lo, hi = (int(v) for v in x.split(":"))
            return lo <= port <= hi
        if x.isdigit():
            return int(x) == port
        return ep.pod is not None and any(n == x and num == port and pr == proto
                                          for n, num, pr in ep.pod.named_ports)

    def rule_matches(self, p: Policy, r: Rule, src: Endpoint, dst: Endpoint, probe: Probe) -> bool:
        proto = probe.proto
        if r.protocol is not None and r.protocol not in (proto, PROTOCOL_NUMBERS.get(proto)):
            return False   # the probes are IPv4: an ICMPv6 rule never matches them
        if r.not_protocol is not None and r.not_protocol in (proto, PROTOCOL_NUMBERS.get(proto)):
            return False
        if r.icmp_type is not None and (proto != "ICMP" or probe.port != r.icmp_type or r.icmp_code not in (None, 0)):
            return False
        port = None if proto == "ICMP" else probe.port
        return (self.entity_matches(p, r.source, src, port, proto, destination=False)
                and self.entity_matches(p, r.destination, dst, port, proto, destination=True))

    # -- verdicts -----------------------------------------------------------------------------
    def direction_verdict(self, ep: Endpoint, direction: str, src: Endpoint, dst: Endpoint,
                          probe: Probe) -> tuple[bool, str]:
        for tier, policies in self.applying(ep, direction):
            passed = False
            for p in policies:
                for i, r in enumerate(p.rules(direction)):
                    if r.action in ("Allow", "Deny", "Pass") and self.rule_matches(p, r, src, dst, probe):
                        if r.action == "Pass":
                            passed = True
                            break
                        return r.action == "Allow", f"{p.ident} {direction.lower()}[{i}]"
                if passed:
                    break
            if not passed and self.tier_default.get(tier, "Deny") != "Pass":
                return False, f"tier {tier}: end of tier ({', '.join(p.ident for p in policies[:3])})"
        return True, ""

    def verdict(self, src: Endpoint, dst: Endpoint, probe: Probe) -> tuple[bool, list[str]]:
        why = []
        if src.pod is not None:
            ok, by = self.direction_verdict(src, "Egress", src, dst, probe)
            why += [by] if by else []
            if not ok:
                return False, why
        if dst.pod is not None:
            ok, by = self.direction_verdict(dst, "Ingress", src, dst, probe)
            why += [by] if by else []
            if not ok:
                return False, why
        return True, why


def verdicts(model: CalicoModel, flows: Mapping[tuple[int, int, int], tuple[Endpoint, Endpoint, Probe]]
             ) -> dict[tuple[int, int, int], tuple[bool, list[str]]]:
    return {k: model.verdict(*v) for k, v in flows.items()}
