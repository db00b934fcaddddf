"""The hand-over's translation (``engine/handover_translate.py``) and its order of writes, applied to
the simulated `calico-bgp` and `metal-stack` clusters after every node is on Cilium.

The Cilium objects the hand-over renders are created through the simulated API server, which
validates them against Cilium's own CRD schemas (``sim/crds/``) with ``fieldValidation=Strict`` (an
unknown field is refused rather than pruned); the other writes go to its store. One write at a
time, and after each write the test samples the
routing ledger (no prefix announced twice on a node, none needed and announced by nobody), every
Cilium pod pair, and the LoadBalancer IPs. Then the hand-over is undone in reverse order and
MetalLB's announcements come back exactly as they were.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from migrator.engine import handover_objects as objs
from migrator.engine.handover_steps import Step, handover_steps, rollback_steps
from migrator.engine.handover_translate import translate
from migrator.engine.routing import detect
from migrator.model.handover import HANDED, LBIPAM_IPS, NODE_LABEL, SERVICE_LABEL
from migrator.model.routing import CiliumBgpApi
from tests.conftest import fast_config
from tests.routing.helpers import assert_cilium_announces, read_inventory
from tests.routing.test_sim_cilium_bgp import restart_agent
from tests.sim.test_guide_steps import migrate_node, netexec_pod


def create_through_api(kubeconfig, plural: str, obj: dict) -> None:
    """POST a cluster-scoped Cilium object as a client would, unknown fields refused (kubectl's
    ``--validate=strict``); an object already there is left as it is (the write is idempotent)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(kubeconfig))
    group, version = obj["apiVersion"].split("/")
    try:
        client.CustomObjectsApi(api).create_cluster_custom_object(group, version, plural, obj,
                                                                  field_validation="Strict")
    except ApiException as exc:
        if exc.status != 409:
            raise
    finally:
        api.close()


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
    inventory = read_inventory(sim, tmp_path / "kc")
    nodes = sorted(n["metadata"]["name"] for n in sim.store.list("nodes"))
    for node in nodes:
        migrate_node(sim, node)
    ips = [netexec_pod(sim, f"probe-{n}", n)["status"]["podIP"] for n in nodes]
    return sim, inventory, nodes, ips


def bgp_on(sim, node: str) -> None:
    sim.store.mutate("nodes", None, node, lambda o: o["metadata"]["labels"].update({NODE_LABEL: HANDED}))
    bgp_config(sim)
    restart_agent(sim, node)


def bgp_config(sim) -> None:
    """A CiliumNodeConfig on the node label turns the agent's BGP control plane on at its restart."""
    if sim.store.try_get("cilium.io/ciliumnodeconfigs", "kube-system", "migrator-bgp") is None:
        sim.store.create("cilium.io/ciliumnodeconfigs", {
            "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
            "metadata": {"name": "migrator-bgp", "namespace": "kube-system"},
            "spec": {"nodeSelector": {"matchLabels": {NODE_LABEL: HANDED}},
                     "defaults": {"enable-bgp-control-plane": "true"}}})


class Applier:
    """Each hand-over step's write and its undo, as the cluster port would send them (idempotent)."""

    def __init__(self, sim, res, kubeconfig) -> None:
        self.sim, self.res, self.kubeconfig = sim, res, kubeconfig
        self.objects = {(plural, o["metadata"]["name"]): o
                        for plural, o in objs.bgp_objects(res) + objs.lb_pool_objects(res)}

    def creates(self) -> list[tuple[str, str]]:
        return list(self.objects)

    def forward(self, step: Step) -> None:
        store, (ns, name) = self.sim.store, step.target
        if step.kind == "restrict-pool":
            store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: merge(o, objs.metallb_pool_patch()))
        elif step.kind == "yield-peer":
            store.mutate("metallb.io/bgppeers", ns, name, lambda o: merge(o, objs.metallb_peer_patch(())))
        elif step.kind == "create":
            create_through_api(self.kubeconfig, ns, copy.deepcopy(self.objects[(ns, name)]))
        elif step.kind == "hand-node":
            bgp_on(self.sim, name)
        else:
            switch = next(s for s in self.res.services if (s.namespace, s.name) == (ns, name))
            patch = objs.service_patch(switch)
            store.mutate("services", ns, name, lambda o: merge(o, patch))

    def back(self, step: Step) -> None:
        store, (ns, name) = self.sim.store, step.target
        if step.kind == "restrict-pool":
            store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: drop(o, "spec", "serviceAllocation"))
        elif step.kind == "yield-peer":
            store.mutate("metallb.io/bgppeers", ns, name, lambda o: drop(o, "spec", "nodeSelectors"))
        elif step.kind == "create":
            if store.try_get(f"cilium.io/{ns}", None, name) is not None:
                store.delete(f"cilium.io/{ns}", None, name)
        elif step.kind == "hand-node":
            store.mutate("nodes", None, name, lambda o: drop(o, "metadata", "labels", NODE_LABEL))
            restart_agent(self.sim, name)
        else:
            store.mutate("services", ns, name, lambda o: drop(o, "metadata", "labels", SERVICE_LABEL))


