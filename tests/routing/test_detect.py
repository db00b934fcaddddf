"""Routing detection: table-driven over hand-built inventories (pure), then over the simulated
scenarios read through ``KubeCluster`` over HTTP.

Expected values come from Calico's, MetalLB's and Cilium's documented semantics (see the
docstring of ``engine/routing.py``), not from the detector's output.
"""

from __future__ import annotations

import pytest

from migrator.engine.routing import detect
from migrator.model.routing import (
    CILIUM_BGP_CRDS,
    Announcer,
    CalicoBgpConfig,
    CalicoBgpPeer,
    LoadBalancerService,
    MetalLBAdvertisement,
    MetalLBPeer,
    MetalLBPool,
    PoolInfo,
    PoolMode,
    RoutingInventory,
    RoutingNode,
)
from tests.conftest import fast_config
from tests.routing.helpers import read_inventory

NODES = (RoutingNode("n1", "10.0.0.1", ("10.240.0.0/24",), {"route-reflector": "true"}, "244.0.0.1"),
         RoutingNode("n2", "10.0.0.2", ("10.240.1.0/24",)),
         RoutingNode("n3", "10.0.0.3", ()))


def inv(**changes) -> RoutingInventory:
    base = dict(calico_backend="bird", pools=(PoolInfo("p", "192.168.0.0/16"),), nodes=NODES)
    base.update(changes)
    return RoutingInventory(**base)


@pytest.mark.parametrize(("inventory", "backend", "mode", "announcers"), [
    pytest.param(inv(calico_backend="vxlan", pools=(PoolInfo("p", "192.168.0.0/16", vxlan_mode="Always"),)),
                 "vxlan", PoolMode.VXLAN, {Announcer.OVERLAY}, id="vxlan"),
    pytest.param(inv(pools=(PoolInfo("p", "192.168.0.0/16", ipip_mode="Always"),)),
                 "bird", PoolMode.IPIP, {Announcer.OVERLAY}, id="ipip"),
    pytest.param(inv(pools=(PoolInfo("p", "192.168.0.0/16", ipip_mode="CrossSubnet"),)),
                 "bird", PoolMode.IPIP_CROSS_SUBNET, {Announcer.BIRD_MESH}, id="ipip-cross-subnet-needs-bird"),
    pytest.param(inv(calico_backend="vxlan", pools=(PoolInfo("p", "192.168.0.0/16", vxlan_mode="CrossSubnet"),)),
                 "vxlan", PoolMode.VXLAN_CROSS_SUBNET, {Announcer.OVERLAY}, id="vxlan-cross-subnet-felix-routes"),
    pytest.param(inv(), "bird", PoolMode.BGP, {Announcer.BIRD_MESH}, id="bgp-mesh-by-default"),
    pytest.param(inv(calico_backend=None, calico_config_backend=None), "bird", PoolMode.BGP, {Announcer.BIRD_MESH},
                 id="backend-unset-is-bird"),
    pytest.param(inv(bgp_config=CalicoBgpConfig(mesh_enabled=False)), "bird", PoolMode.BGP,
                 {Announcer.ROUTE_REFLECTOR, Announcer.NOBODY}, id="mesh-off-no-peers"),
    pytest.param(inv(bgp_config=CalicoBgpConfig(mesh_enabled=False),
                     bgp_peers=(CalicoBgpPeer("rr", node_selector="all()", peer_selector="has(route-reflector)"),)),
                 "bird", PoolMode.BGP, {Announcer.ROUTE_REFLECTOR}, id="route-reflectors"),
    pytest.param(inv(bgp_config=CalicoBgpConfig(mesh_enabled=False),
                     bgp_peers=(CalicoBgpPeer("tor", peer_ip="10.0.0.254", as_number=65000),)),
                 "bird", PoolMode.BGP, {Announcer.ROUTE_REFLECTOR, Announcer.BGP_PEER}, id="tor-peer"),
    pytest.param(inv(calico_backend=None, calico_config_backend="none"), "none", PoolMode.NODE_ROUTED,
                 {Announcer.NODE_ROUTER, Announcer.NOBODY}, id="backend-none-from-configmap"),
])
def test_calico_routing_per_pool_and_node(inventory, backend, mode, announcers) -> None:
    d = detect(inventory)
    assert d.calico.backend == backend
    assert [p.mode for p in d.pools] == [mode]
    assert {n.announcer for n in d.nodes} == announcers
    assert d.routed is mode.needs_routes


