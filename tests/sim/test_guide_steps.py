"""The migration guide's manual steps for one node, with kubectl, against the simulated cluster;
and a table showing Calico<->Cilium reachability holding exactly under the guide's conditions.

Steps (cilium-migration.md §1.5-1.6): create the CiliumNodeConfig, label the node, delete the
node's cilium agent pod, start a verification pod pinned to the node.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import FAST_LATENCIES, fast_config, run_kubectl

CNC = """apiVersion: cilium.io/v2
kind: CiliumNodeConfig
metadata:
  namespace: kube-system
  name: cilium-default
spec:
  nodeSelector:
    matchLabels:
      io.cilium.migration/cilium-default: "true"
  defaults:
    write-cni-conf-when-ready: /host/etc/cni/net.d/05-cilium.conflist
    custom-cni-conf: "false"
    cni-chaining-mode: "none"
    cni-exclusive: "true"
"""
NETEXEC = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def _agent(sim, node: str) -> dict | None:
    return next((p for p in sim.store.list("pods", "kube-system", index=("nodeName", node))
                 if p["metadata"]["labels"].get("k8s-app") == "cilium" and not p["metadata"].get("deletionTimestamp")),
                None)


def _ready(pod: dict | None) -> bool:
    return bool(pod) and any(c["type"] == "Ready" and c["status"] == "True"
                             for c in pod.get("status", {}).get("conditions") or [])


def migrate_node(sim, node: str, kc: Path | None = None) -> None:
    """The guide's per-node steps (through kubectl when a kubeconfig is given)."""
    if sim.store.try_get("cilium.io/ciliumnodeconfigs", "kube-system", "cilium-default") is None:
        if kc:
            done = subprocess.run(["kubectl", "--kubeconfig", str(kc), "apply", "--validate=false", "-f", "-"],
                                  input=CNC, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
        else:
            import yaml
            sim.store.create("cilium.io/ciliumnodeconfigs", yaml.safe_load(CNC))
    old = _agent(sim, node)
    if kc:
        assert run_kubectl(kc, "label", "node", node, "--overwrite",
                           "io.cilium.migration/cilium-default=true").returncode == 0
        assert run_kubectl(kc, "-n", "kube-system", "delete", "pod", "--field-selector",
                           f"spec.nodeName={node}", "-l", "k8s-app=cilium").returncode == 0
    else:
        sim.store.mutate("nodes", None, node, lambda o: o["metadata"]["labels"].update(
            {"io.cilium.migration/cilium-default": "true"}))
        sim.store.delete("pods", "kube-system", old["metadata"]["name"], graceful=True)
    _wait(lambda: (a := _agent(sim, node)) is not None and a["metadata"]["uid"] != old["metadata"]["uid"] and _ready(a))
    sim.settle(timeout=10)


def netexec_pod(sim, name: str, node: str) -> dict:
    sim.store.create("pods", {"metadata": {"name": name, "namespace": "default", "labels": {"app": "probe"}},
                              "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}],
                                       "containers": [{"name": "netexec", "image": NETEXEC,
                                                       "args": ["netexec", "--http-port=8080"]}]}})
    _wait(lambda: sim.store.get("pods", "default", name)["status"].get("podIP"))
    sim.settle(timeout=10)
    return sim.store.get("pods", "default", name)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_guide_steps_with_kubectl_switch_one_node(sim, kubeconfig):
    before = {p["metadata"]["name"]: p["status"]["podIP"]
              for p in sim.store.list("pods", index=("nodeName", "node-1")) if not p["spec"].get("hostNetwork")}
    run_kubectl(kubeconfig, "label", "node", "node-1", "io.cilium.migration/cilium-default=true")
    sim.settle(timeout=5)
    assert sim.fleet.cni_files("node-1") == ["10-calico.conflist", "calico-kubeconfig"], \
        "labelling alone must change nothing until the agent restarts"
    migrate_node(sim, "node-1", kubeconfig)
    assert sim.fleet.cni_files("node-1") == ["05-cilium.conflist", "10-calico.conflist.cilium_bak", "calico-kubeconfig"]
    verify = netexec_pod(sim, "verify-network", "node-1")
    assert verify["status"]["podIP"].startswith("10.245.")
    for name, ip in before.items():   # existing pods keep their Calico addresses
        assert sim.store.get("pods", sim.store.list("pods", predicate=lambda o, n=name: o["metadata"]["name"] == n)[0]
                             ["metadata"]["namespace"], name)["status"]["podIP"] == ip
        assert ip.startswith("192.168.")
    other = netexec_pod(sim, "on-node-2", "node-2")
    assert other["status"]["podIP"].startswith("192.168.")
    dial = run_kubectl(kubeconfig, "get", "--raw",
                       f"/api/v1/namespaces/default/pods/verify-network:8080/proxy/dial?host={other['status']['podIP']}"
                       "&port=8080&request=hostname&protocol=http&tries=2")
    assert dial.returncode == 0, dial.stderr
    assert json.loads(dial.stdout) == {"responses": ["on-node-2", "on-node-2"], "errors": []}


