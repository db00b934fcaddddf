"""The simulator's routing by announced prefixes (``sim/routing.py``), from Calico's, metal-stack's
and MetalLB's documented behaviour: route reflectors carry routes only while their BIRD runs;
node-init's route on lo is what a node router announces; MetalLB speakers announce from ready
speakers on nodes a BGPPeer selects, not from nodes labelled exclude-from-external-load-balancers,
and through a node router the leaf filter decides.
"""

from __future__ import annotations

import dataclasses
import time

from tests.conftest import fast_config

CALICO = "crd.projectcalico.org"


def calico_reps(sim) -> dict[str, str]:
    """One Calico pod IP per node, of a pod no policy selects (shop/api's NetworkPolicy admits
    only web; shop/web's Calico NetworkPolicy admits port 80 only)."""
    return {node: ip for ip, (_ns, name, node, net) in sorted(sim.fleet.ip_index.items())
            if net == "calico" and not name.startswith(("api-", "web-"))}


def reach(sim, a: str, b: str) -> tuple[bool, str]:
    with sim.store.lock:
        return sim.fleet.network.reachable(a, b, 8080)


def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_route_reflectors_carry_routes_only_while_their_bird_runs(sim_factory) -> None:
    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    with sim.store.lock:
        sim.store.mutate(f"{CALICO}/bgpconfigurations", None, "default",
                         lambda o: o["spec"].update(nodeToNodeMeshEnabled=False))
    reps = calico_reps(sim)
    ok, why = reach(sim, reps["node-1"], reps["node-2"])
    assert not ok and "no BGP session or route reflector carries" in why

    def make_reflector(o):
        o["metadata"].setdefault("annotations", {})["projectcalico.org/RouteReflectorClusterID"] = "244.0.0.1"
        o["metadata"]["labels"]["route-reflector"] = "true"
    with sim.store.lock:
        sim.store.mutate("nodes", None, "cp-1", make_reflector)
        sim.store.create(f"{CALICO}/bgppeers", {
            "apiVersion": f"{CALICO}/v1", "kind": "BGPPeer", "metadata": {"name": "to-reflectors"},
            "spec": {"nodeSelector": "all()", "peerSelector": "has(route-reflector)"}})
    assert reach(sim, reps["node-1"], reps["node-2"]) == (True, "ok")   # client → reflector → client

    sim.fleet.crash_agent("cp-1", agent="calico", crashloop=True)      # the reflector's BIRD goes
    eventually(lambda: not sim.fleet.runtimes["cp-1"].calico.healthy)
    ok, why = reach(sim, reps["node-1"], reps["node-2"])
    assert not ok and "no BGP session or route reflector carries" in why


def test_a_node_router_announces_only_what_node_init_put_on_lo(sim_factory) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    reps = calico_reps(sim)
    assert reach(sim, reps["node-1"], reps["node-2"]) == (True, "ok")
    with sim.store.lock:
        sim.store.mutate("apps/daemonsets", "kube-system", "node-init",
                         lambda o: o["spec"]["template"]["spec"].update(nodeSelector={"no-such": "node"}))
    eventually(lambda: not any(p["spec"].get("nodeName") == "node-2" for p in sim.store.list("pods", "kube-system")
                               if p["metadata"]["labels"].get("app") == "node-init"))
    ok, why = reach(sim, reps["node-1"], reps["node-2"])
    assert not ok and "node-init is not running on node-2" in why


def test_metallb_speakers_and_the_fabric_filter(sim_factory) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    routing = sim.fleet.network.routing
    with sim.store.lock:
        ads = routing.lb_announcements()
    assert [(a.prefix, a.node, a.accepted) for a in ads] == [("203.0.113.1/32", "node-1", True),
                                                               ("203.0.113.1/32", "node-2", True)]
    sim.fleet.config = dataclasses.replace(sim.fleet.config, fabric_announceable=("10.240.0.0/12",))
    with sim.store.lock:
        assert {(a.node, a.accepted, a.reason) for a in routing.lb_announcements()} == {
            ("node-1", False, "fabric filter"), ("node-2", False, "fabric filter")}
        assert all(a.accepted for a in routing.calico_announcements())
        sim.store.delete("metallb.io/bgppeers", "metallb-system", "peer-node-2")
        assert [a.node for a in routing.lb_announcements()] == ["node-1"]
