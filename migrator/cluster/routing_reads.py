"""Reading the cluster's routing inventory: Calico BGP, node pod CIDRs, MetalLB, served Cilium APIs.

``read_routing_inventory`` is a mixin method of ``KubeCluster`` (like ``kube_reads``); the
``*_of`` functions turn raw objects into the frozen records of ``model/routing.py`` so no raw dict
leaves ``cluster/``. Every kind that is not served reads as empty: a cluster without MetalLB or
without Calico's BGP CRDs is an answer, not an error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from migrator.model.handover import HandoverState, ObjectKey, PeerState
from migrator.model.routing import (
    CILIUM_BGP_CRDS,
    CalicoBgpConfig,
    CalicoBgpPeer,
    LoadBalancerService,
    MetalLBAdvertisement,
    MetalLBPeer,
    MetalLBPool,
    PoolInfo,
    RoutingInventory,
    RoutingNode,
)

Raw = dict[str, Any]
#: The Cilium kinds the hand-over writes, and the per-node status objects Cilium's operator makes.
HANDOVER_CILIUM_PLURALS = ("ciliumbgppeerconfigs", "ciliumbgpadvertisements", "ciliumbgpclusterconfigs",
                           "ciliumloadbalancerippools", "ciliumbgpnodeconfigs")
CALICO = ("crd.projectcalico.org", "v1")
METALLB = "metallb.io"
RR_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
CALICO_NAMESPACES = ("kube-system", "calico-system")


def _meta(obj: Raw) -> Raw:
    return obj.get("metadata") or {}


def _spec(obj: Raw) -> Raw:
    return obj.get("spec") or {}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def pool_of(obj: Raw) -> PoolInfo:
    spec = _spec(obj)
    return PoolInfo(name=_meta(obj).get("name") or "", cidr=str(spec.get("cidr") or ""),
                    vxlan_mode=str(spec.get("vxlanMode") or "Never"), ipip_mode=str(spec.get("ipipMode") or "Never"),
                    disabled=bool(spec.get("disabled")), node_selector=str(spec.get("nodeSelector") or "all()"))


def bgp_config_of(obj: Raw) -> CalicoBgpConfig:
    spec = _spec(obj)

    def cidrs(key: str) -> tuple[str, ...]:
        return tuple(str(e.get("cidr")) for e in spec.get(key) or [] if isinstance(e, dict) and e.get("cidr"))
    mesh = spec.get("nodeToNodeMeshEnabled")
    return CalicoBgpConfig(
        as_number=_int(spec.get("asNumber")), mesh_enabled=None if mesh is None else bool(mesh),
        service_cluster_ips=cidrs("serviceClusterIPs"), service_external_ips=cidrs("serviceExternalIPs"),
        service_lb_ips=cidrs("serviceLoadBalancerIPs"),
        communities=tuple(f"{c.get('name')}={c.get('value')}" for c in spec.get("communities") or []
                          if isinstance(c, dict)),
        prefix_advertisements=tuple(str(p.get("cidr")) for p in spec.get("prefixAdvertisements") or []
                                    if isinstance(p, dict) and p.get("cidr")))


def bgp_peer_of(obj: Raw) -> CalicoBgpPeer:
    spec = _spec(obj)
    return CalicoBgpPeer(name=_meta(obj).get("name") or "", node=spec.get("node") or None,
                         node_selector=spec.get("nodeSelector") or None, peer_ip=spec.get("peerIP") or None,
                         peer_selector=spec.get("peerSelector") or None, as_number=_int(spec.get("asNumber")))


def node_of(obj: Raw) -> RoutingNode:
    meta, spec = _meta(obj), _spec(obj)
    cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    ip = next((a.get("address") for a in (obj.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"), None)
    return RoutingNode(name=meta.get("name") or "", internal_ip=ip, pod_cidrs=cidrs,
                       labels=dict(meta.get("labels") or {}),
                       route_reflector_cluster_id=(meta.get("annotations") or {}).get(RR_ANNOTATION) or None)


def metallb_pool_of(obj: Raw) -> MetalLBPool:
    spec = _spec(obj)
    return MetalLBPool(namespace=_meta(obj).get("namespace") or "", name=_meta(obj).get("name") or "",
                       addresses=tuple(str(a) for a in spec.get("addresses") or []),
                       auto_assign=spec.get("autoAssign", True) is not False)


def metallb_peer_of(obj: Raw) -> MetalLBPeer:
    spec = _spec(obj)
    return MetalLBPeer(namespace=_meta(obj).get("namespace") or "", name=_meta(obj).get("name") or "",
                       my_asn=_int(spec.get("myASN")), peer_asn=_int(spec.get("peerASN")),
                       peer_address=str(spec.get("peerAddress") or ""),
                       node_selectors=tuple(dict(s.get("matchLabels") or {}) for s in spec.get("nodeSelectors") or []
                                            if isinstance(s, dict)))


def metallb_advertisement_of(kind: str, obj: Raw) -> MetalLBAdvertisement:
    spec = _spec(obj)
    return MetalLBAdvertisement(kind=kind, namespace=_meta(obj).get("namespace") or "",
                                name=_meta(obj).get("name") or "",
                                pools=tuple(str(p) for p in spec.get("ipAddressPools") or []),
                                pool_selector=bool(spec.get("ipAddressPoolSelectors")),
                                communities=tuple(str(c) for c in spec.get("communities") or []),
                                aggregation_length=_int(spec.get("aggregationLength")))


def lb_service_of(obj: Raw) -> LoadBalancerService:
    meta, spec = _meta(obj), _spec(obj)
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    annotations = meta.get("annotations") or {}
    return LoadBalancerService(namespace=meta.get("namespace") or "", name=meta.get("name") or "",
                               ips=tuple(str(i["ip"]) for i in ingress if isinstance(i, dict) and i.get("ip")),
                               pinned_ip=spec.get("loadBalancerIP") or None,
                               requested_pool=annotations.get("metallb.universe.tf/address-pool") or None,
                               load_balancer_class=spec.get("loadBalancerClass") or None)


def _env(ds: Raw | None, name: str) -> str | None:
    for c in (((ds or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == name and "value" in env:
                return str(env["value"])
    return None


def bgp_peers_of(obj: Raw) -> tuple[PeerState, ...]:
    """A ``CiliumBGPNodeConfig``'s reported peers (``status.bgpInstances[].peers[]``)."""
    out = []
    for inst in (obj.get("status") or {}).get("bgpInstances") or []:
        for peer in (inst or {}).get("peers") or []:
            advertised = None
            for count in peer.get("routeCount") or []:
                if count.get("afi") == "ipv4" and count.get("safi") == "unicast":
                    advertised = _int(count.get("advertised"))
            out.append(PeerState(address=str(peer.get("peerAddress") or ""), state=str(peer.get("peeringState") or ""),
                                 advertised=advertised))
    return tuple(out)


