"""Detection of the cluster's routing: ``detect(inventory) -> RoutingDetection`` (pure).

The rules follow Calico's, MetalLB's and Cilium's documentation:

* Calico's backend is calico-node's ``CALICO_NETWORKING_BACKEND`` (``bird`` when unset, the
  manifest default; ``calico-config``'s ``calico_backend`` feeds it in manifest installs).
  ``none`` means Calico programs no routes between nodes at all.
* A pool's mode: ``vxlanMode``/``ipipMode`` ``Always`` or ``CrossSubnet`` encapsulate (CrossSubnet
  only across subnets); both ``Never`` is BGP routing under BIRD and node-routed otherwise.
* Who announces a node's pod prefix under BIRD: the node-to-node mesh unless the ``default``
  BGPConfiguration turns it off; then route reflectors (a node with a ``routeReflectorClusterID``,
  or reached through a BGPPeer whose ``peerSelector`` selects one), or BGPPeers with a ``peerIP``
  (a ToR router) whose ``node``/``nodeSelector`` select the node; otherwise nobody.
* MetalLB announces a LoadBalancer IP in BGP mode when a BGPAdvertisement selects its pool, in
  L2 mode when an L2Advertisement does (no pools named and no selector = every pool).
* The Cilium BGP control plane's v2 API (CiliumBGPClusterConfig, PeerConfig, Advertisement,
  NodeConfigOverride) is served at ``cilium.io/v2alpha1`` from 1.16 and ``cilium.io/v2`` from 1.18;
  the v1 ``CiliumBGPPeeringPolicy`` until 1.18 (removed in 1.19). A hand-over writes the newest
  version served.
"""

from __future__ import annotations

import ipaddress

from migrator.model.routing import (
    CILIUM_BGP_CRDS,
    Announcer,
    CalicoRouting,
    CiliumBgpApi,
    LBAnnouncement,
    MetalLBState,
    NodeRouting,
    PoolMode,
    PoolRouting,
    RoutingDetection,
    RoutingInventory,
    RoutingNode,
)
from migrator.policy import selector as calico_selector

DEFAULT_ASN = 64512
BGP_V2_KINDS = ("cluster_config", "peer_config", "advertisement", "node_config_override")


def _selects(expression: str | None, labels: dict[str, str]) -> bool:
    try:
        return calico_selector.matches(calico_selector.parse(expression or "all()"), labels)
    except calico_selector.SelectorError:
        return False


def calico_backend(inv: RoutingInventory) -> str:
    return (inv.calico_backend or inv.calico_config_backend or "bird").strip().lower()


def pool_mode(vxlan: str, ipip: str, backend: str) -> PoolMode:
    if vxlan == "Always":
        return PoolMode.VXLAN
    if vxlan == "CrossSubnet":
        return PoolMode.VXLAN_CROSS_SUBNET
    if ipip == "Always":
        return PoolMode.IPIP
    if ipip == "CrossSubnet":
        return PoolMode.IPIP_CROSS_SUBNET
    return PoolMode.BGP if backend == "bird" else PoolMode.NODE_ROUTED


def _announcer(node: RoutingNode, inv: RoutingInventory, backend: str, mesh: bool,
               reflectors: set[str]) -> Announcer:
    if backend != "bird":
        return Announcer.NODE_ROUTER if node.pod_cidrs else Announcer.NOBODY
    if mesh:
        return Announcer.BIRD_MESH
    if node.name in reflectors:
        return Announcer.ROUTE_REFLECTOR
    nodes = {n.name: n for n in inv.nodes}
    for peer in inv.bgp_peers:
        applies = peer.node == node.name if peer.node else _selects(peer.node_selector, node.labels)
        if not applies:
            continue
        if peer.peer_selector and any(_selects(peer.peer_selector, nodes[r].labels) for r in reflectors):
            return Announcer.ROUTE_REFLECTOR
        if peer.peer_ip and peer.peer_ip.split(":")[0] not in {n.internal_ip for n in inv.nodes}:
            return Announcer.BGP_PEER
    return Announcer.NOBODY


