"""The hand-over's translation (``engine/handover_translate.py``) and its order of writes, applied to
the simulated `calico-bgp` and `metal-stack` clusters after every node is on Cilium.

The writes go straight to the simulator's store (the simulated API server serves no Cilium BGP or
LB IPAM CRD: ``crds/SOURCES.md``), one at a time, and after each write the test samples the
routing ledger (no prefix announced twice on a node, none needed and announced by nobody), every
Cilium pod pair, and the LoadBalancer IPs. Then the hand-over is undone in reverse order and
MetalLB's announcements come back exactly as they were.
"""

from __future__ import annotations

import dataclasses

import pytest

from migrator.cluster import handover_objects as objs
from migrator.cluster.kube import KubeCluster
from migrator.engine.handover_translate import translate
from migrator.engine.routing import detect
from migrator.model.handover import HANDED, LBIPAM_IPS, NODE_LABEL, SERVICE_LABEL
from migrator.model.routing import CiliumBgpApi
from migrator.sim.store import ResourceType
from tests.conftest import fast_config
from tests.routing.test_sim_cilium_bgp import restart_agent
from tests.sim.test_guide_steps import migrate_node, netexec_pod

KINDS = (("ciliumbgpclusterconfigs", "CiliumBGPClusterConfig"), ("ciliumbgppeerconfigs", "CiliumBGPPeerConfig"),
         ("ciliumbgpadvertisements", "CiliumBGPAdvertisement"), ("ciliumloadbalancerippools", "CiliumLoadBalancerIPPool"))


def merge(target: dict, patch: dict) -> None:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def drop(obj: dict, *path: str) -> None:
    """Remove the key at ``path`` (a mutation callback returns nothing)."""
    for key in path[:-1]:
        obj = obj[key]
    obj.pop(path[-1])


class Recorder:
    """Samples the cluster after every write."""

    def __init__(self, sim, pod_ips: list[str]) -> None:
        self.sim, self.pod_ips, self.samples = sim, pod_ips, 0
        self.lb = self.lb_ips()

    def lb_ips(self) -> list[str]:
        return [i["ip"] for s in self.sim.store.list("services") if s["spec"].get("type") == "LoadBalancer"
                for i in s["status"]["loadBalancer"]["ingress"]]

    def sample(self, step: str) -> None:
        self.sim.settle(timeout=10)
        with self.sim.store.lock:
            routing = self.sim.fleet.network.routing
            assert routing.violations() == [], step
            for a in self.pod_ips:
                for b in self.pod_ips:
                    if a != b:
                        assert self.sim.fleet.network.reachable(a, b, 8080) == (True, "ok"), (step, a, b)
        assert self.lb_ips() == self.lb, step
        self.samples += 1


def cilium_cluster(sim_factory, tmp_path, scenario):
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    for plural, kind in KINDS:
        sim.store.register(ResourceType("cilium.io", plural, kind, False, True, custom=True))
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        inventory = port.read_routing_inventory()
    finally:
        port.close()
    nodes = sorted(n["metadata"]["name"] for n in sim.store.list("nodes"))
    for node in nodes:
        migrate_node(sim, node)
    ips = [netexec_pod(sim, f"probe-{n}", n)["status"]["podIP"] for n in nodes]
    return sim, inventory, nodes, ips


def with_served_api(det):
    return dataclasses.replace(det, cilium=CiliumBgpApi(bgp_v2="cilium.io/v2", lb_ip_pool="cilium.io/v2"))


def bgp_on(sim, node: str) -> None:
    """The node's label selects its CiliumBGPClusterConfig (and, where Cilium peers MetalLB's router,
    takes MetalLB's session away); a CiliumNodeConfig on the same label turns the agent's BGP
    control plane on at its restart."""
    if sim.store.try_get("cilium.io/ciliumnodeconfigs", "kube-system", "migrator-bgp") is None:
        sim.store.create("cilium.io/ciliumnodeconfigs", {
            "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
            "metadata": {"name": "migrator-bgp", "namespace": "kube-system"},
            "spec": {"nodeSelector": {"matchLabels": {NODE_LABEL: HANDED}},
                     "defaults": {"enable-bgp-control-plane": "true"}}})
    sim.store.mutate("nodes", None, node, lambda o: o["metadata"]["labels"].update({NODE_LABEL: HANDED}))
    restart_agent(sim, node)


