"""Calico policies and rules as cubes over Cilium identity labels (input to the compile step).

Subjects and label peers become conjunctions over the labels Cilium puts in identities: pod labels
as they are, the namespace as ``io.kubernetes.pod.namespace``, namespace labels under
``io.cilium.k8s.namespace.labels.``, the service account as ``io.cilium.k8s.policy.serviceaccount``.
Calico's special keys map onto these (``projectcalico.org/namespace``, ``.../serviceaccount``;
``projectcalico.org/orchestrator == 'k8s'`` holds for every pod). Network sets matched by a label
peer become CIDR groups; ``nets`` become CIDRs; a rule without peer fields matches any peer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from migrator.policy import selector as sel
from migrator.policy.cubes import L4, AnyPeer, Approx, Cube, Groups, Net, Peer, Sel, l4_minus, peer_minus
from migrator.policy.identity import NAMESPACE, NAMESPACE_LABELS, SERVICE_ACCOUNT
from migrator.policy.labelsel import DNF, EVERYTHING, Inexpressible, Req, dnf_and, to_dnf
from migrator.policy.model import EntityRule, Inventory, NetworkSet, Policy, Rule

ORCHESTRATOR = "projectcalico.org/orchestrator"
POD_KEYS = {"projectcalico.org/namespace": NAMESPACE, "projectcalico.org/serviceaccount": SERVICE_ACCOUNT}
ICMP_ANY_TYPES = (0, 3, 8, 11)              # "any ICMP" as Cilium can say it: the common types
ICMPV6_ANY_TYPES = (1, 2, 3, 4, 128, 129)


def group_name(ns: NetworkSet) -> str:
    """The CiliumCIDRGroup a network set becomes."""
    return f"calico-netset.{ns.namespace}.{ns.name}" if ns.namespace else f"calico-globalnetset.{ns.name}"


def pod_dnf(text: str | None) -> DNF:
    dnf = to_dnf(sel.parse(text or ""), POD_KEYS)
    out = []
    for conj in dnf:
        orch = [r for r in conj if r.key == ORCHESTRATOR]
        if all(r.holds({ORCHESTRATOR: "k8s"}) for r in orch):
            out.append(frozenset(r for r in conj if r.key != ORCHESTRATOR))
    return tuple(out)


def ns_dnf(text: str) -> DNF:
    node = sel.parse(text)
    keys = {k: NAMESPACE if k == "projectcalico.org/name" else NAMESPACE_LABELS + k for k in sel.keys(node)}
    return to_dnf(node, keys)


def sa_dnf(names: tuple[str, ...], text: str | None) -> DNF:
    dnf: DNF = EVERYTHING
    if names:
        dnf = (frozenset({Req(SERVICE_ACCOUNT, "In", tuple(sorted(names)))}),)
    if text:
        node = sel.parse(text)
        other = sel.keys(node) - {"projectcalico.org/name"}
        if other:
            raise Inexpressible(f"service-account label {sorted(other)[0]!r} is not in Cilium identities")
        dnf = dnf_and(dnf, to_dnf(node, {"projectcalico.org/name": SERVICE_ACCOUNT}))
    return dnf


def subject_dnf(p: Policy) -> DNF:
    """The endpoints a policy applies to."""
    dnf = pod_dnf(p.selector)
    if p.namespace:
        dnf = dnf_and(dnf, (frozenset({Req(NAMESPACE, "In", (p.namespace,))}),))
    elif p.namespace_selector:
        dnf = dnf_and(dnf, ns_dnf(p.namespace_selector))
    if p.sa_selector:
        dnf = dnf_and(dnf, sa_dnf((), p.sa_selector))
    return dnf


@dataclass(frozen=True)
class Context:
    """What peer conversion needs from the inventory: network sets and namespace labels."""

    inv: Inventory

    def group_cidrs(self) -> dict[str, tuple[str, ...]]:
        return {group_name(n): n.nets for n in self.inv.network_sets}

    def netsets(self, p: Policy, e: EntityRule, text: str | None, *, anywhere: bool = False) -> frozenset[str]:
        """Network sets a label peer also matches, as CIDR-group names (``anywhere``: in every namespace,
        as a notSelector matches)."""
        node = sel.parse(text or "")
        ns_text = e.namespace_selector
        out = set()
        for n in self.inv.network_sets:
            if anywhere:
                scope = True
            elif ns_text is not None:
                ns_node = sel.parse(ns_text)
                labels = {**self.inv.namespaces.get(n.namespace or "", {}), "projectcalico.org/name": n.namespace or ""}
                scope = (sel.matches(ns_node, {}, is_global=True, namespaces=True) if n.namespace is None
                         else sel.matches(ns_node, labels))
            else:
                scope = n.namespace == p.namespace if p.namespace else True
            if scope and sel.matches(node, n.labels, is_global=n.namespace is None):
                out.add(group_name(n))
        return frozenset(out)


def peers(p: Policy, e: EntityRule, ctx: Context, notes: Approx) -> list[Peer]:
    """The peers one EntityRule matches. A lone notSelector in a namespaced policy still limits the
    peer to the policy's namespace (libcalico-go), and then cuts the endpoints it selects anywhere."""
    groups = ctx.group_cidrs()
    out: list[Peer]
    if e.selects_by_labels(namespaced=p.namespace is not None):
        if e.namespace_selector is not None and e.namespace_selector.strip() == "global()":
            names = ctx.netsets(p, e, e.selector)
            out = [Groups(names)] if names else []
        else:
            dnf = pod_dnf(e.selector)
            if e.namespace_selector is not None:
                dnf = dnf_and(dnf, ns_dnf(e.namespace_selector))
            elif p.namespace:
                dnf = dnf_and(dnf, (frozenset({Req(NAMESPACE, "In", (p.namespace,))}),))
            dnf = dnf_and(dnf, sa_dnf(e.sa_names, e.sa_selector))
            out = [Sel(c) for c in dnf]
            names = frozenset() if (e.sa_names or e.sa_selector) else ctx.netsets(p, e, e.selector)
            if names:
                out.append(Groups(names))
    elif e.nets:
        out = [Net(n, tuple(x for x in e.not_nets if _within(x, n))) for n in e.nets]
    elif e.not_nets:
        out = [Sel(frozenset())]
        for v, world in ((4, "0.0.0.0/0"), (6, "::/0")):
            out.append(Net(world, tuple(x for x in e.not_nets if _version(x) == v)))
    else:
        out = [AnyPeer()]
    if e.not_selector is not None:
        cuts: list[Peer] = [Sel(c) for c in pod_dnf(e.not_selector)]
        names = ctx.netsets(p, EntityRule(), e.not_selector, anywhere=True)
        if names:
            cuts.append(Groups(names))
        for cut in cuts:
            out = [q for x in out for q in peer_minus(x, cut, groups, notes)]
    return out


