"""How the cluster routes pod and LoadBalancer traffic today: what is read, and what it means.

Two layers, both frozen and free of raw Kubernetes dicts:

* ``RoutingInventory`` is what ``ClusterPort.read_routing_inventory`` reads (Calico's IPPools,
  BGPConfiguration, BGPPeers and backend, node pod CIDRs, MetalLB's pools, peers and
  advertisements, LoadBalancer Services, and which Cilium BGP / LB IPAM API versions are served);
* ``RoutingDetection`` is what ``engine/routing.py detect`` concludes from it: each pool's and
  node's routing mode, who announces each node's pod prefix, what MetalLB announces, and which
  Cilium BGP control-plane API a later hand-over would have to write.

Preflight and the forecast report the detection; the routing hand-over and the MetalLB → LB IPAM
steps consume it (they need the ASN, the peers, the announced prefixes and the served API).
What no API object shows — the routes a router actually learned, a leaf switch's prefix filter —
is not in here: the plan's ``routing`` section supplies it and probes confirm it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# --------------------------------------------------------------------------------------------
# What is read
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolInfo:
    """A Calico IPPool's routing fields (crd.projectcalico.org/v1)."""

    name: str
    cidr: str
    vxlan_mode: str = "Never"      # Never | Always | CrossSubnet
    ipip_mode: str = "Never"
    disabled: bool = False
    node_selector: str = "all()"


@dataclass(frozen=True)
class CalicoBgpConfig:
    """The ``default`` BGPConfiguration (absent: Calico's defaults, mesh on, AS 64512)."""

    as_number: int | None = None
    mesh_enabled: bool | None = None                  # nodeToNodeMeshEnabled; None = default (on)
    service_cluster_ips: tuple[str, ...] = ()          # serviceClusterIPs advertised
    service_external_ips: tuple[str, ...] = ()
    service_lb_ips: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()                  # "name=value" of spec.communities
    prefix_advertisements: tuple[str, ...] = ()        # cidrs of spec.prefixAdvertisements


@dataclass(frozen=True)
class CalicoBgpPeer:
    """A Calico BGPPeer."""

    name: str
    node: str | None = None
    node_selector: str | None = None
    peer_ip: str | None = None
    peer_selector: str | None = None
    as_number: int | None = None


@dataclass(frozen=True)
class RoutingNode:
    """A node as routing sees it."""

    name: str
    internal_ip: str | None = None
    pod_cidrs: tuple[str, ...] = ()                    # spec.podCIDRs (or spec.podCIDR)
    labels: dict[str, str] = field(default_factory=dict)
    route_reflector_cluster_id: str | None = None      # projectcalico.org/RouteReflectorClusterID


@dataclass(frozen=True)
class MetalLBPool:
    """A MetalLB IPAddressPool."""

    namespace: str
    name: str
    addresses: tuple[str, ...]
    auto_assign: bool = True


@dataclass(frozen=True)
class MetalLBPeer:
    """A MetalLB BGPPeer (metallb.io/v1beta2 or v1beta1)."""

    namespace: str
    name: str
    my_asn: int | None
    peer_asn: int | None
    peer_address: str
    node_selectors: tuple[dict[str, str], ...] = ()    # matchLabels of spec.nodeSelectors


@dataclass(frozen=True)
class MetalLBAdvertisement:
    """A MetalLB BGPAdvertisement or L2Advertisement."""

    kind: str                      # BGPAdvertisement | L2Advertisement
    namespace: str
    name: str
    pools: tuple[str, ...] = ()    # spec.ipAddressPools; empty with no selector = every pool
    pool_selector: bool = False    # spec.ipAddressPoolSelectors is set (not resolved here)
    communities: tuple[str, ...] = ()
    aggregation_length: int | None = None


@dataclass(frozen=True)
class LoadBalancerService:
    """A Service of type LoadBalancer."""

    namespace: str
    name: str
    ips: tuple[str, ...]                         # status.loadBalancer.ingress[].ip
    pinned_ip: str | None = None                 # spec.loadBalancerIP
    requested_pool: str | None = None            # metallb.universe.tf/address-pool annotation
    load_balancer_class: str | None = None


