"""kubectl against a running SimCluster: rollout status and rollout restart of the cilium
DaemonSet, and a drain that meets a PodDisruptionBudget allowing no disruption, retries
its evictions (429), and finishes once the Deployment controller's replacement pod is
Ready elsewhere and the budget recovers."""

from __future__ import annotations

import threading
import time

import pytest

from migrator.sim.config import Latencies
from migrator.sim.controllers.matching import controller_ref, pod_is_ready
from tests.conftest import fast_config, run_kubectl

pytestmark = pytest.mark.kubectl


def cilium_pods(sim) -> dict[str, str]:
    return {p["spec"]["nodeName"]: p["metadata"]["name"]
            for p in sim.store.list("pods", "kube-system")
            if p["metadata"].get("labels", {}).get("k8s-app") == "cilium" and not p["metadata"].get(
                "deletionTimestamp")}


def test_rollout_status_of_the_cilium_daemonset(kubectl):
    done = kubectl("-n", "kube-system", "rollout", "status", "ds/cilium", "--timeout=20s")
    assert done.returncode == 0, done.stderr
    assert "successfully rolled out" in done.stdout


def test_rollout_restart_then_status_replaces_every_agent(sim, kubectl):
    before = cilium_pods(sim)
    restart = kubectl("-n", "kube-system", "rollout", "restart", "ds/cilium")
    assert restart.returncode == 0, restart.stderr
    status = kubectl("-n", "kube-system", "rollout", "status", "ds/cilium", "--timeout=30s")
    assert status.returncode == 0, status.stderr
    after = cilium_pods(sim)
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    ds = sim.store.get("apps/daemonsets", "kube-system", "cilium")
    assert "kubectl.kubernetes.io/restartedAt" in ds["spec"]["template"]["metadata"]["annotations"]
    assert ds["status"]["updatedNumberScheduled"] == ds["status"]["desiredNumberScheduled"] == 6


def web_pods_by_node(sim) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in sim.store.list("pods", "shop"):
        if p["metadata"].get("labels", {}).get("app") == "web" and not p["metadata"].get("deletionTimestamp"):
            out.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    return out


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_drain_retries_a_blocked_eviction_until_the_replacement_is_ready(sim_factory, tmp_path):
    # Pods take 2 simulated seconds to become Ready, so a replacement leaves the web PDB
    # (maxUnavailable 1) without budget long enough for kubectl to meet a 429.
    slow = Latencies(sandbox=0.01, ready=2.0, terminate=0.01, agent_start=0.01, calico_start=0.01,
                     node_action=0.01)
    sim = sim_factory(config=fast_config(6, latencies=slow))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    debug_node = sim.store.get("pods", "shop", "debug-shell")["spec"]["nodeName"]
    by_node = web_pods_by_node(sim)
    target = next(n for n in sorted(by_node) if n != debug_node and len(by_node[n]) == 1)
    other = next(n for n in sorted(by_node) if n not in (target, debug_node))
    target_pod = by_node[target][0]["metadata"]["name"]

    # Take one web replica out elsewhere: its replacement needs 2 s to become Ready.
    gone = run_kubectl(kubeconfig, "-n", "shop", "delete", "pod", by_node[other][0]["metadata"]["name"],
                       "--wait=false")
    assert gone.returncode == 0, gone.stderr
    wait_for(lambda: sim.store.get("policy/poddisruptionbudgets", "shop", "web")["status"][
        "disruptionsAllowed"] == 0)

    started = time.monotonic()
    drain = run_kubectl(kubeconfig, "drain", target, "--ignore-daemonsets", "--delete-emptydir-data",
                        "--timeout=60s", timeout=90)
    elapsed = time.monotonic() - started
    output = drain.stdout + drain.stderr
    assert drain.returncode == 0, output
    assert "disruption budget" in output  # kubectl met the 429 and retried
    assert f'pod/{target_pod} evicted' in output
    assert elapsed >= 1.5  # it could only finish after the replacement became Ready

    node = sim.store.get("nodes", None, target)
    assert node["spec"]["unschedulable"] is True
    left = [p for p in sim.store.list("pods", index=("nodeName", target))
            if (controller_ref(p) or {}).get("kind") != "DaemonSet"]
    assert left == []
    assert sim.settle(timeout=20)
    web = web_pods_by_node(sim)
    assert target not in web and sum(len(v) for v in web.values()) == 6
    assert all(pod_is_ready(p) for pods in web.values() for p in pods)


def test_drain_in_background_finishes_when_budget_returns(sim_factory, tmp_path):
    # The pdb-blocked scenario's api PDB allows nothing; kubectl keeps retrying until the
    # budget is relaxed, then finishes.
    sim = sim_factory(scenario="pdb-blocked")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    api_nodes = sorted(p["spec"]["nodeName"] for p in sim.store.list("pods", "shop")
                       if p["metadata"].get("labels", {}).get("app") == "api")
    debug_node = sim.store.get("pods", "shop", "debug-shell")["spec"]["nodeName"]
    target = next((n for n in api_nodes if n != debug_node), api_nodes[0])
    result: dict[str, object] = {}

    def drain() -> None:
        result["run"] = run_kubectl(kubeconfig, "drain", target, "--ignore-daemonsets", "--delete-emptydir-data",
                                    "--force", "--timeout=60s", timeout=90)

    worker = threading.Thread(target=drain)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive()  # blocked by the PDB
    relax = run_kubectl(kubeconfig, "-n", "shop", "patch", "pdb", "api", "--type=merge",
                        "-p", '{"spec":{"minAvailable":1}}')
    assert relax.returncode == 0, relax.stderr
    worker.join(timeout=60)
    run = result["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "disruption budget" in run.stdout + run.stderr
