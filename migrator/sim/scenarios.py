"""Named scenarios: the healthy cluster and the field pitfalls, reproducible from a seed.

A scenario is the default cluster with one thing changed, at one of three moments:

* ``configure`` edits the ``SimConfig`` before anything is built (ports, pools);
* ``shape`` changes what the builder installs (Calico autodetection, cilium-config keys,
  a PDB that allows no disruption), and ``served_versions`` which versions of a CRD the API
  serves (an older Cilium's: ``registry.serve_versions``);
* ``inject`` breaks something once the healthy cluster has converged (an agent crash
  loop, a NotReady node), choosing its victim with the seeded generator, and returns the
  details (``{"node": "node-3"}``) so tests and demos know where to look.

The pitfall numbers refer to the migration reference's table of known pitfalls.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.sim.builder import ClusterShape, node_names
from migrator.sim.config import SimConfig
from migrator.sim.routed import RoutedShape

Inject = Callable[[Any, random.Random], dict[str, str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    shape: ClusterShape = field(default_factory=ClusterShape)
    configure: Callable[[SimConfig], SimConfig] | None = None
    #: CRD name -> the versions it serves, storage first (CRDs not named: as ``crds/`` declares)
    served_versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inject: Inject | None = None

    def apply_config(self, config: SimConfig) -> SimConfig:
        return self.configure(config) if self.configure else config


def _pick_worker(sim: Any, rng: random.Random) -> str:
    _, workers = node_names(sim.config)
    return rng.choice(workers or node_names(sim.config)[0])


def _crash_cilium(sim: Any, rng: random.Random) -> dict[str, str]:
    node = _pick_worker(sim, rng)
    sim.fleet.crash_agent(node, agent="cilium", crashloop=True)
    return {"node": node, "agent": "cilium"}


def _node_not_ready(sim: Any, rng: random.Random) -> dict[str, str]:
    node = _pick_worker(sim, rng)
    sim.fleet.set_node_ready(node, False)
    return {"node": node}


def _replace(**changes: Any) -> Callable[[SimConfig], SimConfig]:
    return lambda config: dataclasses.replace(config, **changes)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("default", "Calico VXLAN cluster with Cilium installed latent per the migration guide"),
    Scenario("vxlan-port-clash", "pitfall 2: Cilium tunnel-port equals Calico's Felix vxlanPort (4789)",
             configure=_replace(cilium_tunnel_port=4789, calico_vxlan_port=4789)),
    Scenario("cidr-overlap", "pitfall 3: the Cilium cluster pool overlaps the Calico IPPool",
             configure=_replace(cilium_pool="192.168.128.0/17")),
    Scenario("calico-first-found", "pitfall 1: calico-node autodetects its address first-found (picks cilium_host)",
             shape=ClusterShape(ip_autodetection_method="first-found")),
    Scenario("no-legacy-routing", "pitfall 9: enable-host-legacy-routing is false, overlays cannot reach each other",
             shape=ClusterShape(cilium_config_overrides={"enable-host-legacy-routing": "false"})),
    Scenario("pdb-blocked", "pitfall 16: the shop/api PDB requires every replica (minAvailable = replicas)",
             shape=ClusterShape(pdb_blocked=True)),
    Scenario("cilium-crashloop", "the cilium agent crash-loops on one worker (details name it)",
             inject=_crash_cilium),
    Scenario("node-notready", "one worker is NotReady (details name it)", inject=_node_not_ready),
    Scenario("calico-policies", "tenant namespaces tenant-a, tenant-b, shared (label tenant) with netexec "
             "app=server pods on 80/81 TCP+UDP under Calico tiers, ordered GlobalNetworkPolicies with Pass, "
             "a deny-before-allow pair, a GlobalNetworkSet egress rule and default-deny NetworkPolicies "
             "(see migrator.sim.tenants for the expected verdicts)",
             shape=ClusterShape(tenants=True)),
    Scenario("calico-policies-untranslatable", "calico-policies plus a doNotTrack GlobalNetworkPolicy",
             shape=ClusterShape(tenants=True, do_not_track=True)),
    Scenario("cnc-v2alpha1-only", "pitfall 7: only cilium.io/v2alpha1 CiliumNodeConfig is served (older Cilium)",
             served_versions={"ciliumnodeconfigs.cilium.io": ("v2alpha1",)}),
)}


# -- routed clusters: Calico without an overlay (``routed.py``, ``routing.py``) -----------------
ROUTED_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("calico-bgp", "Calico BGP without encapsulation (BIRD node-to-node mesh, pool mode Never), "
                           "MetalLB in BGP mode peering a ToR router",
             shape=ClusterShape(routed=RoutedShape(backend="bird"))),
    Scenario("metal-stack", "metal-stack: Calico backend none with host-local IPAM from node.spec.podCIDR, "
                            "node-init routes on lo announced by each node's FRR through a fabric filter "
                            "(announceable 10.240.0.0/12), MetalLB to the local FRR, a pinned loadBalancerIP",
             shape=ClusterShape(routed=RoutedShape(backend="none", node_init=True, pinned_lb_ip=True)),
             configure=_replace(calico_pool="10.240.0.0/13", cilium_pool="10.250.0.0/16",
                                fabric_announceable=("10.240.0.0/12", "203.0.113.0/28"))),
)
#: Cilium 1.16 and 1.17 serve the BGPv2 kinds and CiliumLoadBalancerIPPool at cilium.io/v2alpha1 only:
#: their CRDs sat in crds/v2alpha1/ until 1.18 moved them to crds/v2/ (v2 stored, v2alpha1 still served).
#: The v2alpha1 schemas served are those of the 1.18+ files in crds/ (SOURCES.md).
CILIUM_1_17_BGP: dict[str, tuple[str, ...]] = {f"{plural}.cilium.io": ("v2alpha1",) for plural in (
    "ciliumbgpclusterconfigs", "ciliumbgppeerconfigs", "ciliumbgpadvertisements", "ciliumbgpnodeconfigs",
    "ciliumbgpnodeconfigoverrides", "ciliumloadbalancerippools")}
ROUTED_SCENARIOS += (
    Scenario("calico-bgp-tor", "Calico BGP without encapsulation, node-to-node mesh off: every node's BIRD "
                               "peers the ToR router (a global BGPPeer); no MetalLB",
             shape=ClusterShape(routed=RoutedShape(backend="bird", mesh=False, tor_peer=True, metallb=False))),
    Scenario("calico-bgp-cilium-1.17", "calico-bgp with Cilium 1.17's API: the BGPv2 kinds and "
                                       "CiliumLoadBalancerIPPool served at cilium.io/v2alpha1 only",
             shape=ClusterShape(routed=RoutedShape(backend="bird")), served_versions=CILIUM_1_17_BGP),
)
SCENARIOS.update({s.name: s for s in ROUTED_SCENARIOS})


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def describe() -> list[tuple[str, str]]:
    """``(name, description)`` for every scenario, in registry order."""
    return [(s.name, s.description) for s in SCENARIOS.values()]
