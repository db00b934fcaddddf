"""`migrator run` and `finalize` on routed clusters (no Calico overlay): the overlay migration works.

On `calico-bgp` (BIRD mesh, MetalLB BGP) and `metal-stack` (backend none, node-init + FRR through
a fabric filter, pinned loadBalancerIP) the real CLI (in process) migrates every node and finalizes with exit 0,
every connectivity gate passing; afterwards every pod has a Cilium address and the simulated
network reaches every pod from every other. The LoadBalancer IP and its MetalLB announcements are
untouched (the hand-over to Cilium is not part of this run).
"""

from __future__ import annotations

import ipaddress

import pytest

from migrator.cli import main
from tests.conftest import fast_config
from tests.runner.helpers import LABEL, checkpoint, fast_plan


def unreachable_pairs(sim) -> list[tuple[str, str, str]]:
    """One running pod per node (and network), dialled from every other: the path failures with
    reasons (a NetworkPolicy denying the connection is the policy working, not the network)."""
    reps: dict[tuple[str, str], str] = {}
    for pod in sorted(sim.store.list("pods"), key=lambda p: p["metadata"]["name"]):
        st = pod.get("status") or {}
        if pod["spec"].get("hostNetwork") or st.get("phase") != "Running" or not st.get("podIP"):
            continue
        ref = sim.fleet.ip_index.get(st["podIP"])
        if ref is not None:
            reps.setdefault((ref[2], ref[3]), st["podIP"])
    out = []
    with sim.store.lock:
        for a in reps.values():
            for b in reps.values():
                if a != b:
                    ok, why = sim.fleet.network.reachable(a, b, 8080)
                    if not ok and not why.startswith("denied by NetworkPolicy"):
                        out.append((a, b, why))
    return out


def lb_ips(sim) -> list[str]:
    return [i["ip"] for s in sim.store.list("services") if s["spec"].get("type") == "LoadBalancer"
            for i in s["status"]["loadBalancer"]["ingress"]]


@pytest.mark.parametrize("scenario", ["calico-bgp", "metal-stack"])
def test_run_and_finalize_on_a_routed_cluster(sim_factory, tmp_path, scenario) -> None:
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path, {
        "cilium.pod_cidr": sim.config.cilium_pool, "order.canaries": ["node-1"],
        "routing.announceable_cidrs": [c for c in sim.config.fabric_announceable if c.startswith("10.")],
        "routing.expect": "bgp" if scenario == "calico-bgp" else "node-routed"})
    before_ips, before_ads = lb_ips(sim), sim.fleet.network.routing.lb_announcements()
    assert before_ips and before_ads

    assert main(["run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                 "--output-dir", str(tmp_path), "--log-level", "warning"]) == 0
    cp = checkpoint(sim)
    assert cp is not None and all(r.phase.value == "DONE" for r in cp.nodes)
    assert all((r.probes or "").startswith("ok") for r in cp.nodes), [r.probes for r in cp.nodes]

    assert main(["finalize", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                 "--output-dir", str(tmp_path), "--log-level", "warning"]) == 0
    sim.settle(timeout=20)
    pool = ipaddress.ip_network(sim.config.cilium_pool)
    for node in sim.store.list("nodes"):
        assert node["metadata"]["labels"].get(LABEL) == "true"
    for pod in sim.store.list("pods"):
        if pod["spec"].get("hostNetwork") or pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        assert ipaddress.ip_address(pod["status"]["podIP"]) in pool, pod["metadata"]["name"]
    assert not unreachable_pairs(sim)
    assert lb_ips(sim) == before_ips
    assert sim.fleet.network.routing.lb_announcements() == before_ads