def _in_pool(ip: str, addresses: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in addresses:
        try:
            if "-" in entry:
                first, last = (ipaddress.ip_address(p.strip()) for p in entry.split("-", 1))
                if first.version == addr.version and first <= addr <= last:  # type: ignore[operator]
                    return True
            elif addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _metallb(inv: RoutingInventory) -> MetalLBState:
    present = bool(inv.metallb_pools or inv.metallb_peers or inv.metallb_advertisements)
    announcements: list[LBAnnouncement] = []
    for svc in inv.lb_services:
        if svc.load_balancer_class:
            continue     # another implementation owns it
        for ip in svc.ips or ((svc.pinned_ip,) if svc.pinned_ip else ()):
            pool = next((p for p in inv.metallb_pools if _in_pool(ip, p.addresses)), None)
            modes = []
            for kind, mode in (("BGPAdvertisement", "bgp"), ("L2Advertisement", "l2")):
                if pool is not None and any(a.kind == kind and (pool.name in a.pools or not a.pools)
                                            for a in inv.metallb_advertisements):
                    modes.append(mode)
            announcements.append(LBAnnouncement(ip=ip, service=f"{svc.namespace}/{svc.name}",
                                                pool=pool.name if pool else None,
                                                mode="+".join(modes) or "none", pinned=svc.pinned_ip == ip))
    hostname = "kubernetes.io/hostname"
    per_node = len(inv.metallb_peers) > 1 and all(
        any(hostname in s for s in p.node_selectors) for p in inv.metallb_peers)
    return MetalLBState(present=present, pools=inv.metallb_pools, peers=inv.metallb_peers,
                        advertisements=inv.metallb_advertisements, announcements=tuple(announcements),
                        per_node_peers=per_node)


def cilium_api(served: dict[str, tuple[str, ...]]) -> CiliumBgpApi:
    def versions(kind: str) -> tuple[str, ...]:
        return served.get(CILIUM_BGP_CRDS[kind], ())

    bgp_v2 = None
    incomplete: tuple[str, ...] = ()
    for version in ("v2", "v2alpha1"):
        have = [k for k in BGP_V2_KINDS if version in versions(k)]
        if "cluster_config" in have:
            bgp_v2 = f"cilium.io/{version}"
            incomplete = tuple(k for k in BGP_V2_KINDS if k not in have)
            break

    def newest(kind: str) -> str | None:
        return next((f"cilium.io/{v}" for v in ("v2", "v2alpha1") if v in versions(kind)), None)
    return CiliumBgpApi(bgp_v2=bgp_v2, peering_policy=newest("peering_policy"),
                        lb_ip_pool=newest("lb_ip_pool"), l2_policy=newest("l2_policy"), incomplete=incomplete)


def detect(inv: RoutingInventory) -> RoutingDetection:
    """What the inventory says about routing today."""
    backend = calico_backend(inv)
    cfg = inv.bgp_config
    mesh = backend == "bird" and (cfg is None or cfg.mesh_enabled is None or cfg.mesh_enabled)
    reflectors = {n.name for n in inv.nodes if n.route_reflector_cluster_id}
    pools = tuple(PoolRouting(p.name, p.cidr, pool_mode(p.vxlan_mode, p.ipip_mode, backend))
                  for p in inv.pools if not p.disabled)
    routed = any(p.mode.needs_routes for p in pools)
    nodes = tuple(NodeRouting(n.name, n.pod_cidrs,
                              _announcer(n, inv, backend, mesh, reflectors) if routed else Announcer.OVERLAY,
                              route_reflector=n.name in reflectors)
                  for n in inv.nodes)
    notes: list[str] = []
    if routed and backend != "bird" and not inv.node_init:
        notes.append("Calico programs no routes between nodes and no node-init DaemonSet was found: "
                     "whatever announces the node pod CIDRs runs outside the cluster's objects")
    if backend == "none" and inv.calico_cni_ipam not in (None, "host-local"):
        notes.append(f"Calico backend none with CNI IPAM {inv.calico_cni_ipam}: pod addresses do not follow "
                     "node.spec.podCIDR, so a node router announcing podCIDRs would not cover them")
    calico = CalicoRouting(
        backend=backend, as_number=(cfg.as_number if cfg and cfg.as_number else DEFAULT_ASN), mesh=mesh,
        reflectors=tuple(sorted(reflectors)), peers=inv.bgp_peers,
        advertised_service_cidrs=(cfg.service_cluster_ips + cfg.service_external_ips + cfg.service_lb_ips)
        if cfg else ())
    return RoutingDetection(calico=calico, pools=pools, nodes=nodes, metallb=_metallb(inv),
                            cilium=cilium_api(inv.cilium_served), notes=tuple(notes))
