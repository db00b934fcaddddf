"""Cilium's verdict for a flow, evaluated from Cilium objects (the translation plus the Kubernetes
NetworkPolicies Cilium enforces natively), independently of the Calico input.

Written from Cilium's policy documentation (intro, language/layer3/layer4, deny, kubernetes):
- pods Cilium does not manage (``unmanaged``: on nodes still served by Calico) have the reserved
  identity ``unmanaged``: only a rule without peer fields or the entities ``unmanaged``, ``cluster``
  and ``all`` match them as peers (the pod watcher puts them in the ipcache with that identity;
  label selectors, including a clusterwide ``{}``, which Cilium confines to pods, never match);
- identities: the pod's labels minus the identity-irrelevant ones, plus ``io.kubernetes.pod.namespace``,
  ``io.cilium.k8s.namespace.labels.<k>`` and ``io.cilium.k8s.policy.serviceaccount``; an address
  outside the cluster is ``world``, matched by CIDR rules and CIDR groups holding it (CIDR rules
  never match cluster endpoints);
- a CNP's endpointSelector, and every peer selector of it that names no namespace, is confined to
  the policy's namespace; a CCNP's are not;
- per endpoint and direction: denied if any deny rule matches; else allowed if any allow rule
  matches; else denied if a rule selecting it has that direction (default deny, unless
  ``enableDefaultDeny`` says otherwise), else allowed. Ingress is checked at the destination,
  egress at the source; a rule without peer fields matches every peer, one without ``toPorts``
  every port; port ``0`` is every port of the protocol.
A Kubernetes NetworkPolicy is read as Cilium reads it: podSelector → endpointSelector, each peer →
fromEndpoints (namespace injected) / namespace labels / ``ipBlock`` → CIDR, no peers → every peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from migrator.policy.endpoints import Endpoint, Probe
from migrator.policy.identity import NAMESPACE, NAMESPACE_LABELS, SERVICE_ACCOUNT, excluded
from migrator.policy.model import Inventory, Pod, Policy

SOURCES = ("k8s:", "any:", "reserved:")
# The entities that hold a pod Cilium does not manage (reserved identity ``unmanaged``, part of
# ``cluster``); no endpoint selector and no CIDR rule matches it.
UNMANAGED_ENTITIES = frozenset({"unmanaged", "cluster", "all"})


def _strip(key: str) -> str:
    for s in SOURCES:
        if key.startswith(s):
            return key[len(s):]
    return key


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(_strip(k)) != str(v):
            return False
    for e in selector.get("matchExpressions") or ():
        value, op, values = labels.get(_strip(e["key"])), e["operator"], [str(v) for v in e.get("values") or ()]
        if op == "In" and value not in values:
            return False
        if op == "NotIn" and value in values:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def _names_namespace(selector: Mapping[str, Any]) -> bool:
    keys = set(selector.get("matchLabels") or {}) | {e["key"] for e in selector.get("matchExpressions") or ()}
    return any(_strip(k) == NAMESPACE for k in keys)


@dataclass(frozen=True)
class _Rule:
    namespace: str | None           # a CNP's namespace (selectors confined to it), None for a CCNP
    spec: Mapping[str, Any]
    source: str


@lru_cache(maxsize=65536)
def _in(ip: str, cidr: str) -> bool:
    a, n = ipaddress.ip_address(ip), ipaddress.ip_network(cidr, strict=False)
    return a.version == n.version and a in n


def knp_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes NetworkPolicy spec as the Cilium rule it is enforced as."""
    def peer(p: Mapping[str, Any], side: str) -> dict[str, Any]:
        if "ipBlock" in p:
            b = p["ipBlock"]
            return {f"{side}CIDRSet": [{"cidr": b["cidr"], "except": list(b.get("except") or ())}]}
        sel: dict[str, Any] = {"matchLabels": dict((p.get("podSelector") or {}).get("matchLabels") or {}),
                               "matchExpressions": list((p.get("podSelector") or {}).get("matchExpressions") or ())}
        if "namespaceSelector" in p:
            ns = p["namespaceSelector"] or {}
            sel["matchLabels"].update({NAMESPACE_LABELS + k: v for k, v in (ns.get("matchLabels") or {}).items()})
            sel["matchExpressions"] += [{**e, "key": NAMESPACE_LABELS + e["key"]}
                                        for e in ns.get("matchExpressions") or ()]
            sel["matchExpressions"].append({"key": NAMESPACE, "operator": "Exists"})
        return {f"{side}Endpoints": [sel]}

    def ports(items: Any) -> dict[str, Any]:
        if not items:
            return {}
        out = []
        for x in items:
            port = {"port": str(x.get("port", 0)), "protocol": x.get("protocol") or "TCP"}
            if x.get("endPort"):
                port["endPort"] = x["endPort"]
            out.append(port)
        return {"toPorts": [{"ports": out}]}

    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    rule: dict[str, Any] = {"endpointSelector": spec.get("podSelector") or {},
                            "enableDefaultDeny": {"ingress": "Ingress" in types, "egress": "Egress" in types}}
    for direction, key, side in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
        if direction not in types:
            continue
        rule[key] = []
        for item in spec.get(key) or ():
            peers = item.get(side) or []
            for p in peers or [None]:
                rule[key].append({**(peer(p, side) if p is not None else {}), **ports(item.get("ports"))})
    return rule


