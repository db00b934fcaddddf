"""What a routing hand-over writes: Calico's and MetalLB's announcements as Cilium resources.

``engine/handover_translate.py`` derives a ``HandoverResources`` from the routing detection;
``engine/handover_objects.py`` renders it as Kubernetes objects at the served API version.
Everything is gated by labels so that the hand-over can move one node, and one Service, at a
time: a ``CiliumBGPClusterConfig`` selects only nodes labelled ``NODE_LABEL``, the Service
advertisement and the LB IPAM pools only Services labelled ``SERVICE_LABEL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.model.routing import RoutingInventory

#: Node label that turns Cilium's BGP control plane on for that node (value ``cilium``).
NODE_LABEL = "migrator.io/bgp"
#: Service label that moves a LoadBalancer Service from MetalLB to Cilium (value ``cilium``).
SERVICE_LABEL = "migrator.io/lb"
HANDED = "cilium"
#: The annotation a patched object carries while handed over: the merge patch (JSON) that takes it
#: back, computed from the object before the hand-over's first write (and, for a Service, its IPs).
UNDO_ANNOTATION = "migrator.io/handover-undo"
#: The label CiliumBGPPeerConfigs use to pick the hand-over's advertisements.
ADVERTISE_LABEL = "migrator.io/advertise"
#: Cilium LB IPAM's annotation requesting specific IPs (Documentation/network/lb-ipam.rst).
LBIPAM_IPS = "lbipam.cilium.io/ips"
METALLB_ANNOTATIONS = ("metallb.universe.tf/address-pool", "metallb.universe.tf/ip-allocated-from-pool",
                       "metallb.universe.tf/loadBalancerIPs", "metallb.io/address-pool",
                       "metallb.io/ip-allocated-from-pool", "metallb.io/loadBalancerIPs")


@dataclass(frozen=True)
class BgpPeer:
    name: str
    address: str
    asn: int
    peer_config: str


@dataclass(frozen=True)
class ClusterConfig:
    """A CiliumBGPClusterConfig: one BGP instance on the nodes it selects."""

    name: str
    node_selector: tuple[tuple[str, str], ...]       # matchLabels, always with NODE_LABEL
    instance: str
    local_asn: int
    peers: tuple[BgpPeer, ...]


@dataclass(frozen=True)
class Advertisement:
    """A CiliumBGPAdvertisement entry set: the node's pod CIDR and/or Service addresses."""

    name: str
    pod_cidr: bool
    service_addresses: tuple[str, ...] = ()          # LoadBalancerIP | ClusterIP | ExternalIP
    service_selector: tuple[tuple[str, str], ...] = ()   # matchLabels
    communities: tuple[str, ...] = ()


@dataclass(frozen=True)
class LBPool:
    """A CiliumLoadBalancerIPPool from a MetalLB IPAddressPool."""

    name: str
    source: str                                      # namespace/name of the IPAddressPool
    cidrs: tuple[str, ...] = ()
    ranges: tuple[tuple[str, str], ...] = ()         # (start, stop)


@dataclass(frozen=True)
class ServiceSwitch:
    """How one LoadBalancer Service moves to Cilium without changing its IP."""

    namespace: str
    name: str
    ips: tuple[str, ...]
    pinned: bool                                     # spec.loadBalancerIP already pins the IP
    annotations: tuple[tuple[str, str], ...]         # to set
    remove_annotations: tuple[str, ...]


@dataclass(frozen=True)
class HandoverResources:
    """Everything the hand-over writes, or why it cannot (``blockers``)."""

    bgp_api: str | None                              # cilium.io/v2 | cilium.io/v2alpha1
    lb_api: str | None
    cluster_configs: tuple[ClusterConfig, ...] = ()
    peer_config: str = "migrator-handover"
    advertisements: tuple[Advertisement, ...] = ()
    lb_pools: tuple[LBPool, ...] = ()
    services: tuple[ServiceSwitch, ...] = ()
    #: MetalLB IPAddressPools (namespace, name) that stop allocating to Services labelled SERVICE_LABEL
    metallb_pools: tuple[tuple[str, str], ...] = ()
    #: MetalLB BGPPeers (namespace, name) that leave nodes labelled NODE_LABEL: Cilium peers the same
    #: router from the same node address there, and a router keys neighbours by source address
    metallb_peers_yield: tuple[tuple[str, str], ...] = ()
    #: Calico BGPPeers (names) whose router Cilium peers from the node's address too: BIRD leaves
    #: nodes labelled NODE_LABEL (their ``nodeSelector`` gains ``!has(NODE_LABEL)``)
    calico_peers_yield: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeerState:
    """One peer of a node's Cilium BGP instance as the agent reports it (``CiliumBGPNodeConfig``
    ``status.bgpInstances[].peers[]``)."""

    address: str
    state: str                        # peeringState: established, active, idle... ("" unreported)
    advertised: int | None = None     # routeCount advertised for ipv4/unicast


#: (plural, namespace, name) of an object the hand-over reads or writes ("" for cluster-scoped).
ObjectKey = tuple[str, str, str]


@dataclass(frozen=True)
class HandoverState:
    """What the hand-over observes each turn: the routing inventory it translates, the manifests of
    the objects its steps write (MetalLB IPAddressPools and BGPPeers, LoadBalancer Services, the
    Cilium BGP and LB IPAM objects), and each node's Cilium BGP sessions by node name (a node
    without a ``CiliumBGPNodeConfig`` is absent)."""

    inventory: RoutingInventory
    objects: Mapping[ObjectKey, Mapping[str, Any]] = field(default_factory=dict)
    bgp_nodes: Mapping[str, tuple[PeerState, ...]] = field(default_factory=dict)
    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
