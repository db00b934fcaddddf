"""Cilium policy enforcement on Cilium-managed pods: CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
and Kubernetes NetworkPolicy, as the agent applies them.

Written from Cilium's policy documentation (intro, layer3, layer4, deny, kubernetes); nothing is
shared with the tool's translator. The model, per endpoint and direction:

* a rule (a CNP/CCNP ``spec`` or ``specs`` entry) selects the endpoint by ``endpointSelector``
  (a CNP only in its own namespace; ``nodeSelector`` rules are host policies, not modelled);
  a Kubernetes NetworkPolicy selects by ``podSelector`` in its namespace;
* the verdict: DENY when any ``ingressDeny``/``egressDeny`` rule matches (deny wins over every
  allow, whatever kind carries it); else ALLOW when any allow rule matches; else the local host is
  let in (``allow-localhost``); else DENY when the endpoint is in default-deny for the direction —
  a selecting rule has a non-empty section for it (and no ``enableDefaultDeny: false``), a
  selecting Kubernetes NetworkPolicy has the policy type, or ``enable-policy`` is ``always`` —
  else ALLOW;
* peers: ``fromEndpoints``/``toEndpoints`` match label identities (a CNP injects its namespace
  unless the selector names ``io.kubernetes.pod.namespace``; a CCNP's empty selector means every
  pod of the cluster); ``fromEntities``/``toEntities``; ``fromCIDR``/``fromCIDRSet``/``toCIDR``/
  ``toCIDRSet`` (``except``, ``cidrGroupRef`` and ``cidrGroupSelector`` to CiliumCIDRGroups) match
  ``world`` only, and node addresses too under ``policy-cidr-match-mode: nodes``; a rule without
  any peer field matches every peer, a present but empty list none;
* ports: ``toPorts[].ports[]`` with ``port`` (a number, ``"0"`` for any, or a named port of the
  destination pod), ``endPort`` and ``protocol`` (``ANY`` by default); no ``toPorts``: any port;
  ``icmps`` only match ICMP, which probes do not send; L7 rules are not modelled (the port decides).
* Kubernetes NetworkPolicy peers are matched the same way: podSelector and namespaceSelector
  against label identities, ipBlock as a CIDR rule (so never a pod or, by default, a node).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.sim.cilium_identity import (
    CLUSTER,
    NAMESPACE,
    NS_LABELS,
    Identity,
    has_key,
    pod_identity,
    selector_matches,
)
from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Event, Store

Obj = dict[str, Any]
CNP, CCNP, CCG = "cilium.io/ciliumnetworkpolicies", "cilium.io/ciliumclusterwidenetworkpolicies", "cilium.io/ciliumcidrgroups"
KNP = "networking.k8s.io/networkpolicies"
WATCHED = frozenset({CNP, CCNP, CCG, KNP, "namespaces"})
Peer = Callable[[Identity, int, str, Obj | None, bool], bool]     # identity, port, protocol, dst pod, cidr-nodes?


@dataclass(frozen=True)
class Rule:
    """The part of one policy that speaks for one endpoint selection."""

    name: str                                   # what a reason names
    selects: Callable[[Identity], bool]
    allow: dict[str, tuple[Peer, ...]]          # direction -> peer rules
    deny: dict[str, tuple[Peer, ...]]
    default_deny: dict[str, bool]


def _ports_match(to_ports: list[Obj] | None, port: int, protocol: str, dst_pod: Obj | None,
                 icmp_only: bool) -> bool:
    if to_ports is None:
        return not icmp_only
    for entry in to_ports:
        ports = entry.get("ports") or []
        if not ports:
            return True
        for p in ports:
            proto = str(p.get("protocol") or "ANY").lower()
            if proto not in ("any", protocol):
                continue
            text = str(p.get("port") or "0")
            if text.isdigit():
                low = int(text)
                if low == 0 or low <= port <= int(p.get("endPort") or low):
                    return True
                continue
            named = [int(cp["containerPort"]) for c in ((dst_pod or {}).get("spec") or {}).get("containers") or []
                     for cp in c.get("ports") or [] if cp.get("name") == text
                     and str(cp.get("protocol") or "TCP").lower() == protocol]
            if port in named:
                return True
    return False


class CiliumPolicies:
    """The agent's verdicts over one store, compiled once per change of the policy kinds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rules: list[Rule] | None = None
        self._groups: dict[str, tuple[Mapping[str, str], list[Any]]] = {}
        self._selecting: dict[tuple[tuple[str, str], ...], list[Rule]] = {}
        self._generation = 0
        store.subscribe(self._changed)

    def _changed(self, event: Event) -> None:   # under the store lock: only drop caches
        if event.resource in WATCHED:
            self._generation += 1
            self._rules = None
            self._selecting = {}

    def namespace_labels(self, ns: str) -> dict[str, str]:
        obj = self.store.try_get("namespaces", None, ns) or {}
        return dict((obj.get("metadata") or {}).get("labels") or {})

    def identity(self, pod: Obj, extra: str = "") -> Identity:
        return pod_identity(pod, self.namespace_labels(pod["metadata"].get("namespace", "")), extra)

    # ------------------------------------------------------------------ compile
    def rules(self) -> list[Rule]:
        rules = self._rules
        if rules is not None:
            return rules
        generation = self._generation
        with self.store.lock:
            self._groups = {g["metadata"]["name"]: (g["metadata"].get("labels") or {},
                                                    [ipaddress.ip_network(c, strict=False) for c in
                                                     (g.get("spec") or {}).get("externalCIDRs") or []])
                            for g in self.store.list(CCG)}
            rules = []
            for resource, kind in ((CNP, "CiliumNetworkPolicy"), (CCNP, "CiliumClusterwideNetworkPolicy")):
                for obj in self.store.list(resource):
                    ns = obj["metadata"].get("namespace") if resource == CNP else None
                    name = f"{kind} {ns + '/' if ns else ''}{obj['metadata']['name']}"
                    specs = ([obj["spec"]] if obj.get("spec") else []) + list(obj.get("specs") or [])
                    rules += [r for i, spec in enumerate(specs) if (r := self._rule(spec, ns, name, i)) is not None]
            rules += [self._knp(obj) for obj in self.store.list(KNP)]
        if generation == self._generation:   # nothing changed while compiling
            self._rules = rules
        return rules

    def _rule(self, spec: Obj, ns: str | None, name: str, index: int) -> Rule | None:
        selector = spec.get("endpointSelector")
        if selector is None:
            return None          # a host policy (nodeSelector)

        def selects(ident: Identity) -> bool:
            return (ns is None or ident.labels.get(NAMESPACE) == ns) and selector_matches(selector, ident)

        defaults = spec.get("enableDefaultDeny") or {}
        allow = {d: tuple(self._peer(r, d, ns) for r in spec.get(d) or []) for d in ("ingress", "egress")}
        deny = {d: tuple(self._peer(r, d, ns) for r in spec.get(f"{d}Deny") or []) for d in ("ingress", "egress")}
        default_deny = {d: bool(spec.get(d) or spec.get(f"{d}Deny")) and defaults.get(d, True) is not False
                        for d in ("ingress", "egress")}
        return Rule(f"{name}{f' (specs[{index}])' if index else ''}", selects, allow, deny, default_deny)

    def _peer(self, rule: Obj, direction: str, ns: str | None) -> Peer:
        side = "from" if direction == "ingress" else "to"
        fields = ("Endpoints", "Entities", "CIDR", "CIDRSet", "Nodes", "Groups", "Services", "FQDNs")
        wildcard = not any(f"{side}{f}" in rule for f in fields)
        selectors = []
        for sel in rule.get(f"{side}Endpoints") or []:
            sel = dict(sel)
            if ns is not None and not has_key(sel, NAMESPACE):
                sel["matchLabels"] = {**(sel.get("matchLabels") or {}), f"k8s:{NAMESPACE}": ns}
            elif ns is None and not sel.get("matchLabels") and not sel.get("matchExpressions"):
                sel["matchLabels"] = {f"k8s:{CLUSTER}": "default"}
            selectors.append(sel)
        entities = list(rule.get(f"{side}Entities") or [])
        cidrs: list[tuple[Any, list[str]]] = [(ipaddress.ip_network(c, strict=False), [])
                                              for c in rule.get(f"{side}CIDR") or []]
        cidr_sets = list(rule.get(f"{side}CIDRSet") or [])
        to_ports, icmp_only = rule.get("toPorts"), bool(rule.get("icmps"))

        def in_cidrs(ip: str) -> bool:
            addr = ipaddress.ip_address(ip)
            nets = list(cidrs)
            for entry in cidr_sets:
                if entry.get("cidr"):
                    nets.append((ipaddress.ip_network(entry["cidr"], strict=False), entry.get("except") or []))
                ref, gsel = entry.get("cidrGroupRef"), entry.get("cidrGroupSelector")
                for gname, (labels, gnets) in self._groups.items():
                    if gname == ref or (gsel is not None and label_selector_matches(gsel, dict(labels))):
                        nets += [(n, entry.get("except") or []) for n in gnets]
            return any(addr in n and not any(addr in ipaddress.ip_network(e, strict=False) for e in exc)
                       for n, exc in nets)

        def match(ident: Identity, port: int, protocol: str, dst_pod: Obj | None, cidr_nodes: bool) -> bool:
            if not _ports_match(to_ports, port, protocol, dst_pod, icmp_only):
                return False
            if wildcard:
                return True
            if any(selector_matches(s, ident) for s in selectors) or any(ident.entity(e) for e in entities):
                return True
            cidr_visible = ident.is_world or (cidr_nodes and bool(ident.kinds & {"host", "remote-node"}))
            return cidr_visible and bool(cidrs or cidr_sets) and in_cidrs(ident.ip)

        return match

    def _knp(self, obj: Obj) -> Rule:
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        ns = meta.get("namespace", "")
        pod_selector = spec.get("podSelector") or {}
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])

        def selects(ident: Identity) -> bool:
            return ident.labels.get(NAMESPACE) == ns and ident.pod is not None and \
                label_selector_matches(pod_selector, dict(ident.labels))

        allow = {d: tuple(self._knp_peer(r, d, ns) for r in spec.get(d) or []) for d in ("ingress", "egress")}
        default_deny = {"ingress": "Ingress" in types, "egress": "Egress" in types}
        return Rule(f"NetworkPolicy {ns}/{meta['name']}", selects, allow, {"ingress": (), "egress": ()},
                    default_deny)

    def _knp_peer(self, rule: Obj, direction: str, ns: str) -> Peer:
        peers = rule.get("from" if direction == "ingress" else "to") or []
        ports = rule.get("ports") or []

        def peer_ok(p: Obj, ident: Identity, cidr_nodes: bool) -> bool:
            block = p.get("ipBlock")
            if block:
                if not (ident.is_world or (cidr_nodes and bool(ident.kinds & {"host", "remote-node"}))):
                    return False
                ip = ipaddress.ip_address(ident.ip)
                return ip in ipaddress.ip_network(block["cidr"], strict=False) and \
                    not any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
            if "cluster-pod" not in ident.kinds:
                return False
            if "namespaceSelector" in p:
                ns_labels = {k[len(NS_LABELS):]: v for k, v in ident.labels.items() if k.startswith(NS_LABELS)}
                if not label_selector_matches(p["namespaceSelector"] or {}, ns_labels):
                    return False
            elif ident.labels.get(NAMESPACE) != ns:
                return False
            return label_selector_matches(p.get("podSelector") or {}, dict(ident.labels))

        def port_ok(p: Obj, port: int, protocol: str, dst_pod: Obj | None) -> bool:
            return _ports_match([{"ports": [{"port": str(p["port"]) if p.get("port") is not None else "0",
                                             "endPort": p.get("endPort"), "protocol": p.get("protocol") or "TCP"}]}],
                                port, protocol, dst_pod, False)

        def match(ident: Identity, port: int, protocol: str, dst_pod: Obj | None, cidr_nodes: bool) -> bool:
            if peers and not any(peer_ok(p, ident, cidr_nodes) for p in peers):
                return False
            return not ports or any(port_ok(p, port, protocol, dst_pod) for p in ports)

        return match

    # ------------------------------------------------------------------ verdict
    def verdict(self, local: Identity, direction: str, peer: Identity, port: int, protocol: str, *,
                mode: str = "default", cidr_nodes: bool = False) -> tuple[bool, str]:
        """Whether the agent lets the flow through ``local``'s ``direction``, and why."""
        dst_pod = local.pod if direction == "ingress" else peer.pod
        key, cache = tuple(sorted(local.labels.items())), self._selecting   # a change replaces the cache
        selecting = cache.get(key)
        if selecting is None:
            selecting = cache[key] = [r for r in self.rules() if r.selects(local)]
        pod = local.pod or {"metadata": {}}
        who = f"{direction} of {pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
        for r in selecting:
            for i, m in enumerate(r.deny[direction]):
                if m(peer, port, protocol, dst_pod, cidr_nodes):
                    return False, f"{who} denied by {r.name} {direction}Deny[{i}]"
        for r in selecting:
            for i, m in enumerate(r.allow[direction]):
                if m(peer, port, protocol, dst_pod, cidr_nodes):
                    return True, f"allowed by {r.name} {direction}[{i}]"
        if direction == "ingress" and "host" in peer.kinds:
            return True, "the local host is always allowed"
        enforcing = [r.name for r in selecting if r.default_deny[direction]]
        if enforcing:
            return False, f"{who} not allowed by {', '.join(enforcing[:3])}"
        if mode == "always":
            return False, f"{who} not allowed: enable-policy is always and no rule allows it"
        return True, "no Cilium policy selects it"