@pytest.mark.parametrize("scenario", ["calico-bgp", "metal-stack"])
def test_handover_moves_announcements_without_a_gap_or_a_double_and_back(sim_factory, tmp_path, scenario) -> None:
    sim, inventory, nodes, ips = cilium_cluster(sim_factory, tmp_path, scenario)
    res = translate(inventory, with_served_api(detect(inventory)))
    assert res.blockers == ()
    rec = Recorder(sim, ips)
    with sim.store.lock:
        before = sim.fleet.network.routing.lb_announcements()
    rec.sample("migrated, before the hand-over")

    for ns, name in res.metallb_pools:
        sim.store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: merge(o, objs.metallb_pool_patch()))
        rec.sample(f"pool {name} restricted")
    for ns, name in res.metallb_peers_yield:
        sim.store.mutate("metallb.io/bgppeers", ns, name, lambda o: merge(o, objs.metallb_peer_patch(())))
        rec.sample(f"peer {name} yields")
    for plural, obj in objs.bgp_objects(res) + objs.lb_pool_objects(res):
        sim.store.create(f"cilium.io/{plural}", obj)
        rec.sample(f"created {obj['kind']} {obj['metadata']['name']}")

    bgp_on(sim, nodes[0])
    rec.sample(f"BGP on {nodes[0]}")
    for switch in res.services:
        patch = objs.service_patch(switch)
        sim.store.mutate("services", switch.namespace, switch.name, lambda o, patch=patch: merge(o, patch))
        rec.sample(f"service {switch.name} on Cilium")
    for node in nodes[1:]:
        bgp_on(sim, node)
        rec.sample(f"BGP on {node}")

    with sim.store.lock:
        routing = sim.fleet.network.routing
        sessions = [s for s in routing.bgp.sessions() if s.speaker == "cilium"]
        cilium = routing.cilium_announcements()
        metallb = [a for a in routing.lb_announcements() if a.accepted]
    assert sorted(s.node for s in sessions if s.established) == nodes
    pod_cidrs = {str(sim.fleet.cilium_ipam.pod_cidrs[n].cidr): n for n in nodes}
    assert {(a.prefix, a.node) for a in cilium if a.accepted and a.prefix in pod_cidrs} == set(pod_cidrs.items())
    assert {a.prefix for a in cilium if a.accepted and a.prefix not in pod_cidrs} == {f"{ip}/32" for ip in rec.lb}
    assert metallb == []
    for switch in res.services:
        svc = sim.store.get("services", switch.namespace, switch.name)
        notes = svc["metadata"].get("annotations") or {}
        assert not [k for k in notes if k.startswith(("metallb.universe.tf/", "metallb.io/"))]
        pinned = svc["spec"].get("loadBalancerIP")
        assert (pinned, notes.get(LBIPAM_IPS)) == ((switch.ips[0], None) if scenario == "metal-stack"
                                                   else (None, switch.ips[0]))

    # rolling back is the same writes in reverse: nodes but the first, every Service, the first node
    # (on calico-bgp MetalLB has a session only on nodes Cilium left, so Services go back while one is)
    def bgp_off(node: str) -> None:
        sim.store.mutate("nodes", None, node, lambda o: drop(o, "metadata", "labels", NODE_LABEL))
        restart_agent(sim, node)
        rec.sample(f"BGP off {node}")
    for node in reversed(nodes[1:]):
        bgp_off(node)
    for switch in res.services:
        sim.store.mutate("services", switch.namespace, switch.name,
                         lambda o: drop(o, "metadata", "labels", SERVICE_LABEL))
        rec.sample(f"service {switch.name} back on MetalLB")
    bgp_off(nodes[0])
    for plural, obj in reversed(objs.bgp_objects(res) + objs.lb_pool_objects(res)):
        sim.store.delete(f"cilium.io/{plural}", None, obj["metadata"]["name"])
    for ns, name in res.metallb_pools:
        sim.store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: drop(o, "spec", "serviceAllocation"))
    for ns, name in res.metallb_peers_yield:
        sim.store.mutate("metallb.io/bgppeers", ns, name, lambda o: drop(o, "spec", "nodeSelectors"))
    rec.sample("hand-over undone")
    with sim.store.lock:
        assert sim.fleet.network.routing.lb_announcements() == before
    assert rec.samples >= 10


def test_a_wrong_order_is_seen(sim_factory, tmp_path) -> None:
    """Cilium peering the ToR on a node before MetalLB yields it collides (the LoadBalancer IP loses
    that node's route); a Service moved before any node runs Cilium's BGP is announced by nobody."""
    sim, inventory, nodes, _ips = cilium_cluster(sim_factory, tmp_path, "calico-bgp")
    res = translate(inventory, with_served_api(detect(inventory)))
    for plural, obj in objs.bgp_objects(res) + objs.lb_pool_objects(res):
        sim.store.create(f"cilium.io/{plural}", obj)
    bgp_on(sim, nodes[0])                      # MetalLB's ToR peer was not told to yield
    with sim.store.lock:
        sessions = {(s.node, s.speaker): s for s in sim.fleet.network.routing.bgp.sessions()}
    assert "session collision" in sessions[(nodes[0], "cilium")].reason
    assert not sessions[(nodes[0], "metallb")].established

    for ns, name in res.metallb_pools:
        sim.store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: merge(o, objs.metallb_pool_patch()))
    sim.store.mutate("nodes", None, nodes[0], lambda o: drop(o, "metadata", "labels", NODE_LABEL))
    restart_agent(sim, nodes[0])
    switch = res.services[0]
    sim.store.mutate("services", switch.namespace, switch.name, lambda o: merge(o, objs.service_patch(switch)))
    with sim.store.lock:
        found = sim.fleet.network.routing.violations()
    assert [v for v in found if v.startswith(f"{switch.ips[0]}/32") and v.endswith("announced by nobody")]


def test_translation_per_cluster_shape(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        inventory = port.read_routing_inventory()
    finally:
        port.close()
    det = detect(inventory)
    blocked = translate(inventory, det)          # the simulated cluster serves no BGPv2 / LB IPAM
    assert any("no Cilium BGPv2 API" in b for b in blocked.blockers)
    assert any("CiliumLoadBalancerIPPool" in b for b in blocked.blockers)
    res = translate(inventory, with_served_api(det))
    # metal-stack: one config per node, iBGP with the node's ASN to its own FRR, as metal-ccm's Cilium path
    asns = {n.name: int(n.labels["machine.metal-stack.io/network.primary.asn"]) for n in inventory.nodes}
    assert {(c.name, c.local_asn, c.peers[0].address, c.peers[0].asn) for c in res.cluster_configs} == {
        (f"migrator-{n}", a, "127.0.0.1", a) for n, a in asns.items()}
    assert res.metallb_peers_yield == ()       # Cilium (127.0.0.1) and MetalLB (node IP) do not collide
    assert [(s.name, s.pinned, s.annotations) for s in res.services] == [("web-public", True, ())]
    assert [(p.source, p.cidrs) for p in res.lb_pools] == [("metallb-system/default", ("203.0.113.0/28",))]
