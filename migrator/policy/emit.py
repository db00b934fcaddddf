"""Compiled cubes as Cilium manifests: CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
CiliumCIDRGroup, at the API versions the cluster serves.

One Calico policy becomes one object with one rule (``spec``/``specs``) per distinct subject;
every subject of the policy gets its directions present, so Cilium puts it in default deny as
Calico's tier does. A direction with nothing to allow carries an allow from an identity label no
endpoint has (``ISOLATE``): it selects no peer, whatever a Cilium version makes of empty rules.
A namespaced policy stays a CNP when every label peer names its namespace; otherwise (a peer in
other namespaces, whose namespace Cilium would otherwise inject) it becomes a CCNP pinned to it.
Label keys carry the ``k8s:`` source prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.policy.cubes import Cube, Groups, Net, Sel
from migrator.policy.identity import NAMESPACE
from migrator.policy.labelsel import DNF, Conj, as_label_selector
from migrator.policy.model import NetworkSet, Policy
from migrator.policy.rules import ICMP_ANY_TYPES, ICMPV6_ANY_TYPES, group_name

MANAGED = {"app.kubernetes.io/managed-by": "migrator"}
ISOLATE_KEY = "k8s:policy.migrator.io/isolate-only"
ISOLATE = {"matchLabels": {ISOLATE_KEY: "none"}}


@dataclass(frozen=True)
class CiliumVersions:
    """Served API versions of the Cilium kinds the translation writes."""

    policy: str = "v2"
    cidr_group: str = "v2"
    end_port: bool = True        # the policy schema has ``endPort`` (Cilium >= 1.16); else ranges are listed


MAX_LISTED_PORTS = 64   # without endPort, a range up to this wide is listed port by port


def range_fits(lo: int, hi: int, versions: CiliumVersions) -> bool:
    return versions.end_port or hi - lo < MAX_LISTED_PORTS


def served(versions: Mapping[str, list[str]]) -> CiliumVersions:
    """Pick versions from each CRD's served list (``served_versions`` of the cluster port), preferring
    v2; raises ``ValueError`` naming the CRD when it serves none the translation can write."""
    def pick(crd: str, known: tuple[str, ...]) -> str:
        have = versions.get(crd) or []
        for v in known:
            if v in have:
                return v
        raise ValueError(f"{crd} serves {', '.join(have) or 'nothing'}; install Cilium's CRDs "
                         f"({' or '.join(known)}) first")
    pick("ciliumclusterwidenetworkpolicies.cilium.io", ("v2",))
    return CiliumVersions(policy=pick("ciliumnetworkpolicies.cilium.io", ("v2",)),
                          cidr_group=pick("ciliumcidrgroups.cilium.io", ("v2", "v2alpha1")))


def selector(conj: Conj) -> dict[str, Any]:
    return as_label_selector(conj, prefix="k8s:")


def _l4(cube: Cube, versions: CiliumVersions) -> dict[str, Any]:
    x = cube.l4
    if x.proto is None:
        return {}
    if x.proto in ("ICMP", "ICMPv6"):
        types = (ICMP_ANY_TYPES if x.proto == "ICMP" else ICMPV6_ANY_TYPES) if x.icmp_type is None else (x.icmp_type,)
        family = "IPv4" if x.proto == "ICMP" else "IPv6"
        return {"icmps": [{"fields": [{"type": t, "family": family} for t in types]}]}
    if x.named is not None:
        port: dict[str, Any] = {"port": x.named, "protocol": x.proto}
    elif x.ports is None:
        port = {"port": "0", "protocol": x.proto}
    elif versions.end_port or x.ports[0] == x.ports[1]:
        port = {"port": str(x.ports[0]), "protocol": x.proto}
        if x.ports[1] > x.ports[0]:
            port["endPort"] = x.ports[1]
    else:   # no endPort in the served schema: the API server would prune it and leave the first port
        return {"toPorts": [{"ports": [{"port": str(n), "protocol": x.proto}
                                       for n in range(x.ports[0], x.ports[1] + 1)]}]}
    return {"toPorts": [{"ports": [port]}]}


def entry(cube: Cube, direction: str, versions: CiliumVersions) -> dict[str, Any]:
    side = "from" if direction == "Ingress" else "to"
    p = cube.peer
    if isinstance(p, Sel):
        out: dict[str, Any] = {f"{side}Endpoints": [selector(p.conj)]}
    elif isinstance(p, Groups):
        out = {f"{side}CIDRSet": [{"cidrGroupRef": n} for n in sorted(p.names)]}
    elif isinstance(p, Net):
        out = {f"{side}CIDRSet": [{"cidr": p.cidr, **({"except": list(p.excepts)} if p.excepts else {})}]}
    else:
        out = {f"{side}Entities": ["all"]}
    return {**out, **_l4(cube, versions)}


SECTIONS = {("Ingress", False): "ingress", ("Ingress", True): "ingressDeny",
            ("Egress", False): "egress", ("Egress", True): "egressDeny"}


def _specs(items: Iterable[tuple[Cube, str, bool]], base: DNF, types: tuple[str, ...],
           versions: CiliumVersions) -> list[dict[str, Any]]:
    by_subject: dict[Conj, dict[str, list[dict[str, Any]]]] = {}
    for s in base:
        by_subject.setdefault(s, {})
    for cube, direction, deny in items:
        section = by_subject.setdefault(cube.subject, {}).setdefault(SECTIONS[(direction, deny)], [])
        e = entry(cube, direction, versions)
        if e not in section:
            section.append(e)
    specs = []
    for subject, sections in by_subject.items():
        if subject in base:
            for d in types:
                if SECTIONS[(d, False)] not in sections and SECTIONS[(d, True)] not in sections:
                    sections[SECTIONS[(d, False)]] = [{("fromEndpoints" if d == "Ingress" else "toEndpoints"): [ISOLATE]}]
        spec: dict[str, Any] = {"endpointSelector": selector(subject)}
        for name in ("ingress", "ingressDeny", "egress", "egressDeny"):
            if name in sections:
                spec[name] = sections[name]
        specs.append(spec)
    return specs


def _object(kind: str, name: str, namespace: str | None, specs: list[dict[str, Any]],
            versions: CiliumVersions, annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(MANAGED), "annotations": annotations}
    if namespace:
        meta["namespace"] = namespace
    body: dict[str, Any] = {"apiVersion": f"cilium.io/{versions.policy}", "kind": kind, "metadata": meta}
    if len(specs) == 1:
        body["spec"] = specs[0]
    else:
        body["specs"] = specs
    return body


def _namespaced_peers_only(cubes: Iterable[Cube], namespace: str) -> bool:
    return all(any(r.key == NAMESPACE and r.op == "In" for r in c.peer.conj)
               for c in cubes if isinstance(c.peer, Sel))


def emit_policy(p: Policy, subject: DNF, allow: Mapping[tuple[str, str], list[Cube]],
                deny: Mapping[tuple[str, str], list[Cube]], versions: CiliumVersions) -> dict[str, Any]:
    items = [(c, d, False) for d in ("Ingress", "Egress") for c in allow.get((p.ident, d), ())]
    items += [(c, d, True) for d in ("Ingress", "Egress") for c in deny.get((p.ident, d), ())]
    specs = _specs(items, subject, p.types, versions)
    note = {"policy.migrator.io/source": p.ident}
    if p.namespace and _namespaced_peers_only((c for c, _d, _x in items), p.namespace):
        return _object("CiliumNetworkPolicy", f"calico.{p.name}", p.namespace, specs, versions, note)
    name = f"calico.{p.namespace}.{p.name}" if p.namespace else f"calico.{p.name}"
    return _object("CiliumClusterwideNetworkPolicy", name, None, specs, versions, note)


def emit_tier(tier: str, tier_deny: Mapping[tuple[str, str], list[Cube]], versions: CiliumVersions) -> dict[str, Any]:
    """The explicit end-of-tier denies of one tier, as one CCNP."""
    items = [(c, d, True) for d in ("Ingress", "Egress") for c in tier_deny.get((tier, d), ())]
    return _object("CiliumClusterwideNetworkPolicy", f"calico-tier.{tier}.end-of-tier", None,
                   _specs(items, (), (), versions), versions, {"policy.migrator.io/source": f"tier/{tier}"})


def emit_groups(sets: Iterable[NetworkSet], versions: CiliumVersions) -> list[dict[str, Any]]:
    out = []
    for n in sets:
        meta = {"name": group_name(n), "labels": {**n.labels, **MANAGED},
                "annotations": {"policy.migrator.io/source": f"{'netset' if n.namespace else 'gns'}/"
                                                              f"{n.namespace + '/' if n.namespace else ''}{n.name}"}}
        out.append({"apiVersion": f"cilium.io/{versions.cidr_group}", "kind": "CiliumCIDRGroup",
                    "metadata": meta, "spec": {"externalCIDRs": list(n.nets)}})
    return out