def _crash_node_2(sim) -> None:
    sim.fleet.crash_agent("node-2", "cilium", True)


def _node_2_not_ready(sim) -> None:
    sim.fleet.set_node_ready("node-2", False)


CASES = [
    ("default", None, None),
    ("vxlan-port-clash", None, "clashes with Calico vxlanPort"),
    ("cidr-overlap", None, "overlaps Calico IPPool"),
    ("calico-first-found", None, "cilium_host"),
    ("no-legacy-routing", None, "enable-host-legacy-routing"),
    ("default", _crash_node_2, "crash-looping on node-2"),
    ("default", _node_2_not_ready, "node-2 is NotReady"),
]


@pytest.mark.parametrize("scenario,fault,broken", CASES,
                         ids=["guide", "port-clash", "cidr-overlap", "first-found", "no-legacy-routing",
                              "agent-crashloop", "node-notready"])
def test_cross_overlay_reachability_follows_the_guide(sim_factory, scenario, fault, broken):
    sim = sim_factory(scenario=scenario)
    migrate_node(sim, "node-1")
    cil = netexec_pod(sim, "cil", "node-1")["status"]["podIP"]
    cal = netexec_pod(sim, "cal", "node-2")["status"]["podIP"]
    assert sim.fleet.network.endpoint(cil).network == "cilium"
    assert sim.fleet.network.endpoint(cal).network == "calico"
    if fault:
        fault(sim)
        sim.settle(timeout=10)
    for src, dst in ((cil, cal), (cal, cil)):
        ok, why = sim.fleet.network.reachable(src, dst, 8080)
        if broken is None:
            assert ok, why
        else:
            assert not ok and broken in why, why


def test_an_agent_restart_keeps_the_datapath_for_existing_pods(sim_factory):
    """Restarting the cilium agent (the guide's step 3) leaves the BPF datapath in the kernel:
    pods already on the node keep forwarding, on either overlay, while a new pod waits for the
    new agent to give it an IP. A crash-looping agent still breaks the node's paths (above)."""
    sim = sim_factory(config=fast_config(6, latencies=replace(FAST_LATENCIES, agent_start=1.5)))
    migrate_node(sim, "node-1")
    cil = netexec_pod(sim, "cil", "node-1")["status"]["podIP"]
    cal_here = netexec_pod(sim, "cal-here", "node-2")["status"]["podIP"]
    cal_there = netexec_pod(sim, "cal-there", "node-3")["status"]["podIP"]
    runtimes = sim.fleet.runtimes
    for node in ("node-1", "node-2"):
        sim.store.delete("pods", "kube-system", _agent(sim, node)["metadata"]["name"], graceful=True)
    _wait(lambda: all(runtimes[n].cilium.running and not runtimes[n].cilium.healthy for n in ("node-1", "node-2")))
    sim.store.create("pods", {"metadata": {"name": "new", "namespace": "default"},
                              "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": NETEXEC}]}})
    with sim.store.lock:  # the sim stands still: both agents are still starting
        assert not any(runtimes[n].cilium.healthy for n in ("node-1", "node-2"))
        for src, dst in ((cil, cal_here), (cal_here, cil), (cil, cal_there), (cal_there, cal_here)):
            ok, why = sim.fleet.network.reachable(src, dst, 8080)
            assert ok, f"{src} -> {dst}: {why}"
    assert not sim.store.get("pods", "default", "new")["status"].get("podIP")
    _wait(lambda: bool(sim.store.get("pods", "default", "new")["status"].get("podIP")))
    assert runtimes["node-1"].cilium.healthy