def check_handed(sim, rec, res, nodes, scenario) -> None:
    """Every node's Cilium session Established with its pod CIDR accepted, every LoadBalancer IP
    announced by Cilium only, MetalLB's annotations gone and the IP kept (pinned or requested)."""
    assert_cilium_announces(sim, nodes, rec.lb)
    for switch in res.services:
        svc = sim.store.get("services", switch.namespace, switch.name)
        notes = svc["metadata"].get("annotations") or {}
        assert not [k for k in notes if k.startswith(("metallb.universe.tf/", "metallb.io/"))]
        pinned = svc["spec"].get("loadBalancerIP")
        assert (pinned, notes.get(LBIPAM_IPS)) == ((switch.ips[0], None) if scenario == "metal-stack"
                                                   else (None, switch.ips[0]))


@pytest.mark.parametrize("scenario", ["calico-bgp", "metal-stack"])
def test_handover_moves_announcements_without_a_gap_or_a_double_and_back(sim_factory, tmp_path, scenario) -> None:
    sim, inventory, nodes, ips = cilium_cluster(sim_factory, tmp_path, scenario)
    res = translate(inventory, detect(inventory))
    assert res.blockers == ()
    rec, apply = Recorder(sim, ips), Applier(sim, res, tmp_path / "kc")
    with sim.store.lock:
        before = sim.fleet.network.routing.lb_announcements()
    rec.sample("migrated, before the hand-over")
    steps = handover_steps(res, nodes, apply.creates())
    for step in steps:
        apply.forward(step)
        rec.sample(step.key)
        if step.kind == "hand-node":           # the step is done: session Established, route present
            node = step.target[1]
            cidr = str(sim.fleet.cilium_ipam.pod_cidrs[node].cidr)
            with sim.store.lock:
                routing = sim.fleet.network.routing
                assert [s.established for s in routing.bgp.sessions() if (s.node, s.speaker) == (node, "cilium")] == [True]
                assert [(a.node, a.accepted) for a in routing.cilium_announcements() if a.prefix == cidr] == [(node, True)]
    check_handed(sim, rec, res, nodes, scenario)

    for step in rollback_steps(steps, len(steps) - 1):
        apply.back(step)
        rec.sample(f"undo {step.key}")
    with sim.store.lock:
        assert sim.fleet.network.routing.lb_announcements() == before
    assert rec.samples == 2 * len(steps) + 1


@pytest.mark.parametrize("crash_at", ["hand-node", "hand-service"])
def test_a_step_written_again_after_a_crash_converges_and_a_rollback_from_there_restores(
        sim_factory, tmp_path, crash_at) -> None:
    """The in-flight step's write landed, the checkpoint still names it: resuming writes it again;
    rolling back from that point undoes it too (every write and undo is idempotent)."""
    sim, inventory, nodes, ips = cilium_cluster(sim_factory, tmp_path, "calico-bgp")
    res = translate(inventory, detect(inventory))
    rec, apply = Recorder(sim, ips), Applier(sim, res, tmp_path / "kc")
    with sim.store.lock:
        before = sim.fleet.network.routing.lb_announcements()
    steps = handover_steps(res, nodes, apply.creates())
    at = next(i for i, s in enumerate(steps) if s.kind == crash_at)
    for step in steps[:at + 1]:
        apply.forward(step)
        rec.sample(step.key)
    for step in steps[at:]:                 # resume: the recorded step again, then the rest
        apply.forward(step)
        rec.sample(f"resumed {step.key}")
    check_handed(sim, rec, res, nodes, "calico-bgp")

    (tmp_path / "second").mkdir()
    sim2, _inventory2, _nodes2, ips2 = cilium_cluster(sim_factory, tmp_path / "second", "calico-bgp")
    rec2, apply2 = Recorder(sim2, ips2), Applier(sim2, res, tmp_path / "second" / "kc")
    with sim2.store.lock:
        before = sim2.fleet.network.routing.lb_announcements()
    for step in steps[:at + 1]:
        apply2.forward(step)
    for step in rollback_steps(steps, at):
        apply2.back(step)
        rec2.sample(f"undo {step.key}")
    with sim2.store.lock:
        assert sim2.fleet.network.routing.lb_announcements() == before