def _cilium_version(served: list[str]) -> str | None:
    return next((v for v in ("v2", "v2alpha1") if v in served), None)


def cni_ipam(calico_config: Raw | None) -> str | None:
    text = ((calico_config or {}).get("data") or {}).get("cni_network_config")
    if not text:
        return None
    try:
        conf = json.loads(text)
    except ValueError:
        return None
    for plugin in conf.get("plugins") or [conf]:
        if isinstance(plugin, dict) and plugin.get("type") == "calico":
            return str((plugin.get("ipam") or {}).get("type") or "") or None
    return None


class RoutingReads:
    """Mixin: ``read_routing_inventory`` over ``KubeCluster``'s helpers."""

    core: Any
    apps: Any

    if TYPE_CHECKING:   # supplied by KubeCluster and KubeReads
        def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Raw: ...
        def _get_or_none(self, what: str, fn: Any, *args: Any) -> Raw | None: ...
        def _list_custom(self, group: str, version: str, plural: str,
                         namespace: str | None = None) -> list[Raw]: ...
        def _get_custom(self, group: str, version: str, plural: str, name: str,
                        namespace: str | None = None) -> Raw | None: ...
        def served_versions(self, crd_name: str) -> list[str]: ...

    def _metallb(self, plural: str) -> list[Raw]:
        for version in ("v1beta2", "v1beta1"):
            if version in self.served_versions(f"{plural}.{METALLB}"):
                return [{"apiVersion": f"{METALLB}/{version}", **o} for o in self._list_custom(METALLB, version, plural)]
        return []

    def read_routing_inventory(self) -> RoutingInventory:
        return self._inventory(self._routing_raw())

    def _routing_raw(self) -> dict[str, Any]:
        """The raw objects the inventory is made of (MetalLB's with their apiVersion)."""
        calico_node: Raw | None = None
        for ns in CALICO_NAMESPACES:
            calico_node = calico_node or self._get_or_none(f"get daemonset {ns}/calico-node",
                                                           self.apps.read_namespaced_daemon_set, "calico-node", ns)
        return {
            "calico_node": calico_node,
            "calico_config": self._get_or_none("get configmap kube-system/calico-config",
                                               self.core.read_namespaced_config_map, "calico-config", "kube-system"),
            "node_init": self._get_or_none("get daemonset kube-system/node-init",
                                           self.apps.read_namespaced_daemon_set, "node-init", "kube-system"),
            "bgp_default": self._get_custom(*CALICO, "bgpconfigurations", "default"),
            "nodes": self._call("list nodes", self.core.list_node).get("items") or [],
            "services": self._call("list services", self.core.list_service_for_all_namespaces).get("items") or [],
            "ippools": self._list_custom(*CALICO, "ippools"),
            "bgppeers": [{"apiVersion": "/".join(CALICO), **o} for o in self._list_custom(*CALICO, "bgppeers")],
            **{f"metallb/{plural}": self._metallb(plural)
               for plural in ("ipaddresspools", "bgppeers", "bgpadvertisements", "l2advertisements")},
            "cilium_served": {crd: tuple(self.served_versions(crd)) for crd in CILIUM_BGP_CRDS.values()},
        }

    @staticmethod
    def _inventory(raw: dict[str, Any]) -> RoutingInventory:
        calico_config = raw["calico_config"]
        return RoutingInventory(
            calico_backend=_env(raw["calico_node"], "CALICO_NETWORKING_BACKEND"),
            calico_config_backend=((calico_config or {}).get("data") or {}).get("calico_backend") or None,
            calico_cni_ipam=cni_ipam(calico_config),
            pools=tuple(pool_of(o) for o in raw["ippools"]),
            bgp_config=bgp_config_of(raw["bgp_default"]) if raw["bgp_default"] else None,
            bgp_peers=tuple(bgp_peer_of(o) for o in raw["bgppeers"]),
            nodes=tuple(sorted((node_of(o) for o in raw["nodes"]), key=lambda n: n.name)),
            node_init=raw["node_init"] is not None,
            metallb_pools=tuple(metallb_pool_of(o) for o in raw["metallb/ipaddresspools"]),
            metallb_peers=tuple(metallb_peer_of(o) for o in raw["metallb/bgppeers"]),
            metallb_advertisements=tuple(
                [metallb_advertisement_of("BGPAdvertisement", o) for o in raw["metallb/bgpadvertisements"]]
                + [metallb_advertisement_of("L2Advertisement", o) for o in raw["metallb/l2advertisements"]]),
            lb_services=tuple(lb_service_of(o) for o in raw["services"] if _spec(o).get("type") == "LoadBalancer"),
            cilium_served=dict(raw["cilium_served"]),
        )

    def read_handover_state(self) -> HandoverState:
        raw = self._routing_raw()
        objects: dict[ObjectKey, Raw] = {}

        def keep(plural: str, items: list[Raw]) -> None:
            for obj in items:
                meta = _meta(obj)
                objects[(plural, meta.get("namespace") or "", meta.get("name") or "")] = obj

        keep("ipaddresspools", raw["metallb/ipaddresspools"])
        keep("bgppeers", raw["metallb/bgppeers"])
        keep("bgppeers", raw["bgppeers"])      # Calico's: cluster-scoped, MetalLB's are namespaced
        keep("services", [o for o in raw["services"] if _spec(o).get("type") == "LoadBalancer"])
        bgp_nodes: dict[str, tuple[PeerState, ...]] = {}
        for plural in HANDOVER_CILIUM_PLURALS:
            version = _cilium_version(self.served_versions(f"{plural}.cilium.io"))
            if version is None:
                continue
            items = self._list_custom("cilium.io", version, plural)
            if plural == "ciliumbgpnodeconfigs":
                bgp_nodes = {_meta(o).get("name") or "": bgp_peers_of(o) for o in items}
            else:
                keep(plural, items)
        return HandoverState(inventory=self._inventory(raw), objects=objects, bgp_nodes=bgp_nodes,
                             node_labels={_meta(o).get("name") or "": dict(_meta(o).get("labels") or {})
                                          for o in raw["nodes"]})
