"""The simulator's Cilium BGP control plane and native routing (``sim/cilium_bgp.py``), from Cilium's
BGP control plane documentation (v2 resources; BGP does not program the datapath, so a natively
routed node is reached through the router its pod CIDR is announced to) and metallb/metallb#114
(a router keys neighbours by source address: two speakers from one address collide).

Each test migrates the small cluster's nodes with the guide's steps, then drives the routing by
hand and reads the outcome from reachability and from ``routing.violations()``: a prefix two kinds
of speaker announce at once, or one someone needs that nobody announces.
"""

from __future__ import annotations

from tests.conftest import fast_config
from tests.sim.test_guide_steps import _agent, _ready, _wait, migrate_node, netexec_pod

ROUTING_LABEL = "example.com/routing"
ASN_LABEL = "machine.metal-stack.io/network.primary.asn"


def cilium_obj(kind: str, name: str, spec: dict, labels: dict | None = None) -> dict:
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": {"name": name, "labels": labels or {}},
            "spec": spec}


def restart_agent(sim, node: str) -> None:
    old = _agent(sim, node)
    sim.store.delete("pods", "kube-system", old["metadata"]["name"], graceful=True)
    _wait(lambda: (a := _agent(sim, node)) is not None and a["metadata"]["uid"] != old["metadata"]["uid"] and _ready(a))
    sim.settle(timeout=10)


def go_native(sim, node: str) -> None:
    """A CiliumNodeConfig selected by a node label switches the node's agent to native routing with
    the BGP control plane, at its next start."""
    if sim.store.try_get("cilium.io/ciliumnodeconfigs", "kube-system", "cilium-native") is None:
        sim.store.create("cilium.io/ciliumnodeconfigs", {
            "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
            "metadata": {"name": "cilium-native", "namespace": "kube-system"},
            "spec": {"nodeSelector": {"matchLabels": {ROUTING_LABEL: "native"}},
                     "defaults": {"routing-mode": "native", "enable-bgp-control-plane": "true",
                                  "ipv4-native-routing-cidr": sim.config.cilium_pool}}})
    sim.store.mutate("nodes", None, node, lambda o: o["metadata"]["labels"].update({ROUTING_LABEL: "native"}))
    restart_agent(sim, node)


def reach(sim, a: str, b: str) -> tuple[bool, str]:
    with sim.store.lock:
        return sim.fleet.network.reachable(a, b, 8080)


def violations(sim) -> list[str]:
    with sim.store.lock:
        return sim.fleet.network.routing.violations()


def migrated(sim, nodes: tuple[str, ...]) -> dict[str, str]:
    for node in nodes:
        migrate_node(sim, node)
    return {n: netexec_pod(sim, f"probe-{n}", n)["status"]["podIP"] for n in nodes}


def node_peering(sim, node: str, pod_cidr: bool, lb: bool) -> None:
    """metal-stack's shape: per node, iBGP with the node's own ASN to its FRR at 127.0.0.1."""
    asn = int(sim.store.get("nodes", None, node)["metadata"]["labels"][ASN_LABEL])
    sim.store.create("cilium.io/ciliumbgpclusterconfigs", cilium_obj("CiliumBGPClusterConfig", f"bgp-{node}", {
        "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": node}},
        "bgpInstances": [{"name": "frr", "localASN": asn, "peers": [
            {"name": "frr", "peerAddress": "127.0.0.1", "peerASN": asn, "peerConfigRef": {"name": "frr"}}]}]}))
    if sim.store.try_get("cilium.io/ciliumbgppeerconfigs", None, "frr") is None:
        sim.store.create("cilium.io/ciliumbgppeerconfigs", cilium_obj("CiliumBGPPeerConfig", "frr", {
            "families": [{"afi": "ipv4", "safi": "unicast",
                          "advertisements": {"matchLabels": {"advertise": "frr"}}}]}))
    ads = ([{"advertisementType": "PodCIDR"}] if pod_cidr else []) + (
        [{"advertisementType": "Service", "service": {"addresses": ["LoadBalancerIP"]},
          "selector": {"matchLabels": {"app": "web"}}}] if lb else [])
    name = f"ads-{node}"
    if sim.store.try_get("cilium.io/ciliumbgpadvertisements", None, name) is None:
        sim.store.create("cilium.io/ciliumbgpadvertisements", cilium_obj(
            "CiliumBGPAdvertisement", name, {"advertisements": ads}, {"advertise": "frr"}))