def _version(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def _within(inner: str, outer: str) -> bool:
    import ipaddress
    a, b = ipaddress.ip_network(inner, strict=False), ipaddress.ip_network(outer, strict=False)
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def port_l4(proto: str, port: str) -> L4:
    if ":" in port:
        lo, hi = port.split(":")
        return L4(proto, (int(lo), int(hi)))
    if port.isdigit():
        return L4(proto, (int(port), int(port)))
    return L4(proto, named=port)


def l4s(r: Rule, notes: Approx) -> list[L4]:
    proto = r.protocol
    if proto is None:
        return [L4()]
    if proto in ("ICMP", "ICMPv6"):
        if r.icmp_type is not None:
            return [L4(proto, icmp_type=r.icmp_type)]
        return [L4(proto, icmp_type=t) for t in (ICMP_ANY_TYPES if proto == "ICMP" else ICMPV6_ANY_TYPES)]
    dst = r.destination
    out = [port_l4(proto, x) for x in dst.ports] if dst.ports else [L4(proto)]
    for x in dst.not_ports:
        out = [y for b in out for y in l4_minus(b, port_l4(proto, x), notes)]
    return out


def rule_cubes(p: Policy, r: Rule, direction: str, subject: DNF, ctx: Context, notes: Approx) -> list[Cube]:
    """Every cube of one rule: (subject ∧ the local side's selector) × peers × L4."""
    local, remote = (r.destination, r.source) if direction == "Ingress" else (r.source, r.destination)
    if local.selector:
        subject = dnf_and(subject, pod_dnf(local.selector))
    return [Cube(s, peer, x) for s in subject for peer in peers(p, remote, ctx, notes) for x in l4s(r, notes)]


def tier_key(name: str, tiers: Mapping[str, float | None]) -> tuple[bool, float, str]:
    order = tiers.get(name, 1_000_000.0 if name == "default" else None)
    return (order is None, order or 0.0, name)


def policy_key(p: Policy) -> tuple[bool, float, str]:
    name = f"knp.default.{p.name}" if p.native else p.name
    return (p.order is None, p.order or 0.0, name)
