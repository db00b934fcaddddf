"""`migrator handover` on routed clusters, through the real CLI against the simulated cluster.

On `calico-bgp` (BIRD mesh, MetalLB BGP to the ToR) and `metal-stack` (backend none, node FRR,
pinned loadBalancerIP): `run`, `handover` and `finalize` exit 0 while a sampler thread checks the
simulated routing at every moment it gets the store (no prefix announced by two kinds of speaker
on one node, none needed and announced by nobody, every LoadBalancer IP unchanged); afterwards
Cilium's BGP control plane announces every node's pod CIDR and every LoadBalancer IP and MetalLB
announces nothing. `handover --rollback` restores MetalLB's announcements exactly; a SIGKILL in
the middle of the hand-over (and of its rollback) resumes and converges.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from migrator.cli import main
from migrator.model.handover import METALLB_ANNOTATIONS
from migrator.model.handover import UNDO_ANNOTATION as UNDO
from tests.conftest import fast_config
from tests.routing.helpers import assert_cilium_announces
from tests.routing.test_routed_run import unreachable_pairs
from tests.runner.helpers import checkpoint, fast_plan, kill_when, spawn


def lb_ips(sim) -> list[str]:
    return sorted(i["ip"] for s in sim.store.list("services") if s["spec"].get("type") == "LoadBalancer"
                  for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress") or [])


class Sampler(threading.Thread):
    """Samples the simulated routing every few milliseconds until stopped: every prefix announced
    by one kind of speaker per node and needed ones by someone (each LoadBalancer IP included),
    every LoadBalancer port with a ready backend, every LoadBalancer IP as it was."""

    def __init__(self, sim, pods: bool = False) -> None:
        super().__init__(daemon=True)
        self.sim, self.samples, self.problems = sim, 0, []
        self.lb = lb_ips(sim)
        self.pods = pods
        self.cut: list[tuple[str, float]] = []     # (where the run was, when) of samples with a pod pair cut
        self._done = threading.Event()

    def where(self) -> str:
        cp = checkpoint(self.sim)
        if cp is None:
            return "before the run"
        return cp.run_phase.value + (f"/{cp.finalize.step}" if cp.finalize else "")

    def run(self) -> None:
        while not self._done.is_set():
            with self.sim.store.lock:
                found = self.sim.fleet.network.routing.violations() + self.unserved()
                ips = lb_ips(self.sim)
                cut = unreachable_pairs(self.sim) if self.pods else []
            if cut:
                self.cut.append((self.where(), time.monotonic()))
            if found:
                self.problems.append((self.where(), found))
            if ips != self.lb:
                self.problems.append(f"LoadBalancer IPs {ips}, before {self.lb}")
            self.samples += 1
            time.sleep(0.01)

    def unserved(self) -> list[str]:
        """LoadBalancer ports a client outside reaching an announcing node could not be served on
        (no ready backend; the announcement itself is checked by ``violations``)."""
        network = self.sim.fleet.network
        return [f"{s['metadata']['name']}:{p['port']} has no ready backend"
                for s in self.sim.store.list("services") if s["spec"].get("type") == "LoadBalancer"
                for p in s["spec"].get("ports") or [] if not network.backends(s, p["port"])]

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self.join(timeout=10)
        assert self.problems == [], self.problems[:3]
        assert self.samples > 20


def routed_plan(sim, tmp_path, scenario: str, **more):
    return fast_plan(tmp_path, {
        "cilium.pod_cidr": sim.config.cilium_pool, "order.canaries": ["node-1"],
        "routing.announceable_cidrs": [c for c in sim.config.fabric_announceable if c.startswith("10.")],
        "routing.expect": "node-routed" if scenario == "metal-stack" else "bgp",
        "routing.handover": True, "routing.handover_timeout": "60s", "concurrency.max_unavailable": 2, **more})


def cli(command: str, plan, kubeconfig, tmp_path, *extra: str) -> int:
    return main([command, "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir",
                 str(tmp_path), "--log-level", "warning", *extra])


def assert_handed(sim) -> None:
    """Every node's Cilium session Established with its pod CIDR accepted; every LoadBalancer IP
    announced by Cilium and by MetalLB nowhere."""
    sim.settle(timeout=20)
    assert_cilium_announces(sim, [n["metadata"]["name"] for n in sim.store.list("nodes")], lb_ips(sim))


@pytest.mark.parametrize("scenario", ["calico-bgp", "metal-stack", "calico-bgp-cilium-1.17", "calico-bgp-tor"])
def test_run_handover_and_finalize_keep_every_prefix_announced_once(sim_factory, tmp_path, scenario) -> None:
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, scenario)
    with Sampler(sim):
        assert cli("run", plan, kubeconfig, tmp_path) == 0
        assert cli("finalize", plan, kubeconfig, tmp_path) == 1      # refused: the hand-over comes first
        assert checkpoint(sim).run_phase.value == "NODES_DONE"
        assert cli("handover", plan, kubeconfig, tmp_path) == 0
        assert_handed(sim)
        assert cli("finalize", plan, kubeconfig, tmp_path) == 0
    cp = checkpoint(sim)
    assert cp.run_phase.value == "FINALIZED" and cp.handover.state == "done"
    assert all((r.probes or "").startswith("ok") for r in cp.nodes)
    assert_handed(sim)            # the agents restarted by finalize run the BGP control plane again
    config = sim.store.get("configmaps", "kube-system", "cilium-config")["data"]
    assert config["enable-bgp-control-plane"] == "true"
    assert "bgpControlPlane:\n  enabled: true" in (tmp_path / "values-final.yaml").read_text()
    versions = {o["apiVersion"] for k in ("ciliumbgpclusterconfigs", "ciliumloadbalancerippools")
                for o in sim.store.list(f"cilium.io/{k}")}
    assert versions == {"cilium.io/v2alpha1" if scenario.endswith("1.17") else "cilium.io/v2"}


def test_handover_rollback_restores_metallb_announcements(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, "calico-bgp")
    pool = sim.store.get("metallb.io/ipaddresspools", "metallb-system", "default")
    with Sampler(sim):
        assert cli("run", plan, kubeconfig, tmp_path) == 0
        with sim.store.lock:
            before = sim.fleet.network.routing.lb_announcements()
        assert cli("handover", plan, kubeconfig, tmp_path, "--rollback") == 0    # nothing to undo yet
        assert cli("handover", plan, kubeconfig, tmp_path) == 0
        carried = json.loads(sim.store.get("services", "shop", "web-public")["metadata"]["annotations"][UNDO])
        assert carried == {"ips": lb_ips(sim), "undo": {"metadata": {
            "annotations": {"lbipam.cilium.io/ips": None, **{k: None for k in METALLB_ANNOTATIONS},
                            "metallb.universe.tf/ip-allocated-from-pool": "default"},
            "labels": {"migrator.io/lb": None}}}}
        assert main(["rollback", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--all",
                     "--reason", "test"]) == 1               # refused: the hand-over comes back first
        good = sim.store.get("services", "shop", "web-public")["metadata"]["annotations"][UNDO]
        sim.store.mutate("services", "shop", "web-public",                # changed by hand: never guessed
                         lambda o: o["metadata"]["annotations"].update({UNDO: "{}"}))
        assert cli("handover", plan, kubeconfig, tmp_path, "--rollback") == 1
        assert "services shop/web-public carries a migrator.io/handover-undo annotation the hand-over did not " \
               "write" in checkpoint(sim).halted
        sim.store.mutate("services", "shop", "web-public", lambda o: o["metadata"]["annotations"].update({UNDO: good}))
        assert cli("handover", plan, kubeconfig, tmp_path, "--rollback") == 0
        sim.settle(timeout=20)
        with sim.store.lock:
            assert sim.fleet.network.routing.lb_announcements() == before
            assert sim.fleet.network.routing.cilium_announcements() == []
    assert checkpoint(sim).handover.state == "undone"
    assert sim.store.get("metallb.io/ipaddresspools", "metallb-system", "default")["spec"] == pool["spec"]
    for kind in ("ciliumbgpclusterconfigs", "ciliumbgpnodeconfigs", "ciliumloadbalancerippools"):
        assert sim.store.list(f"cilium.io/{kind}") == [], kind
    svc = sim.store.get("services", "shop", "web-public")
    assert "migrator.io/lb" not in (svc["metadata"].get("labels") or {})
    assert svc["metadata"]["annotations"] == {"metallb.universe.tf/ip-allocated-from-pool": "default"}
    assert cli("finalize", plan, kubeconfig, tmp_path) == 1      # rolled back: finalize waits for it again


def test_sigkill_during_the_handover_and_its_rollback_resumes_and_converges(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, "calico-bgp")
    args = ("--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    with Sampler(sim):
        assert cli("run", plan, kubeconfig, tmp_path) == 0
        with sim.store.lock:
            before = sim.fleet.network.routing.lb_announcements()
        proc = spawn("handover", *args)
        kill_when(proc, sim, lambda cp: cp.handover is not None and (cp.handover.key or "").startswith("hand-service"))
        assert checkpoint(sim).handover.state == "running"
        assert cli("handover", plan, kubeconfig, tmp_path) == 0
        assert_handed(sim)

        proc = spawn("handover", "--rollback", *args)
        kill_when(proc, sim, lambda cp: cp.handover.direction == "back" and (cp.handover.key or "").startswith("hand-node"))
        assert checkpoint(sim).handover.state == "running"
        assert cli("handover", plan, kubeconfig, tmp_path, "--rollback") == 0
        sim.settle(timeout=20)
        with sim.store.lock:
            assert sim.fleet.network.routing.lb_announcements() == before


def test_plan_forecasts_the_handover(sim_factory, tmp_path, capsys) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, "metal-stack")
    assert main(["plan", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--log-level", "warning"]) == 0
    out = capsys.readouterr().out
    assert "Calico keeps routing as detected until the hand-over (`migrator handover`, before finalize)" in out
    line = next(x for x in out.splitlines() if x.startswith("hand-over (after every node is DONE)"))
    assert "127.0.0.1 (AS " in line and "1 LoadBalancer Service(s) move to 1 CiliumLoadBalancerIPPool(s)" in line
    assert checkpoint(sim) is None                     # plan writes nothing


@pytest.mark.parametrize("scenario", ["calico-bgp", "metal-stack"])
def test_native_routing_at_finalize_cuts_pod_traffic_only_while_the_agents_restart(sim_factory, tmp_path,
                                                                                   scenario) -> None:
    """With routing.native_routing, finalize restarts every agent at once in native routing: pod
    pairs across nodes are cut only during that switch (a tunnel-mode node and a native one cannot
    reach each other), never during the run or the hand-over; every prefix stays announced
    throughout (graceful restart keeps a restarting agent's routes); afterwards every node routes
    natively and every pod reaches every other."""
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, scenario, **{"routing.native_routing": True})
    with Sampler(sim, pods=True) as sampler:
        assert cli("run", plan, kubeconfig, tmp_path) == 0
        assert cli("handover", plan, kubeconfig, tmp_path) == 0
        began = time.monotonic()
        assert cli("finalize", plan, kubeconfig, tmp_path) == 0
        took = time.monotonic() - began
    assert {where for where, _ in sampler.cut} <= {"FINALIZING/switch-routing"}, sorted(set(sampler.cut))
    window = (sampler.cut[-1][1] - sampler.cut[0][1]) if sampler.cut else 0.0
    assert window < took, (window, took)
    sim.settle(timeout=20)
    assert all(rt.cilium.config.get("routing-mode") == "native" for rt in sim.fleet.runtimes.values())
    assert not unreachable_pairs(sim)
    assert_handed(sim)
    values = (tmp_path / "values-final.yaml").read_text()
    assert "routingMode: native" in values and f"ipv4NativeRoutingCIDR: {sim.config.cilium_pool}" in values


def test_bird_lets_go_of_the_router_cilium_takes_or_the_sessions_collide(sim_factory, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    """calico-bgp-tor: every node's BIRD peers the ToR. Without its yield step, Cilium's session on
    the first node collides with BIRD's (same router, same source address): the step is not
    observed and the hand-over halts naming the collision; rolled back, then run whole, it passes."""
    import dataclasses

    from migrator.engine import handover as handover_module

    sim = sim_factory(scenario="calico-bgp-tor", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, "calico-bgp-tor", **{"routing.handover_timeout": "3s"})
    assert cli("run", plan, kubeconfig, tmp_path) == 0
    real = handover_module.handover_steps
    monkeypatch.setattr(handover_module, "handover_steps", lambda res, nodes, creates: real(
        dataclasses.replace(res, calico_peers_yield=()), nodes, creates))
    capsys.readouterr()
    assert cli("handover", plan, kubeconfig, tmp_path) == 1
    halted = capsys.readouterr().err
    assert "hand-node:cp-1 not observed within 3s (sessions: 172.18.255.1 active; not established" in halted
    assert "then `migrator handover` again (or --rollback)" in halted
    with sim.store.lock:
        [cilium] = [x for x in sim.fleet.network.routing.bgp.sessions() if (x.node, x.speaker) == ("cp-1", "cilium")]
    assert "session collision: bird on cp-1 already peers tor:172.18.255.1" in cilium.reason
    monkeypatch.undo()
    with Sampler(sim):
        assert cli("handover", plan, kubeconfig, tmp_path, "--rollback") == 0
        assert cli("handover", plan, kubeconfig, tmp_path) == 0
        assert_handed(sim)
    selector = sim.store.get("crd.projectcalico.org/bgppeers", None, "tor")["spec"]["nodeSelector"]
    assert selector == "(all()) && !has(migrator.io/bgp)"