def test_native_routing_needs_the_pod_cidr_announced_and_a_mixed_pair_breaks(sim_factory) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    ips = migrated(sim, ("node-1", "node-2"))
    assert reach(sim, ips["node-1"], ips["node-2"]) == (True, "ok")
    assert violations(sim) == []

    go_native(sim, "node-1")                       # its overlay goes, nothing announces its CIDR
    ok, why = reach(sim, ips["node-2"], ips["node-1"])
    assert not ok and "encapsulates to node-1, which routes natively" in why
    cidr = str(sim.fleet.cilium_ipam.pod_cidrs["node-1"].cidr)
    assert f"{cidr} (Cilium pods on node-1 (native routing)) announced by nobody" in violations(sim)

    go_native(sim, "node-2")                       # both native, still nobody announces
    ok, why = reach(sim, ips["node-1"], ips["node-2"])
    assert not ok and "nothing announces its pod CIDR" in why

    for node in ("node-1", "node-2"):
        node_peering(sim, node, pod_cidr=True, lb=False)
    assert reach(sim, ips["node-1"], ips["node-2"]) == (True, "ok")
    assert reach(sim, ips["node-2"], ips["node-1"]) == (True, "ok")
    with sim.store.lock:
        sessions = [s for s in sim.fleet.network.routing.bgp.sessions() if s.speaker == "cilium"]
    assert {(s.node, s.router, s.established) for s in sessions} == {
        ("node-1", "frr:node-1", True), ("node-2", "frr:node-2", True)}
    assert not [v for v in violations(sim) if "Cilium pods" in v]


def test_fabric_filter_drops_a_cilium_pod_cidr_outside_the_announceable_cidrs(sim_factory) -> None:
    from dataclasses import replace

    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    # the leaf accepts the Calico pods' range and the LoadBalancer IPs, not Cilium's pool
    sim.fleet.config = replace(sim.fleet.config, fabric_announceable=("10.240.0.0/13", "203.0.113.0/28"))
    ips = migrated(sim, ("node-1", "node-2"))
    for node in ("node-1", "node-2"):
        node_peering(sim, node, pod_cidr=True, lb=False)
        go_native(sim, node)
    ok, why = reach(sim, ips["node-1"], ips["node-2"])
    assert not ok and "fabric filter" in why and "drops" in why


def test_two_speakers_announcing_one_lb_ip_and_a_session_collision_are_recorded(sim_factory) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    migrated(sim, ("node-1",))
    go_native(sim, "node-1")
    node_peering(sim, "node-1", pod_cidr=True, lb=True)   # Cilium from 127.0.0.1, MetalLB from the node IP
    lb = sim.store.get("services", "shop", "web-public")["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert f"{lb}/32 announced by cilium and metallb at once on node-1" in violations(sim)

    sim2 = sim_factory(scenario="calico-bgp", config=fast_config(3))   # MetalLB peers the ToR from each node
    migrated(sim2, ("node-1",))
    go_native(sim2, "node-1")
    sim2.store.create("cilium.io/ciliumbgpclusterconfigs", cilium_obj("CiliumBGPClusterConfig", "tor", {
        "bgpInstances": [{"name": "tor", "localASN": 64512, "peers": [
            {"name": "tor", "peerAddress": "172.18.255.1", "peerASN": 65000}]}]}))
    with sim2.store.lock:
        sessions = {(s.node, s.speaker): s for s in sim2.fleet.network.routing.bgp.sessions()}
        ads = sim2.fleet.network.routing.lb_announcements()
    assert not sessions[("node-1", "cilium")].established
    assert "session collision" in sessions[("node-1", "cilium")].reason
    assert not sessions[("node-1", "metallb")].established
    assert sessions[("node-2", "metallb")].established
    assert {(a.node, a.accepted) for a in ads} >= {("node-1", False), ("node-2", True)}


def test_graceful_restart_keeps_a_restarting_agents_routes_for_its_restart_time(sim_factory) -> None:
    """Without graceful restart a stopped agent's routes go at once; with it the router keeps them
    for restartTimeSeconds, then drops them."""
    import time

    from migrator.sim.agents import cilium as cilium_agent

    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    migrated(sim, ("node-1", "node-2"))
    for node in ("node-1", "node-2"):
        go_native(sim, node)
        node_peering(sim, node, pod_cidr=True, lb=False)
    cidr = str(sim.fleet.cilium_ipam.pod_cidrs["node-1"].cidr)
    gone = f"{cidr} (Cilium pods on node-1 (native routing)) announced by nobody"

    def stopped(seconds_ago: float) -> list[str]:
        with sim.store.lock:
            st = sim.fleet.runtimes["node-1"].cilium
            uid, was = st.pod_uid, (st.running, st.healthy)
            cilium_agent.stop(sim.fleet.runtimes["node-1"], uid)
            st.stopped_at = time.monotonic() - seconds_ago / sim.fleet.world.time_scale
            found = sim.fleet.network.routing.violations()
            st.running, st.healthy = was
            return found

    assert violations(sim) == [] and gone in stopped(1)
    sim.store.mutate("cilium.io/ciliumbgppeerconfigs", None, "frr", lambda o: o["spec"].update(
        {"gracefulRestart": {"enabled": True, "restartTimeSeconds": 60}}))
    assert gone not in stopped(1)
    assert gone in stopped(61)