def test_who_announces_which_node() -> None:
    peers = (CalicoBgpPeer("tor", node="n2", peer_ip="10.0.0.254"),)
    d = detect(inv(bgp_config=CalicoBgpConfig(as_number=65010, mesh_enabled=False), bgp_peers=peers))
    assert {n.name: n.announcer for n in d.nodes} == {
        "n1": Announcer.ROUTE_REFLECTOR, "n2": Announcer.BGP_PEER, "n3": Announcer.NOBODY}
    assert d.calico.as_number == 65010 and not d.calico.mesh and d.calico.reflectors == ("n1",)
    node_routed = detect(inv(calico_backend="none"))
    assert {n.name: n.announcer for n in node_routed.nodes} == {
        "n1": Announcer.NODE_ROUTER, "n2": Announcer.NODE_ROUTER, "n3": Announcer.NOBODY}
    assert node_routed.notes and "node-init" in node_routed.notes[0]     # nothing in the cluster announces
    assert not detect(inv(calico_backend="none", node_init=True, calico_cni_ipam="host-local")).notes
    assert "calico-ipam" in detect(inv(calico_backend="none", node_init=True, calico_cni_ipam="calico-ipam")).notes[0]


def test_disabled_pools_are_ignored() -> None:
    d = detect(inv(pools=(PoolInfo("p", "192.168.0.0/16", vxlan_mode="Always"),
                          PoolInfo("no-nat", "10.245.0.0/16", disabled=True))))
    assert [p.name for p in d.pools] == ["p"] and not d.routed


def test_what_metallb_announces() -> None:
    pools = (MetalLBPool("metallb-system", "bgp", ("203.0.113.0/28",)),
             MetalLBPool("metallb-system", "l2", ("198.51.100.10-198.51.100.20",)),
             MetalLBPool("metallb-system", "both", ("192.0.2.0/28",)))
    ads = (MetalLBAdvertisement("BGPAdvertisement", "metallb-system", "b", pools=("bgp", "both")),
           MetalLBAdvertisement("L2Advertisement", "metallb-system", "l", pools=("l2", "both")))
    services = (LoadBalancerService("shop", "a", ("203.0.113.1",), pinned_ip="203.0.113.1"),
                LoadBalancerService("shop", "b", ("198.51.100.15",)),
                LoadBalancerService("shop", "c", ("192.0.2.3",)),
                LoadBalancerService("shop", "d", ("8.8.8.8",)),
                LoadBalancerService("shop", "e", ("203.0.113.2",), load_balancer_class="io.cilium/bgp-control-plane"),
                LoadBalancerService("shop", "f", (), pinned_ip="203.0.113.3"))
    peers = tuple(MetalLBPeer("metallb-system", f"peer-{n}", 42, 42, ip, ({"kubernetes.io/hostname": n},))
                  for n, ip in (("n1", "10.0.0.1"), ("n2", "10.0.0.2")))
    m = detect(inv(metallb_pools=pools, metallb_advertisements=ads, lb_services=services,
                   metallb_peers=peers)).metallb
    assert m.present and m.per_node_peers
    got = {a.service: (a.ip, a.pool, a.mode, a.pinned) for a in m.announcements}
    assert got == {"shop/a": ("203.0.113.1", "bgp", "bgp", True),
                   "shop/b": ("198.51.100.15", "l2", "l2", False),
                   "shop/c": ("192.0.2.3", "both", "bgp+l2", False),
                   "shop/d": ("8.8.8.8", None, "none", False),
                   "shop/f": ("203.0.113.3", "bgp", "bgp", True)}       # pinned, not yet assigned
    every_pool = (MetalLBAdvertisement("BGPAdvertisement", "metallb-system", "all"),)
    assert detect(inv(metallb_pools=pools[1:2], metallb_advertisements=every_pool,
                      lb_services=services[1:2])).metallb.announcements[0].mode == "bgp"
    assert not detect(inv()).metallb.present