class CiliumModel:
    def __init__(self, objects: Iterable[Mapping[str, Any]], inv: Inventory,
                 native: Iterable[Policy] = (), managed: Callable[[Pod], bool] | None = None) -> None:
        self.inv = inv
        self.managed = managed   # which pods Cilium manages (None: every pod)
        self.rules: list[_Rule] = []
        self.groups: dict[str, list[str]] = {}
        for obj in objects:
            kind, meta = obj.get("kind"), obj.get("metadata") or {}
            if kind == "CiliumCIDRGroup":
                self.groups[meta["name"]] = list((obj.get("spec") or {}).get("externalCIDRs") or ())
                continue
            if kind not in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
                continue
            ns = meta.get("namespace") if kind == "CiliumNetworkPolicy" else None
            for spec in ([obj["spec"]] if obj.get("spec") else []) + list(obj.get("specs") or ()):
                self.rules.append(_Rule(ns, spec, f"{kind}/{(ns + '/') if ns else ''}{meta.get('name')}"))
        for p in native:
            if p.source is not None and p.namespace:
                self.rules.append(_Rule(p.namespace, knp_spec(p.source), f"NetworkPolicy/{p.namespace}/{p.name}"))
        self._selected: dict[tuple[str, str], list[_Rule]] = {}
        self._identities: dict[str, dict[str, str] | None] = {}
        self._peers: dict[tuple[int, str | None, str], bool] = {}
        self._l4s: dict[tuple[int, Probe, str], bool] = {}

    def identity(self, ep: Endpoint) -> dict[str, str] | None:
        if ep.key not in self._identities:
            self._identities[ep.key] = self._identity(ep)
        return self._identities[ep.key]

    def _identity(self, ep: Endpoint) -> dict[str, str] | None:
        if ep.pod is None:
            return None
        labels = {k: v for k, v in ep.pod.labels.items() if not excluded(k)}
        labels[NAMESPACE] = ep.pod.namespace
        labels.update({NAMESPACE_LABELS + k: v for k, v in self.inv.namespaces.get(ep.pod.namespace, {}).items()})
        labels[SERVICE_ACCOUNT] = ep.pod.service_account
        return labels

    def _subject(self, rule: _Rule, labels: Mapping[str, str]) -> bool:
        if rule.namespace is not None and labels.get(NAMESPACE) != rule.namespace:
            return False
        return selector_matches(rule.spec.get("endpointSelector") or {}, labels)

    def _peer_selector(self, rule: _Rule, selector: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
        if labels is None:
            return False
        if rule.namespace is not None and not _names_namespace(selector) and labels.get(NAMESPACE) != rule.namespace:
            return False
        return selector_matches(selector, labels)

    def _peer(self, rule: _Rule, entry: Mapping[str, Any], side: str, peer: Endpoint) -> bool:
        key = (id(entry), rule.namespace, peer.key)
        if key not in self._peers:
            self._peers[key] = self._peer_matches(rule, entry, side, peer)
        return self._peers[key]

    def _l4_cached(self, entry: Mapping[str, Any], probe: Probe, dst: Endpoint) -> bool:
        key = (id(entry), probe, dst.key)
        if key not in self._l4s:
            self._l4s[key] = self._l4(entry, probe, dst)
        return self._l4s[key]

    def _peer_matches(self, rule: _Rule, entry: Mapping[str, Any], side: str, peer: Endpoint) -> bool:
        labels = self.identity(peer)
        fields = [f for f in ("Endpoints", "CIDR", "CIDRSet", "Entities") if f"{side}{f}" in entry]
        if not fields:
            return True
        if peer.pod is not None and self.managed is not None and not self.managed(peer.pod):
            return bool(set(entry.get(f"{side}Entities") or ()) & UNMANAGED_ENTITIES)
        for sel in entry.get(f"{side}Endpoints") or ():
            if self._peer_selector(rule, sel, labels):
                return True
        if labels is None:
            for cidr in entry.get(f"{side}CIDR") or ():
                if _in(peer.ip, cidr):
                    return True
            for item in entry.get(f"{side}CIDRSet") or ():
                blocks = [item["cidr"]] if "cidr" in item else self.groups.get(item.get("cidrGroupRef", ""), [])
                if any(_in(peer.ip, b) for b in blocks) and not any(_in(peer.ip, x) for x in item.get("except") or ()):
                    return True
        entities = set(entry.get(f"{side}Entities") or ())
        if "all" in entities or (labels is None and "world" in entities) or (
                labels is not None and "cluster" in entities):
            return True
        return False

    @staticmethod
    def _l4(entry: Mapping[str, Any], probe: Probe, dst: Endpoint) -> bool:
        if "toPorts" not in entry and "icmps" not in entry:
            return True
        for icmp in entry.get("icmps") or ():
            for f in icmp.get("fields") or ():
                if (probe.proto == "ICMP" and int(f.get("type", -1)) == probe.port
                        and f.get("family", "IPv4") == "IPv4"):   # the probes are IPv4
                    return True
        for tp in entry.get("toPorts") or ():
            for port in tp.get("ports") or ():
                proto = port.get("protocol") or "ANY"
                if probe.proto == "ICMP" or proto not in ("ANY", probe.proto):
                    continue
                text = str(port.get("port", "0"))
                if text.isdigit():
                    lo = int(text)
                    hi = int(port.get("endPort") or lo)
                    if lo == 0 or lo <= probe.port <= hi:
                        return True
                elif dst.pod is not None and any(n == text and num == probe.port and pr == probe.proto
                                                 for n, num, pr in dst.pod.named_ports):
                    return True
        return False

    def direction_verdict(self, ep: Endpoint, direction: str, peer: Endpoint, dst: Endpoint,
                          probe: Probe) -> tuple[bool, str]:
        labels = self.identity(ep)
        assert labels is not None
        key = (ep.key, direction)
        if key not in self._selected:
            self._selected[key] = [r for r in self.rules if self._subject(r, labels)]
        allow_key, deny_key = ("ingress", "ingressDeny") if direction == "Ingress" else ("egress", "egressDeny")
        side = "from" if direction == "Ingress" else "to"
        default_deny = False
        allowed_by = ""
        for rule in self._selected[key]:
            spec = rule.spec
            explicit = (spec.get("enableDefaultDeny") or {}).get(direction.lower())
            has_section = bool(spec.get(allow_key)) or bool(spec.get(deny_key))
            if explicit is True or (explicit is None and has_section):
                default_deny = True
            for entry in spec.get(deny_key) or ():
                if self._peer(rule, entry, side, peer) and self._l4_cached(entry, probe, dst):
                    return False, f"{rule.source} {deny_key}"
            if not allowed_by:
                for entry in spec.get(allow_key) or ():
                    if self._peer(rule, entry, side, peer) and self._l4_cached(entry, probe, dst):
                        allowed_by = f"{rule.source} {allow_key}"
                        break
        if allowed_by:
            return True, allowed_by
        return (not default_deny), ("default deny" if default_deny else "")

    def verdict(self, src: Endpoint, dst: Endpoint, probe: Probe) -> tuple[bool, list[str]]:
        why = []
        if src.pod is not None:
            ok, by = self.direction_verdict(src, "Egress", dst, dst, probe)
            why += [by] if by else []
            if not ok:
                return False, why
        if dst.pod is not None:
            ok, by = self.direction_verdict(dst, "Ingress", src, dst, probe)
            why += [by] if by else []
            if not ok:
                return False, why
        return True, why