#: The Cilium CRDs whose served versions matter, by name.
CILIUM_BGP_CRDS = {
    "cluster_config": "ciliumbgpclusterconfigs.cilium.io",
    "peer_config": "ciliumbgppeerconfigs.cilium.io",
    "advertisement": "ciliumbgpadvertisements.cilium.io",
    "node_config_override": "ciliumbgpnodeconfigoverrides.cilium.io",
    "peering_policy": "ciliumbgppeeringpolicies.cilium.io",
    "lb_ip_pool": "ciliumloadbalancerippools.cilium.io",
    "l2_policy": "ciliuml2announcementpolicies.cilium.io",
}


@dataclass(frozen=True)
class RoutingInventory:
    """Everything detection reads, once."""

    calico_backend: str | None = None       # calico-node CALICO_NETWORKING_BACKEND (None: not set)
    calico_config_backend: str | None = None  # calico-config ConfigMap calico_backend
    calico_cni_ipam: str | None = None      # the ipam type in calico-config cni_network_config
    pools: tuple[PoolInfo, ...] = ()
    bgp_config: CalicoBgpConfig | None = None
    bgp_peers: tuple[CalicoBgpPeer, ...] = ()
    nodes: tuple[RoutingNode, ...] = ()
    node_init: bool = False                 # a DaemonSet named node-init runs (metal-stack)
    metallb_pools: tuple[MetalLBPool, ...] = ()
    metallb_peers: tuple[MetalLBPeer, ...] = ()
    metallb_advertisements: tuple[MetalLBAdvertisement, ...] = ()
    lb_services: tuple[LoadBalancerService, ...] = ()
    cilium_served: dict[str, tuple[str, ...]] = field(default_factory=dict)   # CRD name -> versions


# --------------------------------------------------------------------------------------------
# What it means
# --------------------------------------------------------------------------------------------

class PoolMode(StrEnum):
    """How Calico carries a pool's traffic between nodes."""

    VXLAN = "vxlan"
    VXLAN_CROSS_SUBNET = "vxlan-cross-subnet"
    IPIP = "ipip"
    IPIP_CROSS_SUBNET = "ipip-cross-subnet"
    BGP = "bgp"                  # no encapsulation, routes from BIRD
    NODE_ROUTED = "node-routed"  # no encapsulation, no Calico routing: something else announces

    @property
    def encapsulated(self) -> bool:
        return self in (PoolMode.VXLAN, PoolMode.IPIP, PoolMode.VXLAN_CROSS_SUBNET, PoolMode.IPIP_CROSS_SUBNET)

    @property
    def needs_routes(self) -> bool:
        """Some traffic of the pool crosses nodes unencapsulated on routes someone must announce
        (IPIP CrossSubnet: BIRD's, within a subnet; VXLAN CrossSubnet's same-subnet routes are
        Felix's own, announced by nobody)."""
        return self in (PoolMode.BGP, PoolMode.NODE_ROUTED, PoolMode.IPIP_CROSS_SUBNET)


@dataclass(frozen=True)
class PoolRouting:
    name: str
    cidr: str
    mode: PoolMode


class Announcer(StrEnum):
    """Who carries a node's Calico pod prefix to the other nodes."""

    OVERLAY = "overlay"                  # nobody needs to: Calico's tunnel
    BIRD_MESH = "bird-mesh"
    ROUTE_REFLECTOR = "route-reflector"  # the node is a reflector or reaches one
    BGP_PEER = "bgp-peer"                # an explicit BGPPeer (e.g. a ToR router)
    NODE_ROUTER = "node-router"          # backend none: a route on the node announced outside Calico
    NOBODY = "nobody"


@dataclass(frozen=True)
class NodeRouting:
    name: str
    pod_cidrs: tuple[str, ...]
    announcer: Announcer
    route_reflector: bool = False


