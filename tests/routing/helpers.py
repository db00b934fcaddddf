"""What the routing tests share: reading a simulated cluster's routing inventory as the tool does,
and checking that Cilium's BGP control plane announces what the hand-over gave it."""

from __future__ import annotations

from pathlib import Path

from migrator.cluster.kube import KubeCluster
from migrator.model.routing import RoutingInventory


def read_inventory(sim, where: Path) -> RoutingInventory:
    """The routing inventory through the API server, as preflight and the hand-over read it."""
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(where)))
    try:
        return port.read_routing_inventory()
    finally:
        port.close()


def assert_cilium_announces(sim, nodes: list[str], lb_ips: list[str]) -> None:
    """Every node's Cilium session Established with its pod CIDR accepted, every LoadBalancer IP
    announced by Cilium, and MetalLB announcing nothing."""
    with sim.store.lock:
        routing = sim.fleet.network.routing
        sessions = [s for s in routing.bgp.sessions() if s.speaker == "cilium"]
        cilium = routing.cilium_announcements()
        metallb = [a for a in routing.lb_announcements() if a.accepted]
    assert sorted(s.node for s in sessions if s.established) == sorted(nodes)
    pod_cidrs = {str(sim.fleet.cilium_ipam.pod_cidrs[n].cidr): n for n in nodes}
    assert {(a.prefix, a.node) for a in cilium if a.accepted and a.prefix in pod_cidrs} == set(pod_cidrs.items())
    assert {a.prefix for a in cilium if a.accepted and a.prefix not in pod_cidrs} == {f"{ip}/32" for ip in lb_ips}
    assert metallb == []
