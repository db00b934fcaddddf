"""The policy inventory: Calico and Kubernetes policy objects, network sets, host endpoints, pods
and namespaces, as frozen records parsed from the objects the API server returns.

``projectcalico.org/v3`` and ``crd.projectcalico.org/v1`` carry the same ``spec`` for
NetworkPolicy, GlobalNetworkPolicy, NetworkSet, GlobalNetworkSet and HostEndpoint, so one parser
serves both. A Kubernetes NetworkPolicy is kept as Calico sees it (Calico's KDD conversion): a
policy in the ``default`` tier at order 1000 whose pod selector is the podSelector, one rule per
peer × port; it stays native under Cilium (``native=True``) and is never translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KNP_ORDER = 1000.0
DEFAULT_TIER = "default"


@dataclass(frozen=True)
class EntityRule:
    """A rule's source or destination (Calico EntityRule). Empty fields are absent."""

    selector: str | None = None
    not_selector: str | None = None
    namespace_selector: str | None = None
    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()            # "80", "1000:2000" or a port name
    not_ports: tuple[str, ...] = ()
    sa_names: tuple[str, ...] = ()
    sa_selector: str | None = None
    services: bool = False

    def selects_by_labels(self, *, namespaced: bool) -> bool:
        """Whether the peer is limited to selected endpoints and network sets (libcalico-go's
        ``getEndpointSelector``): any of selector, namespaceSelector or service accounts, and in a
        namespaced policy also a lone notSelector (then limited to the policy's namespace)."""
        return (self.selector is not None or self.namespace_selector is not None or bool(self.sa_names)
                or self.sa_selector is not None or (namespaced and self.not_selector is not None))

    @property
    def any_peer(self) -> bool:
        return (self.selector is None and self.namespace_selector is None and not self.nets
                and self.not_selector is None and not self.not_nets and not self.sa_names
                and self.sa_selector is None and not self.services)


@dataclass(frozen=True)
class Rule:
    """One Calico rule."""

    action: str                            # Allow | Deny | Pass | Log
    protocol: str | None = None            # TCP | UDP | SCTP | ICMP | ICMPv6 | UDPLite | a number, as text
    not_protocol: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp: bool = False
    ip_version: int | None = None
    source: EntityRule = field(default_factory=EntityRule)
    destination: EntityRule = field(default_factory=EntityRule)
    http: bool = False


@dataclass(frozen=True)
class Policy:
    """A Calico NetworkPolicy / GlobalNetworkPolicy, or a Kubernetes NetworkPolicy as Calico sees it."""

    kind: str                              # NetworkPolicy | GlobalNetworkPolicy | KubernetesNetworkPolicy
    name: str
    namespace: str | None
    tier: str = DEFAULT_TIER
    order: float | None = None             # None sorts last (+Inf)
    selector: str = ""
    namespace_selector: str | None = None
    sa_selector: str | None = None
    types: tuple[str, ...] = ("Ingress",)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    native: bool = False                   # a Kubernetes NetworkPolicy: Cilium enforces it as it is
    source: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)   # native: its spec

    @property
    def ident(self) -> str:
        kind = {"NetworkPolicy": "np", "GlobalNetworkPolicy": "gnp", "KubernetesNetworkPolicy": "knp"}[self.kind]
        return f"{kind}/{self.namespace}/{self.name}" if self.namespace else f"{kind}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == "Ingress" else self.egress


@dataclass(frozen=True)
class NetworkSet:
    name: str
    namespace: str | None                  # None: a GlobalNetworkSet
    labels: Mapping[str, str]
    nets: tuple[str, ...]


@dataclass(frozen=True)
class HostEndpoint:
    name: str
    node: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Tier:
    name: str
    order: float | None
    default_action: str = "Deny"           # Deny | Pass


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str | None
    service_account: str = "default"
    named_ports: tuple[tuple[str, int, str], ...] = ()     # (name, number, protocol)
    node: str | None = None                                 # spec.nodeName: which network plugin serves it


