"""Probes, automatic and on-call rollback, and canaries: the real CLI against the sim over HTTPS.

The fault used to break a node's cross-overlay path is a CiliumNodeConfig that selects one node
by hostname and turns ``enable-host-legacy-routing`` off — a per-node misconfiguration the
agent only picks up when it restarts, i.e. in the middle of that node's migration.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from migrator.model.checkpoint import Checkpoint
from migrator.model.plan import STEER_TAINT
from tests.runner.helpers import LABEL, checkpoint, fast_plan, kill_when, migrator, spawn

CILIUM = ipaddress.ip_network("10.245.0.0/16")
CALICO = ipaddress.ip_network("192.168.0.0/16")


def break_cross_overlay(sim, node: str) -> None:
    sim.store.create("cilium.io/ciliumnodeconfigs", {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
        "metadata": {"name": f"break-{node}", "namespace": "kube-system"},
        "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": node}},
                 "defaults": {"enable-host-legacy-routing": "false"}}})


def pods_on(sim, node: str) -> list[dict]:
    return [p for p in sim.store.list("pods") if p["spec"].get("nodeName") == node
            and not p["spec"].get("hostNetwork") and p["status"].get("phase") == "Running"]


def assert_on_calico(sim, node: str) -> None:
    n = sim.store.get("nodes", None, node)
    assert LABEL not in n["metadata"]["labels"], node
    assert not any(f.startswith("05-cilium") for f in sim.fleet.cni_files(node)), sim.fleet.cni_files(node)
    for pod in pods_on(sim, node):
        assert ipaddress.ip_address(pod["status"]["podIP"]) in CALICO, (pod["metadata"]["name"], pod["status"])


def reaches_everyone(sim, node: str) -> list[str]:
    """Pods of ``node`` that cannot reach one probe pod on each other node (empty when all can)."""
    others = {p["spec"]["nodeName"]: p for p in sim.store.list("pods", "cni-migration-probes")
              if not p["spec"].get("hostNetwork") and p["status"].get("podIP")}
    failures = []
    for pod in pods_on(sim, node):
        for peer, target in others.items():
            if peer == node:
                continue
            ok, why = sim.fleet.network.reachable(pod["status"]["podIP"], target["status"]["podIP"], 8080)
            if not ok:
                failures.append(f"{pod['metadata']['name']} -> {peer}: {why}")
    return failures


def run_args(plan, kubeconfig, tmp_path) -> list[str]:
    return ["--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path)]


@pytest.mark.parametrize("halt_after", [1, None], ids=["halts", "continues"])
def test_failed_gate_rolls_the_node_back(sim, kubeconfig, tmp_path, halt_after):
    plan = fast_plan(tmp_path, {"rollback.halt_after": halt_after, "probes.checks.deadline": "8s"})
    break_cross_overlay(sim, "node-1")          # node-1 is the canary: migrated first
    started = time.monotonic()
    done = migrator("run", *run_args(plan, kubeconfig, tmp_path))
    cp = checkpoint(sim)
    assert cp is not None
    node1 = cp.node("node-1")
    assert node1 is not None and node1.phase.value == "ROLLED_BACK", done.stderr[-3000:]
    assert "connectivity gate failed" in (node1.rollback_reason or "")
    assert "to-cilium" not in (node1.rollback_reason or "")  # no Cilium peer existed yet
    assert (node1.probes or "").startswith("after rollback ok"), node1.probes
    sim.settle(timeout=20)
    assert_on_calico(sim, "node-1")
    assert not sim.store.get("nodes", None, "node-1")["spec"].get("unschedulable")
    assert reaches_everyone(sim, "node-1") == []
    if halt_after == 1:
        assert done.returncode == 1 and "rolled back automatically" in done.stderr, done.stderr[-2000:]
        assert all(r.phase.value == "PENDING" for r in cp.nodes if r.name != "node-1")
        assert time.monotonic() - started < 90
    else:
        assert done.returncode == 0, done.stderr[-3000:]
        assert cp.run_phase.value == "NODES_DONE"
        assert {r.name: r.phase.value for r in cp.nodes if r.name != "node-1"} == dict.fromkeys(
            ["node-2", "node-3", "node-4", "node-5", "cp-1"], "DONE")
        assert all((r.probes or "").startswith("ok") for r in cp.nodes if r.name != "node-1")
        assert cp.sampling.rounds > 0 and not cp.sampling.failures
    events = [e for e in sim.store.list("events", "default") if e.get("reason") == "MigrationRolledBack"]
    assert [e["involvedObject"]["name"] for e in events] == ["node-1"]


def _done(count: int):
    return lambda cp: sum(r.phase.value == "DONE" for r in cp.nodes) >= count


def test_rollback_all_after_the_runner_was_killed(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"order.strategy": "explicit",
                                "nodes.names": ["node-1", "node-2", "node-3", "node-4", "node-5", "cp-1"]})
    sim.store.mutate("nodes", None, "node-2", lambda d: d["spec"].update(unschedulable=True))  # cordoned before us
    proc = spawn("run", *run_args(plan, kubeconfig, tmp_path))
    kill_when(proc, sim, _done(3), timeout=120)
    before: Checkpoint = checkpoint(sim)  # type: ignore[assignment]
    assert sum(r.phase.value == "DONE" for r in before.nodes) >= 3
    assert before.steered, "the example plan steers: nodes not yet started carry the placement taint"
    back = migrator("rollback", "--all", *run_args(plan, kubeconfig, tmp_path))
    assert back.returncode == 0, back.stderr[-3000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "ROLLED_BACK" and cp.rollback is not None and cp.rollback.swept
    assert cp.steered == ()
    sim.settle(timeout=20)
    for node in sim.store.list("nodes"):
        name = node["metadata"]["name"]
        assert LABEL not in node["metadata"]["labels"], name
        assert bool(node["spec"].get("unschedulable")) == (name == "node-2"), name
        assert not [t for t in node["spec"].get("taints") or [] if t.get("key") == STEER_TAINT], name
        assert_on_calico(sim, name)
    assert all(not cnc["spec"]["nodeSelector"].get("matchLabels", {}).get(LABEL)
               for cnc in sim.store.list("cilium.io/ciliumnodeconfigs"))
    assert sim.store.list("pods", "cni-migration-probes") == []
    again = migrator("rollback", "--all", *run_args(plan, kubeconfig, tmp_path))
    assert again.returncode == 0 and "nothing to roll back" in again.stdout


def test_rollback_one_node_while_the_run_is_alive(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"gates.pause_between_nodes": "3s"})
    proc = spawn("run", *run_args(plan, kubeconfig, tmp_path))
    try:
        deadline = time.monotonic() + 90
        while not ((cp := checkpoint(sim)) and cp.node("node-1") and cp.node("node-1").phase.value == "DONE"):
            assert time.monotonic() < deadline and proc.poll() is None, proc.err()[-2000:]
            time.sleep(0.05)
        back = migrator("rollback", "--node", "node-1", "--reason", "pager: checkout errors",
                        *run_args(plan, kubeconfig, tmp_path))
    finally:
        proc.finish(timeout=60)
    assert proc.returncode == 1
    assert "on-call rollback was requested" in proc.err()
    assert back.returncode == 0, back.stderr[-3000:]
    cp = checkpoint(sim)
    assert cp is not None
    node1 = cp.node("node-1")
    assert node1 is not None and node1.phase.value == "ROLLED_BACK" and "pager: checkout errors" in (node1.rollback_reason or "")
    assert cp.requested == "pause" and cp.rollback is None
    sim.settle(timeout=20)
    assert_on_calico(sim, "node-1")
    noop = migrator("rollback", "--node", "node-1", *run_args(plan, kubeconfig, tmp_path))
    assert noop.returncode == 0 and "nothing to roll back: node-1 is ROLLED_BACK" in noop.stdout
    # a PENDING node with an intent was started (its first step sent): pick one that never was
    pending = next(r.name for r in cp.nodes if r.phase.value == "PENDING" and r.intent is None)
    noop = migrator("rollback", "--node", pending, *run_args(plan, kubeconfig, tmp_path))
    assert noop.returncode == 0 and "never started" in noop.stdout
    unknown = migrator("rollback", "--node", "node-99", *run_args(plan, kubeconfig, tmp_path))
    assert unknown.returncode == 2 and "node-99 not part of run" in unknown.stderr


def test_rollback_with_no_state_is_a_clear_noop(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path)
    result = migrator("rollback", "--all", *run_args(plan, kubeconfig, tmp_path))
    assert result.returncode == 0 and "nothing to roll back: no migration state" in result.stdout
    assert sim.requests.writes() == 0


CANARY = {"name": "canary", "nodes.names": ["node-1", "node-2"], "order.strategy": "explicit",
          "state.configmap_name": "cni-migration-canary", "state.lease_name": "cni-migration-canary"}


def canary_checkpoint(sim) -> Checkpoint:
    from migrator.model.shards import from_configmaps
    cp = from_configmaps(sim.store.list("configmaps", "kube-system"), "cni-migration-canary")
    assert cp is not None
    return cp


def test_canary_rehearsal_soaks_then_rolls_back(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {**CANARY, "canary": {"soak": "6s", "on_success": "rollback"}})
    result = migrator("canary", *run_args(plan, kubeconfig, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    cp = canary_checkpoint(sim)
    assert cp.canary is not None and cp.canary.outcome == "rolled-back" and cp.run_phase.value == "ROLLED_BACK"
    assert cp.sampling.rounds >= 2
    sim.settle(timeout=20)
    for node in ("node-1", "node-2"):
        assert_on_calico(sim, node)


def test_failed_canary_is_rolled_back_and_exits_1(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {**CANARY, "canary": {"soak": "30s", "on_success": "keep"},
                                "probes.checks.deadline": "8s"})
    break_cross_overlay(sim, "node-2")
    result = migrator("canary", *run_args(plan, kubeconfig, tmp_path))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "canary failed" in result.stderr
    cp = canary_checkpoint(sim)
    assert cp.canary is not None and cp.canary.outcome == "failed" and cp.run_phase.value == "ROLLED_BACK"
    sim.settle(timeout=20)
    for node in ("node-1", "node-2"):
        assert_on_calico(sim, node)


def test_a_broken_node_outside_the_migration_pauses_the_run_and_names_the_pairs(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"order.strategy": "explicit",
                                "nodes.names": ["node-1", "node-2", "node-3", "node-4", "node-5", "cp-1"],
                                "probes.sampling.pairs": 30})
    proc = spawn("run", *run_args(plan, kubeconfig, tmp_path))
    try:
        deadline = time.monotonic() + 90
        while not ((cp := checkpoint(sim)) and cp.node("node-1") and cp.node("node-1").phase.value == "DONE"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        sim.fleet.runtimes["node-5"].calico.healthy = False   # node-5 waits its turn, on Calico
    finally:
        proc.finish(timeout=120)
    assert proc.returncode == 1, proc.err()[-2000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "PAUSED"
    assert cp.sampling.failures and all("node-5" in f for f in cp.sampling.failures)
    assert "node-5" in (cp.last_error or "") and "no node is rolled back" in (cp.last_error or "")
    assert not [r.name for r in cp.nodes if r.phase.value in ("ROLLING_BACK", "ROLLED_BACK", "FAILED")]
    assert cp.node("node-5").phase.value == "PENDING"  # type: ignore[union-attr]
    status = migrator("status", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
    assert "sample failures:" in status.stdout and "node-5" in status.stdout