def served(**kinds: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {CILIUM_BGP_CRDS[k]: v for k, v in kinds.items()}


BGP_V2 = ("cluster_config", "peer_config", "advertisement", "node_config_override")


@pytest.mark.parametrize(("versions", "bgp_v2", "v1", "lb", "incomplete"), [
    pytest.param({}, None, None, None, (), id="nothing-served"),
    pytest.param(served(**{k: ("v2alpha1",) for k in BGP_V2}, peering_policy=("v2alpha1",),
                        lb_ip_pool=("v2alpha1",)),
                 "cilium.io/v2alpha1", "cilium.io/v2alpha1", "cilium.io/v2alpha1", (), id="1.16-1.17"),
    pytest.param(served(**{k: ("v2", "v2alpha1") for k in BGP_V2}, peering_policy=("v2alpha1",),
                        lb_ip_pool=("v2", "v2alpha1")),
                 "cilium.io/v2", "cilium.io/v2alpha1", "cilium.io/v2", (), id="1.18"),
    pytest.param(served(**{k: ("v2", "v2alpha1") for k in BGP_V2}, lb_ip_pool=("v2",)),
                 "cilium.io/v2", None, "cilium.io/v2", (), id="1.19-no-bgpv1"),
    pytest.param(served(cluster_config=("v2alpha1",), peer_config=("v2alpha1",)),
                 "cilium.io/v2alpha1", None, None, ("advertisement", "node_config_override"), id="partial"),
    pytest.param(served(peering_policy=("v2alpha1",)), None, "cilium.io/v2alpha1", None, (), id="bgpv1-only"),
])
def test_served_cilium_bgp_api(versions, bgp_v2, v1, lb, incomplete) -> None:
    api = detect(inv(cilium_served=versions)).cilium
    assert (api.bgp_v2, api.peering_policy, api.lb_ip_pool, api.incomplete) == (bgp_v2, v1, lb, incomplete)


# -- the scenarios, read over HTTP -----------------------------------------------------------------

@pytest.mark.parametrize(("scenario", "backend", "mode", "announcer", "lb"), [
    ("default", "vxlan", PoolMode.VXLAN, Announcer.OVERLAY, None),
    ("calico-bgp", "bird", PoolMode.BGP, Announcer.BIRD_MESH, ("203.0.113.1", "bgp", False)),
    ("metal-stack", "none", PoolMode.NODE_ROUTED, Announcer.NODE_ROUTER, ("203.0.113.1", "bgp", True)),
])
def test_detection_of_the_scenarios(sim_factory, tmp_path, scenario, backend, mode, announcer, lb) -> None:
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    inventory = read_inventory(sim, tmp_path / "kc")
    d = detect(inventory)
    assert (d.calico.backend, [p.mode for p in d.pools]) == (backend, [mode])
    assert [n.announcer for n in d.nodes] == [announcer] * 3
    assert inventory.node_init is (scenario == "metal-stack")
    if lb is None:
        assert not d.metallb.present
    else:
        assert [(a.ip, a.mode, a.pinned) for a in d.metallb.announcements] == [lb]
        assert d.metallb.per_node_peers is (scenario == "metal-stack")
    # the simulated Cilium serves the CRDs of sim/crds/ (SOURCES.md): BGPv2 and LB IPAM pools at v2
    # and v2alpha1, the L2 announcement policy at v2alpha1 only, no BGPv1 CiliumBGPPeeringPolicy
    assert (d.cilium.bgp_v2, d.cilium.peering_policy, d.cilium.lb_ip_pool, d.cilium.l2_policy,
            d.cilium.incomplete) == ("cilium.io/v2", None, "cilium.io/v2", "cilium.io/v2alpha1", ())
