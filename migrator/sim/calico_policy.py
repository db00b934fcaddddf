"""Calico policy enforcement on Calico-networked pods, as Felix applies it.

Written from Calico's NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet and
IPPool references and its Kubernetes datastore conversion; it shares nothing with the tool's
translator, so that a mistranslation shows up as a different verdict.

The evaluation model, per endpoint and direction:

* tiers in ``order`` (none: last; ties by name); the ``default`` tier, when no Tier object says
  otherwise, has order 1,000,000. A tier counts for an endpoint only when one of its policies
  applies to it in that direction (``types``; when absent: Ingress, plus Egress when there are
  egress rules, Egress alone when there are only egress rules);
* within a tier, policies by ``order`` (none: last), ties by name; within a policy, rules in order.
  ``Allow`` and ``Deny`` are final, ``Log`` goes on, ``Pass`` skips to the next tier; a tier that
  applies but decides nothing ends in its ``defaultAction`` (Deny unless Pass). Past the last
  tier the namespace's profile allows, so an endpoint no policy applies to is allowed;
* Kubernetes NetworkPolicies are policies of the default tier at order 1000 (``knp.default.NAME``),
  their peers and ports rules that Allow;
* doNotTrack and preDNAT policies apply to host endpoints only, so never to a pod; host endpoints
  are not modelled. A policy whose selector does not parse is ignored (Calico's validation refuses it).

Rule matching: ``protocol``/``notProtocol`` (names or numbers), ``ipVersion``, source and
destination entity rules (``calico_rules``). ICMP fields only narrow ICMP, which probes do not
send; HTTP matches (application layer policy) are not modelled.

``nat_outgoing`` is the other half of Calico's say over a flow: Felix masquerades a packet from
a pool with ``natOutgoing`` to an address outside every pool (disabled pools count as pools).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrator.sim.calico_rules import Address, Candidate, RuleMatch, compile_knp_rule, compile_rule
from migrator.sim.calico_selector import SelectorSyntaxError, compile_selector
from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Event, Store

Obj = dict[str, Any]
CALICO = "crd.projectcalico.org"
WATCHED = frozenset({f"{CALICO}/networkpolicies", f"{CALICO}/globalnetworkpolicies", f"{CALICO}/networksets",
                     f"{CALICO}/globalnetworksets", f"{CALICO}/tiers", f"{CALICO}/ippools",
                     "networking.k8s.io/networkpolicies", "namespaces", "serviceaccounts"})
DEFAULT_TIER_ORDER = 1_000_000.0
KNP_ORDER = 1000.0


@dataclass(frozen=True)
class Rule:
    action: str          # Allow | Deny | Pass | Log
    index: int
    match: RuleMatch


@dataclass(frozen=True)
class Policy:
    tier: str
    order: float
    name: str            # Calico's sort key and what a reason names
    kind: str
    applies: Callable[[Candidate], bool]
    ingress: tuple[Rule, ...] | None     # None: does not apply to ingress
    egress: tuple[Rule, ...] | None


@dataclass(frozen=True)
class NetSet:
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    candidate: Candidate


def _order(value: Any) -> float:
    return math.inf if value is None else float(value)


def _types(spec: Obj) -> tuple[bool, bool]:
    types = spec.get("types")
    if types:
        return "Ingress" in types, "Egress" in types
    if spec.get("egress"):
        return bool(spec.get("ingress")), True
    return True, False


class CalicoPolicies:
    """Felix's verdicts over one store, compiled once per change of the policy kinds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._compiled: tuple[list[tuple[float, str, str, list[Policy]]], list[NetSet], list[Obj]] | None = None
        self._applicable: dict[tuple[Any, ...], list[tuple[str, str, list[Policy]]]] = {}
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._generation = 0
        store.subscribe(self._changed)

    def _changed(self, event: Event) -> None:   # under the store lock: only drop caches
        if event.resource in WATCHED:
            self._generation += 1
            self._compiled = None
            self._applicable = {}
            self._ns_labels = {}

    # ------------------------------------------------------------------ the inventory
    def namespace_labels(self, ns: str) -> dict[str, str]:
        found = self._ns_labels.get(ns)
        if found is None:
            obj = self.store.try_get("namespaces", None, ns) or {}
            found = {**((obj.get("metadata") or {}).get("labels") or {}), "projectcalico.org/name": ns}
            self._ns_labels[ns] = found
        return found

    def sa_labels(self, ns: str, sa: str) -> dict[str, str]:
        obj = self.store.try_get("serviceaccounts", ns, sa) or {}
        return {**((obj.get("metadata") or {}).get("labels") or {}), "projectcalico.org/name": sa}

    def service_endpoints(self, ns: str, name: str) -> set[tuple[str, int]]:
        obj = self.store.try_get("endpoints", ns, name) or {}
        return {(a["ip"], int(p["port"])) for subset in obj.get("subsets") or []
                for a in subset.get("addresses") or [] for p in subset.get("ports") or [{"port": 0}]}

    def _compile(self) -> tuple[list[tuple[float, str, str, list[Policy]]], list[NetSet], list[Obj]]:
        compiled = self._compiled
        if compiled is not None:
            return compiled
        generation = self._generation
        with self.store.lock:
            tiers: dict[str, tuple[float, str]] = {"default": (DEFAULT_TIER_ORDER, "Deny")}
            for t in self.store.list(f"{CALICO}/tiers"):
                spec = t.get("spec") or {}
                tiers[t["metadata"]["name"]] = (_order(spec.get("order")), spec.get("defaultAction") or "Deny")
            policies = [self._calico(p, namespaced=True) for p in self.store.list(f"{CALICO}/networkpolicies")]
            policies += [self._calico(p, namespaced=False) for p in self.store.list(f"{CALICO}/globalnetworkpolicies")]
            policies += [self._knp(p) for p in self.store.list("networking.k8s.io/networkpolicies")]
            sets = [self._netset(s, namespaced=True) for s in self.store.list(f"{CALICO}/networksets")]
            sets += [self._netset(s, namespaced=False) for s in self.store.list(f"{CALICO}/globalnetworksets")]
            pools = list(self.store.list(f"{CALICO}/ippools"))
        by_tier: dict[str, list[Policy]] = {}
        for pol in policies:
            if pol is not None:
                by_tier.setdefault(pol.tier, []).append(pol)
        ordered = []
        for name, pols in by_tier.items():
            order, action = tiers.get(name, (math.inf, "Deny"))
            pols.sort(key=lambda p: (p.order, p.name))
            ordered.append((order, name, action, pols))
        ordered.sort(key=lambda t: (t[0], t[1]))
        compiled = (ordered, sets, pools)
        if generation == self._generation:   # nothing changed while compiling
            self._compiled = compiled
        return compiled

    def _calico(self, obj: Obj, *, namespaced: bool) -> Policy | None:
        try:
            return self._calico_policy(obj, namespaced=namespaced)
        except SelectorSyntaxError:
            return None     # Calico's validation refuses it: it never reaches Felix

    def _calico_policy(self, obj: Obj, *, namespaced: bool) -> Policy | None:
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        if spec.get("doNotTrack") or spec.get("preDNAT"):
            return None     # host endpoints only
        ns = meta.get("namespace") if namespaced else None
        selector = compile_selector(spec.get("selector"))
        ns_selector = compile_selector(spec.get("namespaceSelector"), "namespace") \
            if not namespaced and spec.get("namespaceSelector") else None
        sa_selector = compile_selector(spec.get("serviceAccountSelector")) if spec.get("serviceAccountSelector") else None

        def applies(ep: Candidate) -> bool:
            if ep.namespace is None or (ns is not None and ep.namespace != ns):
                return False
            if ns_selector is not None and not ns_selector(self.namespace_labels(ep.namespace), True):
                return False
            if sa_selector is not None and not sa_selector(self.sa_labels(ep.namespace, ep.service_account or ""), True):
                return False
            return selector(ep.labels, True)

        ingress, egress = _types(spec)
        kind = "NetworkPolicy" if namespaced else "GlobalNetworkPolicy"
        name = f"{ns}/{meta['name']}" if ns else meta["name"]
        rules = {d: tuple(Rule(r.get("action", "Allow"), i, compile_rule(r, ns, self)) for i, r in
                          enumerate(spec.get(d) or [])) for d in ("ingress", "egress")}
        return Policy(spec.get("tier") or "default", _order(spec.get("order")), name, kind, applies,
                      rules["ingress"] if ingress else None, rules["egress"] if egress else None)

    def _knp(self, obj: Obj) -> Policy:
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        ns = meta.get("namespace", "")
        pod_selector = spec.get("podSelector") or {}
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])

        def applies(ep: Candidate) -> bool:
            return ep.namespace == ns and ep.pod is not None and \
                label_selector_matches(pod_selector, ep.pod["metadata"].get("labels"))

        rules = {d: tuple(Rule("Allow", i, compile_knp_rule(r, d, ns, self)) for i, r in
                          enumerate(spec.get(d) or [])) for d in ("ingress", "egress")}
        return Policy("default", KNP_ORDER, f"{ns}/knp.default.{meta['name']}", "Kubernetes NetworkPolicy", applies,
                      rules["ingress"] if "Ingress" in types else None, rules["egress"] if "Egress" in types else None)

    def _netset(self, obj: Obj, *, namespaced: bool) -> NetSet:
        meta = obj["metadata"]
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in (obj.get("spec") or {}).get("nets") or [])
        labels = dict(meta.get("labels") or {})
        ns = meta.get("namespace") if namespaced else None
        if ns:
            labels["projectcalico.org/namespace"] = ns
        return NetSet(nets, Candidate(labels, ns, None, None))

    # ------------------------------------------------------------------ endpoints
    def candidates(self, ip: str, pod: Obj | None) -> tuple[Candidate, ...]:
        """What Calico's selectors can see at ``ip``: the pod's workload endpoint (Felix makes one for
        every scheduled pod that is not host-networked, whichever CNI gave its address) and every
        network set whose nets hold the address."""
        out = []
        if pod is not None and not (pod.get("spec") or {}).get("hostNetwork"):
            out.append(workload_endpoint(pod))
        addr = ipaddress.ip_address(ip)
        for s in self._compile()[1]:
            if any(addr in n for n in s.nets):
                out.append(s.candidate)
        return tuple(out)

    def _tiers_for(self, ep: Candidate, direction: str) -> list[tuple[str, str, list[Policy]]]:
        key, cache = (ep.namespace, ep.service_account, tuple(sorted(ep.labels.items())), direction), self._applicable
        found = cache.get(key)
        if found is None:
            found = []
            for _, tier, action, pols in self._compile()[0]:
                chosen = [p for p in pols if getattr(p, direction) is not None and p.applies(ep)]
                if chosen:
                    found.append((tier, action, chosen))
            cache[key] = found     # a change in the meantime replaced the cache: this entry dies with it
        return found

    def verdict(self, pod: Obj, direction: str, peer_ip: str, peer_pod: Obj | None, port: int,
                protocol: str) -> tuple[bool, str]:
        """Whether Felix lets the flow through ``pod``'s ``direction`` (ingress or egress), and why."""
        local = workload_endpoint(pod)
        tiers = self._tiers_for(local, direction)
        if not tiers:
            return True, "no Calico policy applies"
        local_ip = (pod.get("status") or {}).get("podIP") or ""
        here = Address(local_ip, self.candidates(local_ip, pod), pod)
        there = Address(peer_ip, self.candidates(peer_ip, peer_pod), peer_pod)
        src, dst = (there, here) if direction == "ingress" else (here, there)
        who = f"{direction} of {pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        for tier, default_action, pols in tiers:
            passed = False
            for pol in pols:
                for rule in getattr(pol, direction):
                    if not rule.match(src, dst, port, protocol):
                        continue
                    where = f"{pol.kind} {pol.name} {direction} rule {rule.index}"
                    if rule.action == "Allow":
                        return True, f"allowed by {where}"
                    if rule.action == "Deny":
                        return False, f"{who} denied by {where} (Deny)"
                    if rule.action == "Pass":
                        passed = True
                        break
                if passed:
                    break
            if not passed and default_action != "Pass":
                names = ", ".join(p.name for p in pols[:3])
                return False, f"{who} denied at the end of tier {tier} (no rule of {names} matched)"
        return True, "passed by every tier (the profile allows)"

    # ------------------------------------------------------------------ NAT
    def nat_outgoing(self, src_ip: str, dst_ip: str) -> bool:
        """Whether Felix masquerades src → dst: src in a pool with natOutgoing, dst in no pool."""
        src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
        nat = False
        for pool in self._compile()[2]:
            spec = pool.get("spec") or {}
            if not spec.get("cidr"):
                continue
            net = ipaddress.ip_network(spec["cidr"], strict=False)
            if dst in net:
                return False
            nat = nat or (src in net and bool(spec.get("natOutgoing")))
        return nat


def workload_endpoint(pod: Obj) -> Candidate:
    """A pod as Felix labels its workload endpoint (KDD conversion): the pod's labels plus
    ``projectcalico.org/namespace``, ``projectcalico.org/orchestrator`` and
    ``projectcalico.org/serviceaccount``."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    sa = spec.get("serviceAccountName") or "default"
    labels = {**(meta.get("labels") or {}), "projectcalico.org/namespace": meta.get("namespace", ""),
              "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": sa}
    return Candidate(labels, meta.get("namespace", ""), sa, pod)