@dataclass(frozen=True)
class CalicoRouting:
    backend: str                          # bird | vxlan | none
    as_number: int                        # 64512 when no BGPConfiguration sets it
    mesh: bool
    reflectors: tuple[str, ...] = ()
    peers: tuple[CalicoBgpPeer, ...] = ()
    advertised_service_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LBAnnouncement:
    """A LoadBalancer IP and how MetalLB announces it (bgp, l2, or none)."""

    ip: str
    service: str                # namespace/name
    pool: str | None
    mode: str                   # bgp | l2 | bgp+l2 | none
    pinned: bool


@dataclass(frozen=True)
class MetalLBState:
    present: bool
    pools: tuple[MetalLBPool, ...] = ()
    peers: tuple[MetalLBPeer, ...] = ()
    advertisements: tuple[MetalLBAdvertisement, ...] = ()
    announcements: tuple[LBAnnouncement, ...] = ()
    per_node_peers: bool = False         # one BGPPeer per node (metal-ccm's node-local FRR peering)


@dataclass(frozen=True)
class CiliumBgpApi:
    """The Cilium BGP control plane and LB IPAM API the cluster serves."""

    bgp_v2: str | None = None            # "cilium.io/v2" | "cilium.io/v2alpha1" | None
    peering_policy: str | None = None    # BGPv1 CiliumBGPPeeringPolicy version (Cilium ≤ 1.18)
    lb_ip_pool: str | None = None
    l2_policy: str | None = None
    incomplete: tuple[str, ...] = ()     # BGPv2 kinds missing at the chosen version


@dataclass(frozen=True)
class RoutingDetection:
    """How the cluster routes today (pure result; ``engine/routing.py``)."""

    calico: CalicoRouting
    pools: tuple[PoolRouting, ...]
    nodes: tuple[NodeRouting, ...]
    metallb: MetalLBState
    cilium: CiliumBgpApi
    notes: tuple[str, ...] = ()

    @property
    def routed(self) -> bool:
        """Some enabled pool's traffic crosses nodes without encapsulation."""
        return any(p.mode.needs_routes for p in self.pools)

    @property
    def node_routed(self) -> bool:
        return any(p.mode is PoolMode.NODE_ROUTED for p in self.pools)

    def lines(self) -> list[str]:
        """A short human summary (preflight info and the forecast)."""
        c = self.calico
        out = [f"Calico backend {c.backend}"
               + (f", AS {c.as_number}, node-to-node mesh {'on' if c.mesh else 'off'}" if c.backend == "bird" else "")
               + (f", route reflectors {', '.join(c.reflectors)}" if c.reflectors else "")
               + (f", {len(c.peers)} BGPPeer(s)" if c.peers else "")]
        out += [f"IPPool {p.name} ({p.cidr}): {p.mode.value}" for p in self.pools]
        by: dict[str, list[str]] = {}
        for n in self.nodes:
            by.setdefault(n.announcer.value, []).append(n.name)
        out += [f"pod prefixes announced by {who}: {len(names)} node(s)" for who, names in sorted(by.items())]
        m = self.metallb
        if m.present:
            out.append(f"MetalLB: {len(m.pools)} pool(s), {len(m.peers)} BGP peer(s)"
                       + (" (one per node)" if m.per_node_peers else "")
                       + f", {len(m.announcements)} LoadBalancer IP(s): "
                       + ", ".join(f"{a.ip} {a.mode}{' pinned' if a.pinned else ''}" for a in m.announcements[:5]))
        api = self.cilium
        out.append("Cilium BGP API: " + (api.bgp_v2 or "BGPv2 not served")
                   + (f", CiliumBGPPeeringPolicy {api.peering_policy}" if api.peering_policy else "")
                   + f"; LB IPAM: {api.lb_ip_pool or 'not served'}"
                   + (f", L2 announcements {api.l2_policy}" if api.l2_policy else ""))
        out += self.notes
        return out