@dataclass(frozen=True)
class Inventory:
    """Everything the translation and the equivalence check read."""

    policies: tuple[Policy, ...] = ()
    network_sets: tuple[NetworkSet, ...] = ()
    host_endpoints: tuple[HostEndpoint, ...] = ()
    tiers: tuple[Tier, ...] = ()
    pods: tuple[Pod, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # name -> labels


class PolicyInputError(ValueError):
    """An object whose spec cannot be read (names the object and the field)."""


# ------------------------------------------------------------------------------------ parsing
def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _entity(raw: Mapping[str, Any] | None) -> EntityRule:
    raw = raw or {}
    sa = raw.get("serviceAccounts") or {}
    return EntityRule(
        selector=raw.get("selector"), not_selector=raw.get("notSelector"),
        namespace_selector=raw.get("namespaceSelector"),
        nets=_strs(raw.get("nets") or ([raw["net"]] if raw.get("net") else [])),
        not_nets=_strs(raw.get("notNets") or ([raw["notNet"]] if raw.get("notNet") else [])),
        ports=_strs(raw.get("ports")), not_ports=_strs(raw.get("notPorts")),
        sa_names=_strs(sa.get("names")), sa_selector=sa.get("selector"), services=bool(raw.get("services")))


def _rule(raw: Mapping[str, Any]) -> Rule:
    icmp = raw.get("icmp") or {}
    protocol = raw.get("protocol")
    not_protocol = raw.get("notProtocol")
    return Rule(action=str(raw.get("action") or ""),
                protocol=None if protocol is None else str(protocol),
                not_protocol=None if not_protocol is None else str(not_protocol),
                icmp_type=icmp.get("type"), icmp_code=icmp.get("code"), not_icmp=bool(raw.get("notICMP")),
                ip_version=raw.get("ipVersion"), source=_entity(raw.get("source")),
                destination=_entity(raw.get("destination")), http=bool(raw.get("http")))


def _types(spec: Mapping[str, Any]) -> tuple[str, ...]:
    if spec.get("types"):
        return _strs(spec["types"])
    has_in, has_out = bool(spec.get("ingress")), bool(spec.get("egress"))
    if has_in and has_out:
        return ("Ingress", "Egress")
    return ("Egress",) if has_out else ("Ingress",)


def calico_policy(kind: str, obj: Mapping[str, Any]) -> Policy:
    """A Calico NetworkPolicy or GlobalNetworkPolicy object (either API group)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = str(meta.get("name") or "")
    try:
        order = spec.get("order")
        return Policy(
            kind=kind, name=name, namespace=meta.get("namespace") if kind == "NetworkPolicy" else None,
            tier=str(spec.get("tier") or DEFAULT_TIER), order=None if order is None else float(order),
            selector=str(spec.get("selector") or ""), namespace_selector=spec.get("namespaceSelector"),
            sa_selector=spec.get("serviceAccountSelector"), types=_types(spec),
            ingress=tuple(_rule(r) for r in spec.get("ingress") or ()),
            egress=tuple(_rule(r) for r in spec.get("egress") or ()),
            do_not_track=bool(spec.get("doNotTrack")), pre_dnat=bool(spec.get("preDNAT")),
            apply_on_forward=bool(spec.get("applyOnForward")))
    except (TypeError, ValueError, AttributeError) as exc:
        raise PolicyInputError(f"{kind} {name}: unreadable spec ({exc})") from None


def network_set(obj: Mapping[str, Any], *, global_: bool) -> NetworkSet:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return NetworkSet(name=str(meta.get("name") or ""), namespace=None if global_ else meta.get("namespace"),
                      labels=dict(meta.get("labels") or {}), nets=_strs(spec.get("nets")))


def host_endpoint(obj: Mapping[str, Any]) -> HostEndpoint:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return HostEndpoint(name=str(meta.get("name") or ""), node=str(spec.get("node") or ""),
                        labels=dict(meta.get("labels") or {}))


def tier(obj: Mapping[str, Any]) -> Tier:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    order = spec.get("order")
    return Tier(name=str(meta.get("name") or ""), order=None if order is None else float(order),
                default_action=str(spec.get("defaultAction") or "Deny"))


def pod(obj: Mapping[str, Any]) -> Pod:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ports = tuple((str(p["name"]), int(p["containerPort"]), str(p.get("protocol") or "TCP"))
                  for c in spec.get("containers") or () for p in c.get("ports") or () if p.get("name"))
    return Pod(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
               labels=dict(meta.get("labels") or {}), ip=status.get("podIP"),
               service_account=str(spec.get("serviceAccountName") or "default"), named_ports=ports,
               node=spec.get("nodeName"))


# -------------------------------------------------------------- Kubernetes NetworkPolicy → Calico
def label_selector_text(sel: Mapping[str, Any] | None) -> str:
    """A Kubernetes LabelSelector in Calico's selector syntax (``all()`` when empty)."""
    terms = [f"{k} == '{v}'" for k, v in sorted((sel or {}).get("matchLabels", {}).items())]
    for e in (sel or {}).get("matchExpressions") or ():
        key, op, values = e["key"], e["operator"], ", ".join(f"'{v}'" for v in e.get("values") or ())
        terms.append({"In": f"{key} in {{{values}}}", "NotIn": f"{key} not in {{{values}}}",
                      "Exists": f"has({key})", "DoesNotExist": f"!has({key})"}[op])
    return " && ".join(terms) or "all()"


def _knp_ports(ports: Any) -> list[tuple[str | None, tuple[str, ...]]]:
    """(protocol, ports) per NetworkPolicyPort; no ports at all = any protocol, any port."""
    if not ports:
        return [(None, ())]
    out: list[tuple[str | None, tuple[str, ...]]] = []
    for p in ports:
        proto = str(p.get("protocol") or "TCP")
        port = p.get("port")
        if port is None:
            out.append((proto, ()))
        elif p.get("endPort"):
            out.append((proto, (f"{port}:{p['endPort']}",)))
        else:
            out.append((proto, (str(port),)))
    return out


def _knp_peer(peer: Mapping[str, Any]) -> EntityRule:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        return EntityRule(nets=(str(block["cidr"]),), not_nets=_strs(block.get("except")))
    pod_sel = label_selector_text(peer.get("podSelector")) if "podSelector" in peer else None
    ns_sel = label_selector_text(peer.get("namespaceSelector")) if "namespaceSelector" in peer else None
    return EntityRule(selector=pod_sel or ("all()" if ns_sel else None), namespace_selector=ns_sel)


def kubernetes_policy(obj: Mapping[str, Any]) -> Policy:
    """A networking.k8s.io/v1 NetworkPolicy as Calico enforces it (default tier, order 1000)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    types = _strs(spec.get("policyTypes")) or (("Ingress", "Egress") if spec.get("egress") else ("Ingress",))

    def rules(items: Any, peer_key: str, inbound: bool) -> tuple[Rule, ...]:
        out: list[Rule] = []
        for item in items or ():
            peers = [_knp_peer(p) for p in item.get(peer_key) or ()] or [EntityRule()]
            for proto, ports in _knp_ports(item.get("ports")):
                for peer in peers:
                    dest = EntityRule(ports=ports)
                    if inbound:
                        out.append(Rule("Allow", protocol=proto, source=peer, destination=dest))
                    else:
                        out.append(Rule("Allow", protocol=proto, destination=_with_ports(peer, ports)))
        return tuple(out)

    return Policy(kind="KubernetesNetworkPolicy", name=str(meta.get("name") or ""),
                  namespace=meta.get("namespace"), tier=DEFAULT_TIER, order=KNP_ORDER,
                  selector=label_selector_text(spec.get("podSelector")), types=types,
                  ingress=rules(spec.get("ingress"), "from", True), egress=rules(spec.get("egress"), "to", False),
                  native=True, source=spec)


def _with_ports(peer: EntityRule, ports: tuple[str, ...]) -> EntityRule:
    return EntityRule(**{**peer.__dict__, "ports": ports})
