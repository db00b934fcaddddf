"""Tunable behaviour of the simulated cluster: latencies, capacities and address plans.

One frozen dataclass, passed to every simulated component, so that a scenario or a
benchmark states in one place how fast and how big its cluster is. Latencies are in
simulated seconds (see ``World.time_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Latencies:
    """How long simulated components take, in simulated seconds."""

    schedule: float = 0.0          # scheduler binding a pending pod
    sandbox: float = 0.05          # kubelet: bound pod -> sandbox with an IP (Running)
    ready: float = 0.1             # kubelet: Running -> Ready (readiness probe passes)
    terminate: float = 0.05        # kubelet: deletionTimestamp -> pod gone (grace elapsed)
    agent_start: float = 0.2       # cilium agent: container start -> Ready (CNI file written)
    calico_start: float = 0.1      # calico-node: container start -> Ready
    node_action: float = 0.1       # node-local action pod: start -> Succeeded
    controller: float = 0.0        # ReplicaSet/DaemonSet reaction to a change


@dataclass(frozen=True)
class SimConfig:
    """Shape and behaviour of one simulated cluster."""

    nodes: int = 6
    control_plane_nodes: int = 1
    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c")
    max_pods_per_node: int = 110
    node_cidr: str = "172.18.0.0/16"          # node InternalIPs
    service_cidr: str = "10.96.0.0/12"        # ClusterIPs; kube-dns is .10
    calico_pool: str = "192.168.0.0/16"       # Calico IPPool (IPAM blocks of /26 per node)
    calico_block_size: int = 26
    calico_vxlan_port: int = 4789             # FelixConfiguration vxlanPort
    cilium_pool: str = "10.245.0.0/16"        # cluster-pool-ipv4-cidr
    cilium_mask_size: int = 24                # per-node podCIDR from the cluster pool
    cilium_tunnel_port: int = 8473
    lb_pool: str = "203.0.113.0/28"           # MetalLB IPAddressPool of routed scenarios
    # prefixes the fabric's leaf switches accept from a node's router (metal-stack's announceable
    # CIDRs plus the project's IPs); empty accepts everything
    fabric_announceable: tuple[str, ...] = ()
    kubernetes_version: str = "v1.32.4"
    # "spread": rank like kube-scheduler's default scoring (fewest pods of the owner, then fewest
    # pods); "random": uniform over the feasible nodes (seeded), the model under which sequential
    # drains restart a pod about 1.7 times.
    scheduler_scoring: Literal["spread", "random"] = "spread"
    # shop/web runs one replica per node; its PodDisruptionBudget's maxUnavailable (an int or a
    # percentage) caps how many nodes in flight can move a web pod at once
    web_max_unavailable: int | str = 1
    latencies: Latencies = field(default_factory=Latencies)