def test_a_wrong_order_is_seen(sim_factory, tmp_path) -> None:
    """Cilium peering the ToR on a node before MetalLB yields it collides (the LoadBalancer IP loses
    that node's route); a Service moved before any node runs Cilium's BGP is announced by nobody."""
    sim, inventory, nodes, _ips = cilium_cluster(sim_factory, tmp_path, "calico-bgp")
    res = translate(inventory, detect(inventory))
    for plural, obj in objs.bgp_objects(res) + objs.lb_pool_objects(res):
        create_through_api(tmp_path / "kc", plural, obj)
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
    inventory = read_inventory(sim, tmp_path / "kc")
    det = detect(inventory)
    assert (det.cilium.bgp_v2, det.cilium.lb_ip_pool) == ("cilium.io/v2", "cilium.io/v2")
    blocked = translate(inventory, dataclasses.replace(det, cilium=CiliumBgpApi()))   # a Cilium serving neither
    assert any("no Cilium BGPv2 API" in b for b in blocked.blockers)
    assert any("CiliumLoadBalancerIPPool" in b for b in blocked.blockers)
    res = translate(inventory, det)
    # metal-stack: one config per node, iBGP with the node's ASN to its own FRR, as metal-ccm's Cilium path
    asns = {n.name: int(n.labels["machine.metal-stack.io/network.primary.asn"]) for n in inventory.nodes}
    assert {(c.name, c.local_asn, c.peers[0].address, c.peers[0].asn) for c in res.cluster_configs} == {
        (f"migrator-{n}", a, "127.0.0.1", a) for n, a in asns.items()}
    assert res.metallb_peers_yield == ()       # Cilium (127.0.0.1) and MetalLB (node IP) do not collide
    assert [(s.name, s.pinned, s.annotations) for s in res.services] == [("web-public", True, ())]
    assert [(p.source, p.cidrs) for p in res.lb_pools] == [("metallb-system/default", ("203.0.113.0/28",))]


def test_step_order_and_undo_order_are_pure() -> None:
    from migrator.model.handover import HandoverResources, ServiceSwitch

    res = HandoverResources(bgp_api="cilium.io/v2", lb_api="cilium.io/v2",
                            services=(ServiceSwitch("a", "s1", ("203.0.113.1",), True, (), ()),),
                            metallb_pools=(("m", "p"),), metallb_peers_yield=(("m", "tor"),))
    steps = handover_steps(res, ["n2", "n1", "n3"], [("ciliumbgppeerconfigs", "pc")])
    assert [s.key for s in steps] == ["restrict-pool:m/p", "yield-peer:m/tor", "create:ciliumbgppeerconfigs/pc",
                                      "hand-node:n1", "hand-service:a/s1", "hand-node:n2", "hand-node:n3"]
    assert [s.key for s in rollback_steps(steps, 4)] == [
        "hand-service:a/s1", "hand-node:n1", "create:ciliumbgppeerconfigs/pc", "yield-peer:m/tor", "restrict-pool:m/p"]
    assert rollback_steps(steps, 99) == tuple(reversed(steps))
    with pytest.raises(ValueError, match="blocked: no router"):
        handover_steps(dataclasses.replace(res, blockers=("no router",)), ["n1"], [])


def test_preflight_names_what_the_handover_would_write_when_cilium_serves_the_api(sim_factory, tmp_path) -> None:
    from migrator.preflight_checks.facts import PreflightFacts, PreflightInputs, Severity
    from migrator.preflight_checks.routing import check_handover

    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    inventory = read_inventory(sim, tmp_path / "kc")
    [f] = check_handover(PreflightInputs(), PreflightFacts(routing=inventory))
    assert f.severity is Severity.INFO
    assert "1 CiliumBGPClusterConfig(s) at cilium.io/v2 peering 172.18.255.1 (AS 65000)" in f.message
    assert "1 CiliumLoadBalancerIPPool(s) and move 1 LoadBalancer Service(s)" in f.message


@pytest.mark.parametrize("rewrite", [True, False])
def test_a_service_keeps_its_ip_only_when_it_asks_lb_ipam_for_it(sim_factory, tmp_path, rewrite) -> None:
    """MetalLB gives the address asked for; once the Service's label takes it out of MetalLB's pool,
    Cilium's LB IPAM gives the address asked for in lbipam.cilium.io/ips, or the first free one."""
    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))

    def ingress() -> list[str]:
        sim.settle(timeout=10)
        svc = sim.store.get("services", "shop", "web-public")
        return [i["ip"] for i in svc["status"]["loadBalancer"].get("ingress") or []]
    sim.store.mutate("services", "shop", "web-public", lambda o: o["metadata"]["annotations"].update(
        {"metallb.universe.tf/loadBalancerIPs": "203.0.113.5"}))
    assert ingress() == ["203.0.113.5"]
    inventory = read_inventory(sim, tmp_path / "kc")
    res = translate(inventory, detect(inventory))
    for ns, name in res.metallb_pools:
        sim.store.mutate("metallb.io/ipaddresspools", ns, name, lambda o: merge(o, objs.metallb_pool_patch()))
    for plural, obj in objs.lb_pool_objects(res):
        create_through_api(tmp_path / "kc", plural, obj)
    assert ingress() == ["203.0.113.5"]           # nothing moved yet
    [switch] = res.services
    patch = objs.service_patch(switch) if rewrite else {"metadata": {"labels": {SERVICE_LABEL: HANDED}}}
    sim.store.mutate("services", "shop", "web-public", lambda o: merge(o, patch))
    assert ingress() == (["203.0.113.5"] if rewrite else ["203.0.113.1"])
